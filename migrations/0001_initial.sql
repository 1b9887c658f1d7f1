-- The data model: jobs, their gapless per-job event log, live workers and the task registry.

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    task                text        NOT NULL,
    args                jsonb       NOT NULL DEFAULT '{}'::jsonb,
    queue               text        NOT NULL DEFAULT 'default',
    priority            smallint    NOT NULL DEFAULT 0,
    status              text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
    attempt             integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    max_attempts        integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout_s           double precision NOT NULL DEFAULT 300 CHECK (timeout_s > 0),
    progress_current    double precision,
    progress_total      double precision,
    progress_message    text,
    result              jsonb,
    error               jsonb,
    idempotency_key     text,
    tenant              text        NOT NULL DEFAULT 'default',
    seq                 integer     NOT NULL DEFAULT 0,
    worker_id           text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    run_at              timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    cancel_requested_at timestamptz,
    args_hash           text        NOT NULL DEFAULT '',
    cached_from         uuid,
    schedule_key        text UNIQUE
);

CREATE INDEX jobs_listing ON jobs (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_status ON jobs (tenant, status, created_at DESC, id DESC);
CREATE INDEX jobs_waiting ON jobs (queue, priority DESC, run_at, created_at)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX jobs_running ON jobs (worker_id) WHERE status = 'running';
CREATE INDEX jobs_running_task ON jobs (task) WHERE status = 'running';
CREATE INDEX jobs_result_cache ON jobs (tenant, task, args_hash, finished_at DESC)
    WHERE status = 'succeeded';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_events (
    job_id           uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq              integer     NOT NULL CHECK (seq >= 1),
    kind             text        NOT NULL CHECK (kind IN (
        'queued', 'started', 'progress', 'log', 'retrying',
        'succeeded', 'failed', 'cancelled', 'requeued')),
    status           text        NOT NULL,
    attempt          integer     NOT NULL,
    progress_current double precision,
    progress_total   double precision,
    message          text,
    data             jsonb,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE workers (
    id           text PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    name        text PRIMARY KEY,
    queue       text        NOT NULL,
    args_schema jsonb       NOT NULL,
    defaults    jsonb       NOT NULL,
    description text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
