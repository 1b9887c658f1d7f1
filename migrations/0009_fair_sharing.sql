-- Fair sharing (docs/decisions.md, "Fair sharing"): concurrency keys, round robin across
-- tenants, and keyed rate limits, all decided by the claim.
--
-- A job may carry a concurrency key with its limit (`max_per_key`): at most that many jobs
-- with the key run at once, cluster-wide. As for a task's `max_concurrency`, claims of one
-- key serialise on a transaction-scoped advisory lock and count the key's running rows, so
-- a crashed worker cannot leak a slot: its jobs stop counting when the reaper re-queues or
-- fails them.
--
-- Within a queue and a priority, claims go round robin across groups: a group is a tenant,
-- or a tenant and a concurrency key for tasks declared `fair=True` (`fair_key`). The claim
-- finds the best claimable due job as before; when another group waits at its priority
-- (two probes of `jobs_fair`), it lists the groups waiting there (a skip scan, one probe
-- per group) and serves the one served least recently (`fair_turns`), its oldest due job.
-- A queue with one group costs two probes more than before and never writes a turn.
--
-- A job may carry a rate key with a token bucket (`rate_burst` tokens, refilled at
-- `rate_per_s`): the claim takes a token from `rate_buckets` or leaves the job queued. The
-- bucket lives here, not in Redis: losing Redis cannot reset it.

ALTER TABLE jobs
    ADD COLUMN concurrency_key text,
    ADD COLUMN max_per_key integer CHECK (max_per_key >= 1),
    ADD COLUMN fair_key text NOT NULL DEFAULT '',
    ADD COLUMN rate_key text,
    ADD COLUMN rate_per_s double precision CHECK (rate_per_s > 0),
    ADD COLUMN rate_burst integer CHECK (rate_burst >= 1);

-- The claim's round robin: the groups waiting at one priority, and each group's oldest job.
CREATE INDEX jobs_fair ON jobs (queue, priority DESC, tenant, fair_key, run_at, created_at)
    WHERE status IN ('queued', 'retrying');
