-- The claim of migration 0009, as one loop over a worker's whole pass.
--
-- `claim_jobs` called `claim_next_job` once per job, and each call started afresh: it
-- probed twice whether another group waited at the best job's priority, and forgot which
-- tasks, keys and rate buckets it had found full. With one tenant and no keys those two
-- probes were the whole cost of fairness, paid 50 times in a pass of 50 claims. Here the
-- pass is the loop: what it learned holds until it returns.
--
-- - A group found alone at a priority stays alone for the rest of the pass: a job of
--   another group committed meanwhile is served from the next pass (a few milliseconds
--   later) instead of the next claim of this one. So does a group whose rivals the round
--   robin passed over, every one, for want of a job this pass could claim: their jobs are
--   held by another claimer (whose pass has not committed yet), not due, or at a limit.
-- - A task at its `max_concurrency`, a key at its `max_per_key`, an empty rate bucket stay
--   so for the rest of the pass (this pass only adds running jobs; a slot freed meanwhile
--   is used by the next pass).
--
-- Which jobs are claimed, in which order, with which events, is unchanged.
-- `claim_next_job` (5 arguments) is this with a count of one.

CREATE OR REPLACE FUNCTION claim_jobs(
    p_queue text, p_worker text, p_limits jsonb, p_count integer, p_tasks text[],
    p_due_for_s float8
)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE plpgsql AS $$
DECLARE
    v_due      timestamptz := now() - make_interval(secs => p_due_for_s);
    v_tasks    text[] := '{}';  -- tasks at their max_concurrency
    v_keys     text[] := '{}';  -- concurrency keys at their max_per_key
    v_rates    text[] := '{}';  -- rate keys whose bucket is empty
    v_claimed  integer := 0;
    v_alone_at smallint;        -- the priority at which this pass found a group alone,
    v_alone    text[];          -- and that group (tenant, fair key)
    v_shared   boolean;
    v_passed   integer;         -- rival groups the round robin passed over
    v_group    record;
    v_job      jobs;
    v_turn     jobs;
    v_limit    integer;
BEGIN
    WHILE v_claimed < p_count LOOP
        -- The best claimable due job: the top priority, then the oldest.
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
        -- side of the job's own group, unless this pass already found it alone there. They
        -- read `id`, which the index lacks: an index-only scan never marks the entries of
        -- claimed (dead) rows as dead, so each probe would step over all of them again
        -- until the next vacuum.
        IF v_alone_at = v_job.priority AND v_alone = ARRAY[v_job.tenant, v_job.fair_key] THEN
            v_shared := false;
        ELSE
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
            IF NOT v_shared THEN
                v_alone_at := v_job.priority;
                v_alone := ARRAY[v_job.tenant, v_job.fair_key];
            END IF;
        END IF;
        IF v_shared THEN
            v_passed := 0;
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
                SELECT w.tenant, w.fair_key, w.id, count(*) OVER () AS groups
                  FROM (SELECT * FROM g LIMIT 1000) AS w
                  LEFT JOIN fair_turns t
                    ON t.queue = p_queue AND t.tenant = w.tenant AND t.fair_key = w.fair_key
                 ORDER BY t.served_at NULLS FIRST, w.run_at
            LOOP
                IF v_group.tenant = v_job.tenant AND v_group.fair_key = v_job.fair_key THEN
                    -- Reached last, every rival passed over: none has a job this pass can
                    -- claim (held by another claimer, not due, or at a limit), which stays
                    -- so for the pass. Alone, then, as far as this pass can tell.
                    IF v_passed = v_group.groups - 1 AND v_group.groups < 1000 THEN
                        v_alone_at := v_job.priority;
                        v_alone := ARRAY[v_job.tenant, v_job.fair_key];
                    END IF;
                    EXIT;
                END IF;
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
                v_passed := v_passed + 1;
            END LOOP;
        END IF;
        v_limit := (p_limits ->> v_job.task)::integer;
        IF v_limit IS NOT NULL THEN
            -- Serialise claims of one limited task so that the count below is exact. Only
            -- try the lock: a transaction claiming several jobs holds the locks of every
            -- limited task it claimed, and two that waited on each other's would deadlock.
            -- A task whose lock another claimer holds is skipped for this pass, as SKIP
            -- LOCKED skips a row another claimer holds.
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
        v_claimed := v_claimed + 1;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION claim_next_job(
    p_queue text, p_worker text, p_limits jsonb, p_tasks text[], p_due_for_s float8
)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE sql AS $$
    SELECT * FROM claim_jobs(p_queue, p_worker, p_limits, 1, p_tasks, p_due_for_s);
$$;
