-- Batches, dependencies and children (docs/decisions.md, "Batches and dependencies").
--
-- A job with open dependencies is `waiting`: it holds no token and no worker slot. The
-- dependencies are edges (depends_on -> job_id); when a job that has dependents ends, a
-- trigger settles each waiting dependent in the same transaction: the last edge to end
-- releases it (`queued`), a failure fails it (policy `fail`), is dropped (`ignore`) or
-- counts as ended (`continue`). Every transition of a batch's member is appended to the
-- batch's own gapless event log by another trigger, under the batch row's lock.
--
-- Events written by these triggers (a release, a cascaded failure or cancel) are announced
-- with pg_notify on `tidings:cascade`; workers listen, place the tokens and publish the
-- events, as they do for transactional submissions.

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'waiting', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'));

ALTER TABLE job_events DROP CONSTRAINT job_events_kind_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_kind_check CHECK (kind IN (
    'waiting', 'queued', 'started', 'progress', 'log', 'retrying',
    'succeeded', 'failed', 'cancelled', 'requeued'));

ALTER TABLE jobs
    ADD COLUMN batch_id uuid,
    ADD COLUMN parent_id uuid,
    ADD COLUMN depends_on uuid[],
    ADD COLUMN on_dependency_failure text NOT NULL DEFAULT 'fail'
        CHECK (on_dependency_failure IN ('fail', 'ignore', 'continue')),
    ADD COLUMN pending_dependencies integer NOT NULL DEFAULT 0,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN has_children boolean NOT NULL DEFAULT false;

CREATE INDEX jobs_batch ON jobs (batch_id, created_at DESC, id DESC) WHERE batch_id IS NOT NULL;
CREATE INDEX jobs_batch_running ON jobs (batch_id) WHERE batch_id IS NOT NULL AND status = 'running';
CREATE INDEX jobs_parent ON jobs (parent_id, created_at DESC, id DESC) WHERE parent_id IS NOT NULL;

CREATE TABLE job_dependencies (
    depends_on uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (depends_on, job_id)
);
CREATE INDEX job_dependencies_job ON job_dependencies (job_id);