-- A key's running count (the limit), and its waiting jobs (strategies, views, ETAs).
CREATE INDEX jobs_running_key ON jobs (concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_waiting_key ON jobs (concurrency_key, created_at)
    WHERE status IN ('queued', 'retrying') AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_waiting_rate ON jobs (rate_key, priority DESC, run_at, created_at)
    WHERE status IN ('queued', 'retrying') AND rate_key IS NOT NULL;

-- One token bucket per rate key. `limited` counts claims the bucket refused.
CREATE TABLE rate_buckets (
    key         text PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL,
    burst       integer          NOT NULL,
    per_s       double precision NOT NULL,
    limited     bigint           NOT NULL DEFAULT 0
);

-- When each group of a queue was last served. Only an order for the round robin: unlogged
-- (no WAL for a write per claim), and losing it in a crash only restarts the rotation.
CREATE UNLOGGED TABLE fair_turns (
    queue     text        NOT NULL,
    tenant    text        NOT NULL,
    fair_key  text        NOT NULL,
    served_at timestamptz NOT NULL,
    PRIMARY KEY (queue, tenant, fair_key)
);

-- Take one token from the bucket of `p_key` (made full on first use; its size and rate
-- follow the latest job's). False when it is empty, or another claimer is taking one now.
CREATE FUNCTION take_rate_token(p_key text, p_burst integer, p_per_s float8)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_taken boolean;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('tidings.rate:' || p_key)) THEN
        RETURN false;
    END IF;
    INSERT INTO rate_buckets AS b (key, tokens, refilled_at, burst, per_s)
    VALUES (p_key, p_burst - 1, clock_timestamp(), p_burst, p_per_s)
    ON CONFLICT (key) DO UPDATE
       SET tokens = LEAST(EXCLUDED.burst::float8, b.tokens
                   + extract(epoch FROM EXCLUDED.refilled_at - b.refilled_at) * EXCLUDED.per_s) - 1,
           refilled_at = EXCLUDED.refilled_at, burst = EXCLUDED.burst, per_s = EXCLUDED.per_s
     WHERE LEAST(EXCLUDED.burst::float8, b.tokens
                 + extract(epoch FROM EXCLUDED.refilled_at - b.refilled_at) * EXCLUDED.per_s) >= 1
    RETURNING true INTO v_taken;
    IF v_taken IS NULL THEN
        UPDATE rate_buckets SET limited = limited + 1 WHERE key = p_key;
        RETURN false;
    END IF;
    RETURN true;
END;
$$;

-- The claim of migration 0005, with concurrency keys, rate limits and the round robin.
-- Its signature is unchanged, so claim_jobs and every caller keep working.
CREATE OR REPLACE FUNCTION claim_next_job(
    p_queue text, p_worker text, p_limits jsonb, p_tasks text[], p_due_for_s float8
)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE plpgsql AS $$
DECLARE
    v_due      timestamptz := now() - make_interval(secs => p_due_for_s);
    v_tasks    text[] := '{}';  -- tasks at their max_concurrency
    v_keys     text[] := '{}';  -- concurrency keys at their max_per_key
    v_rates    text[] := '{}';  -- rate keys whose bucket is empty
    v_shared   boolean;
    v_group    record;
    v_job      jobs;
    v_turn     jobs;
    v_limit    integer;
BEGIN
    LOOP
        -- The best claimable due job, as before: the top priority, then the oldest.
        SELECT * INTO v_job
          FROM jobs j
         WHERE j.queue = p_queue
           AND j.status IN ('queued', 'retrying')
           AND j.run_at <= v_due
           AND (p_tasks IS NULL OR j.task = ANY (p_tasks))
           AND j.task <> ALL (v_tasks)
           AND (j.concurrency_key IS NULL OR j.concurrency_key <> ALL (v_keys))
           AND (j.rate_key IS NULL OR j.rate_key <> ALL (v_rates))
         ORDER BY j.priority DESC, j.run_at, j.created_at
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
        IF v_job.id IS NULL THEN
            RETURN;
        END IF;
        -- Does another group wait at that priority? Two probes of `jobs_fair`, on either
        -- side of the job's own group. They read `id`, which the index lacks: an
        -- index-only scan never marks the entries of claimed (dead) rows as dead, so each
        -- probe would step over all of them again until the next vacuum.
        v_shared := (SELECT o.id FROM jobs o
                      WHERE o.queue = p_queue AND o.priority = v_job.priority
                        AND o.status IN ('queued', 'retrying')
                        AND (o.tenant, o.fair_key) > (v_job.tenant, v_job.fair_key)
                      ORDER BY o.tenant, o.fair_key LIMIT 1) IS NOT NULL
                 OR (SELECT o.id FROM jobs o
                      WHERE o.queue = p_queue AND o.priority = v_job.priority
                        AND o.status IN ('queued', 'retrying')
                        AND (o.tenant, o.fair_key) < (v_job.tenant, v_job.fair_key)
                      ORDER BY o.tenant DESC, o.fair_key DESC LIMIT 1) IS NOT NULL;
        IF v_shared THEN
            -- Take turns: the groups waiting at this priority, least recently served first
            -- (never served: first of all), then by their oldest job; one probe per group.
            -- The first group with a claimable due job is served; reaching the best job's
            -- own group keeps that job.
            FOR v_group IN
                WITH RECURSIVE g AS (
                    (SELECT j.tenant, j.fair_key, j.run_at, j.id
                       FROM jobs j
                      WHERE j.queue = p_queue AND j.priority = v_job.priority
                        AND j.status IN ('queued', 'retrying')
                      ORDER BY j.tenant, j.fair_key, j.run_at
                      LIMIT 1)
                    UNION ALL
                    SELECT n.tenant, n.fair_key, n.run_at, n.id
                      FROM g, LATERAL (
                          SELECT j.tenant, j.fair_key, j.run_at, j.id
                            FROM jobs j
                           WHERE j.queue = p_queue AND j.priority = v_job.priority
                             AND j.status IN ('queued', 'retrying')
                             AND (j.tenant, j.fair_key) > (g.tenant, g.fair_key)
                           ORDER BY j.tenant, j.fair_key, j.run_at
                           LIMIT 1) AS n
                )
                SELECT w.tenant, w.fair_key, w.id
                  FROM (SELECT * FROM g LIMIT 1000) AS w
                  LEFT JOIN fair_turns t
                    ON t.queue = p_queue AND t.tenant = w.tenant AND t.fair_key = w.fair_key
                 ORDER BY t.served_at NULLS FIRST, w.run_at
            LOOP
                EXIT WHEN v_group.tenant = v_job.tenant AND v_group.fair_key = v_job.fair_key;
                -- The group's oldest waiting job, which the scan read, is the one to claim
                -- unless it is not due, not claimable here, or another claimer holds it.
                -- By primary key: `status || ''` keeps the waiting-job indexes out of the
                -- plan, which with statistics from before a backlog arrived (a queue empty
                -- at the last ANALYZE) look tiny and were scanned whole instead, 100,000
                -- rows for one.
                SELECT * INTO v_turn
                  FROM jobs j
                 WHERE j.id = v_group.id
                   AND j.status || '' IN ('queued', 'retrying')
                   AND j.run_at <= v_due
                   AND (p_tasks IS NULL OR j.task = ANY (p_tasks))
                   AND j.task <> ALL (v_tasks)
                   AND (j.concurrency_key IS NULL OR j.concurrency_key <> ALL (v_keys))
                   AND (j.rate_key IS NULL OR j.rate_key <> ALL (v_rates))
                   FOR UPDATE SKIP LOCKED;
                IF v_turn.id IS NULL THEN
                    -- Then its oldest claimable due job. The order is `jobs_fair`'s own, so
                    -- the plan is that index whatever the group's share of the queue.
                    SELECT * INTO v_turn
                      FROM jobs j
                     WHERE j.queue = p_queue AND j.priority = v_job.priority
                       AND j.tenant = v_group.tenant AND j.fair_key = v_group.fair_key
                       AND j.status IN ('queued', 'retrying')
                       AND j.run_at <= v_due
                       AND (p_tasks IS NULL OR j.task = ANY (p_tasks))
                       AND j.task <> ALL (v_tasks)
                       AND (j.concurrency_key IS NULL OR j.concurrency_key <> ALL (v_keys))
                       AND (j.rate_key IS NULL OR j.rate_key <> ALL (v_rates))
                     ORDER BY j.tenant, j.fair_key, j.run_at, j.created_at
                     LIMIT 1
                       FOR UPDATE SKIP LOCKED;
                END IF;
                IF v_turn.id IS NOT NULL THEN
                    v_job := v_turn;  -- the best job stays locked until commit, unclaimed
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        v_limit := (p_limits ->> v_job.task)::integer;
        IF v_limit IS NOT NULL THEN
            -- Serialise claims of one limited task so that the count below is exact. Only
            -- try the lock: a transaction claiming several jobs (claim_jobs) holds the
            -- locks of every limited task it claimed, and two that waited on each other's
            -- would deadlock. A task whose lock another claimer holds is skipped for this
            -- claim, as SKIP LOCKED skips a row another claimer holds.
            IF NOT pg_try_advisory_xact_lock(hashtext('tidings.limit:' || v_job.task))
               OR (SELECT count(*) FROM jobs r
                    WHERE r.task = v_job.task AND r.status = 'running') >= v_limit THEN
                v_tasks := v_tasks || v_job.task;
                CONTINUE;
            END IF;
        END IF;
        IF v_job.concurrency_key IS NOT NULL THEN
            -- The same for a concurrency key, with the limit the job carries.
            IF NOT pg_try_advisory_xact_lock(hashtext('tidings.key:' || v_job.concurrency_key))
               OR (SELECT count(*) FROM jobs r
                    WHERE r.concurrency_key = v_job.concurrency_key AND r.status = 'running')
                   >= COALESCE(v_job.max_per_key, 1) THEN
                v_keys := v_keys || v_job.concurrency_key;
                CONTINUE;
            END IF;
        END IF;
        IF v_job.rate_key IS NOT NULL
           AND NOT take_rate_token(v_job.rate_key, v_job.rate_burst, v_job.rate_per_s) THEN
            v_rates := v_rates || v_job.rate_key;
            CONTINUE;
        END IF;
        IF v_shared AND pg_try_advisory_xact_lock(hashtext(
               'tidings.turn:' || p_queue || E'\x1f' || v_job.tenant || E'\x1f' || v_job.fair_key))
        THEN
            -- Only try: a claimer serving the same group right now records it too.
            INSERT INTO fair_turns (queue, tenant, fair_key, served_at)
            VALUES (p_queue, v_job.tenant, v_job.fair_key, clock_timestamp())
            ON CONFLICT (queue, tenant, fair_key) DO UPDATE SET served_at = EXCLUDED.served_at;
        END IF;
        RETURN QUERY
        WITH j AS (
            UPDATE jobs
               SET status = 'running', seq = seq + 1, started_at = now(), updated_at = now(),
                   worker_id = p_worker
             WHERE id = v_job.id
         RETURNING *
        ), e AS (
            INSERT INTO job_events (job_id, seq, kind, status, attempt, data)
            SELECT j.id, j.seq, 'started', j.status, j.attempt,
                   jsonb_build_object('worker_id', p_worker, 'wait_s',
                       extract(epoch FROM now() - GREATEST(j.created_at, j.run_at))::float8)
              FROM j
            RETURNING *
        )
        SELECT e::job_events, j::jobs FROM e, j;
        RETURN;
    END LOOP;
END;
$$;