CREATE TABLE batches (
    id          uuid PRIMARY KEY,
    tenant      text        NOT NULL,
    name        text,
    metadata    jsonb,
    -- Members per status, kept by the transition trigger.
    total       integer     NOT NULL DEFAULT 0,
    waiting     integer     NOT NULL DEFAULT 0,
    queued      integer     NOT NULL DEFAULT 0,
    running     integer     NOT NULL DEFAULT 0,
    retrying    integer     NOT NULL DEFAULT 0,
    succeeded   integer     NOT NULL DEFAULT 0,
    failed      integer     NOT NULL DEFAULT 0,
    cancelled   integer     NOT NULL DEFAULT 0,
    seq         integer     NOT NULL DEFAULT 0,
    -- False while the submitting transaction still adds members: a batch whose first
    -- members are born finished (result-cache hits) must not finish before the rest exist.
    sealed      boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX batches_listing ON batches (tenant, created_at DESC, id DESC);

CREATE TABLE batch_events (
    batch_id uuid        NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    seq      integer     NOT NULL CHECK (seq >= 1),
    kind     text        NOT NULL CHECK (kind IN ('job', 'batch.finished')),
    job_id   uuid,
    task     text,
    job_kind text,
    status   text,
    data     jsonb,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (batch_id, seq)
);

-- The notice of an event a trigger wrote: the event (with the job's task, queue, tenant
-- and batch) and, for a released job, what its token needs.
CREATE FUNCTION cascade_notice(j jobs, e job_events) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('tidings:cascade', json_build_object(
        'id', j.id, 'task', j.task, 'queue', j.queue, 'tenant', j.tenant,
        'batch_id', j.batch_id, 'attempt', j.attempt, 'run_at', j.run_at,
        'token', j.status = 'queued',
        'event', json_build_object(
            'job_id', e.job_id, 'task', j.task, 'queue', j.queue, 'tenant', j.tenant,
            'batch_id', j.batch_id, 'seq', e.seq, 'kind', e.kind, 'status', e.status,
            'attempt', e.attempt, 'current', NULL, 'total', NULL, 'message', e.message,
            'data', e.data, 'at', e.at))::text)
$$;

-- A batch finishes when none of its members waits or runs (and it is sealed).
CREATE FUNCTION finish_batch_if_done(p_batch uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    b batches;
BEGIN
    SELECT * INTO b FROM batches WHERE id = p_batch;
    IF NOT b.sealed OR b.finished_at IS NOT NULL
       OR b.waiting + b.queued + b.running + b.retrying > 0 THEN
        RETURN;
    END IF;
    UPDATE batches SET seq = seq + 1, finished_at = now() WHERE id = p_batch RETURNING * INTO b;
    INSERT INTO batch_events (batch_id, seq, kind, data)
    VALUES (b.id, b.seq, 'batch.finished', jsonb_build_object(
        'total', b.total, 'succeeded', b.succeeded, 'failed', b.failed,
        'cancelled', b.cancelled, 'finished_at', b.finished_at));
END
$$;

CREATE FUNCTION seal_batch(p_batch uuid) RETURNS void
LANGUAGE sql AS $$
    UPDATE batches SET sealed = true WHERE id = p_batch;
    SELECT finish_batch_if_done(p_batch);
$$;

-- Every status change of a batch member: counts move, the batch log gets one event, and
-- the batch finishes (or reopens, after a retry).
CREATE FUNCTION record_batch_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
    kind text := CASE
        WHEN NEW.status = 'running' THEN 'started'
        WHEN NEW.status = 'queued' AND was = 'running' THEN 'requeued'
        ELSE NEW.status END;
    b batches;
BEGIN
    UPDATE batches SET
        seq = seq + 1,
        total = total + (was IS NULL)::int,
        waiting = waiting + (NEW.status = 'waiting')::int - (was IS NOT DISTINCT FROM 'waiting')::int,
        queued = queued + (NEW.status = 'queued')::int - (was IS NOT DISTINCT FROM 'queued')::int,
        running = running + (NEW.status = 'running')::int - (was IS NOT DISTINCT FROM 'running')::int,
        retrying = retrying + (NEW.status = 'retrying')::int
                   - (was IS NOT DISTINCT FROM 'retrying')::int,
        succeeded = succeeded + (NEW.status = 'succeeded')::int
                    - (was IS NOT DISTINCT FROM 'succeeded')::int,
        failed = failed + (NEW.status = 'failed')::int - (was IS NOT DISTINCT FROM 'failed')::int,
        cancelled = cancelled + (NEW.status = 'cancelled')::int
                    - (was IS NOT DISTINCT FROM 'cancelled')::int,
        started_at = CASE WHEN NEW.status = 'running' THEN COALESCE(started_at, now())
                          ELSE started_at END
    WHERE id = NEW.batch_id
    RETURNING * INTO b;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO batch_events (batch_id, seq, kind, job_id, task, job_kind, status)
    VALUES (b.id, b.seq, 'job', NEW.id, NEW.task, kind, NEW.status);
    IF b.waiting + b.queued + b.running + b.retrying > 0 THEN
        IF b.finished_at IS NOT NULL THEN  -- reopened by a retry
            UPDATE batches SET finished_at = NULL WHERE id = b.id;
        END IF;
    ELSE
        PERFORM finish_batch_if_done(b.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_batch_inserted AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL)
    EXECUTE FUNCTION record_batch_transition();
CREATE TRIGGER jobs_batch_transition AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION record_batch_transition();

-- Fail a waiting job because `dep` ended without success (policy `fail`).
CREATE FUNCTION fail_dependent(p_job uuid, dep jobs) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    j jobs;
    e job_events;
BEGIN
    UPDATE jobs SET status = 'failed', seq = seq + 1, finished_at = now(), updated_at = now(),
           error = jsonb_build_object(
               'type', 'DependencyFailed', 'traceback', NULL, 'dependency', dep.id,
               'message', format('dependency %s (%s) ended %s', dep.id, dep.task, dep.status))
     WHERE id = p_job AND status = 'waiting'
    RETURNING * INTO j;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO job_events (job_id, seq, kind, status, attempt, message, data)
    VALUES (j.id, j.seq, 'failed', 'failed', j.attempt, j.error ->> 'message',
            jsonb_build_object('error', j.error))
    RETURNING * INTO e;
    PERFORM cascade_notice(j, e);
END
$$;

-- One open dependency of a waiting job ended (or was dropped): release it on the last.
CREATE FUNCTION count_down_dependent(p_job uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    j jobs;
    e job_events;
BEGIN
    UPDATE jobs SET pending_dependencies = pending_dependencies - 1, updated_at = now()
     WHERE id = p_job AND status = 'waiting'
    RETURNING * INTO j;
    IF NOT FOUND OR j.pending_dependencies > 0 THEN
        RETURN;
    END IF;
    UPDATE jobs SET status = 'queued', seq = seq + 1, run_at = GREATEST(run_at, now())
     WHERE id = p_job
    RETURNING * INTO j;
    INSERT INTO job_events (job_id, seq, kind, status, attempt, message, data)
    VALUES (j.id, j.seq, 'queued', 'queued', j.attempt, 'dependencies ended',
            jsonb_build_object('reason', 'dependencies'))
    RETURNING * INTO e;
    PERFORM cascade_notice(j, e);
END
$$;

-- A job with dependents ended: settle each waiting dependent by its policy.
CREATE FUNCTION settle_dependents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    dependent record;
BEGIN
    FOR dependent IN
        SELECT j.id, j.on_dependency_failure AS policy
          FROM job_dependencies d JOIN jobs j ON j.id = d.job_id
         WHERE d.depends_on = NEW.id AND j.status = 'waiting'
         ORDER BY j.id
    LOOP
        IF NEW.status = 'succeeded' OR dependent.policy = 'continue' THEN
            PERFORM count_down_dependent(dependent.id);
        ELSIF dependent.policy = 'ignore' THEN
            DELETE FROM job_dependencies WHERE depends_on = NEW.id AND job_id = dependent.id;
            PERFORM count_down_dependent(dependent.id);
        ELSE
            PERFORM fail_dependent(dependent.id, NEW);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_settle_dependents AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (
        NEW.has_dependents
        AND NEW.status IN ('succeeded', 'failed', 'cancelled')
        AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION settle_dependents();

-- A cancelled parent cancels its children: waiting ones at once, running ones by request
-- (their worker's heartbeat reads it, as for `POST /jobs/{id}/cancel`).
CREATE FUNCTION cancel_children() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    j jobs;
    e job_events;
BEGIN
    UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
     WHERE parent_id = NEW.id AND status = 'running';
    FOR j IN
        UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
               cancel_requested_at = now(), updated_at = now()
         WHERE parent_id = NEW.id AND status IN ('waiting', 'queued', 'retrying')
        RETURNING *
    LOOP
        INSERT INTO job_events (job_id, seq, kind, status, attempt, message, data)
        VALUES (j.id, j.seq, 'cancelled', 'cancelled', j.attempt, 'parent cancelled',
                jsonb_build_object('parent_id', NEW.id))
        RETURNING * INTO e;
        PERFORM cascade_notice(j, e);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_cancel_children AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.has_children AND NEW.status = 'cancelled'
                       AND OLD.status IS DISTINCT FROM 'cancelled')
    EXECUTE FUNCTION cancel_children();

-- New jobs whose dependencies were just linked: count what is still open, and settle
-- what already ended (a failed dependency under `fail` fails the job at once; under
-- `ignore` its edge is dropped). A job released or failed here is announced like any
-- other (`cascade_notice`).
CREATE FUNCTION settle_new_dependents(p_jobs uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    new_job record;
    ended jobs;
BEGIN
    DELETE FROM job_dependencies d
     USING jobs dep, jobs j
     WHERE d.job_id = ANY(p_jobs) AND dep.id = d.depends_on AND j.id = d.job_id
       AND j.on_dependency_failure = 'ignore' AND dep.status IN ('failed', 'cancelled');
    FOR new_job IN
        SELECT j.id, j.on_dependency_failure AS policy,
               count(*) FILTER (WHERE dep.status NOT IN ('succeeded', 'failed', 'cancelled'))
                   AS open
          FROM jobs j
          LEFT JOIN job_dependencies d ON d.job_id = j.id
          LEFT JOIN jobs dep ON dep.id = d.depends_on
         WHERE j.id = ANY(p_jobs) AND j.status = 'waiting'
         GROUP BY j.id
         ORDER BY j.id
    LOOP
        SELECT dep.* INTO ended
          FROM job_dependencies d JOIN jobs dep ON dep.id = d.depends_on
         WHERE d.job_id = new_job.id AND new_job.policy = 'fail'
           AND dep.status IN ('failed', 'cancelled')
         LIMIT 1;
        IF FOUND THEN
            PERFORM fail_dependent(new_job.id, ended);
        ELSE
            UPDATE jobs SET pending_dependencies = new_job.open + 1 WHERE id = new_job.id;
            PERFORM count_down_dependent(new_job.id);
        END IF;
    END LOOP;
END
$$;
