-- claim_jobs: up to p_count claims in one statement, for a worker that took several
-- tokens at once. Each claim is exactly claim_next_job's (priority order, SKIP LOCKED,
-- per-task limits); rows claimed earlier in the loop are already running, so later
-- iterations neither see them nor undercount a limited task.
--
-- One transaction now holds the advisory locks of every limited task it claimed, so two
-- claimers could take two tasks' locks in opposite orders and deadlock. claim_next_job
-- therefore only tries each lock: a task whose lock another claimer holds is skipped for
-- this claim, as SKIP LOCKED skips a row another claimer holds.

CREATE OR REPLACE FUNCTION claim_next_job(p_queue text, p_worker text, p_limits jsonb)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE plpgsql AS $$
DECLARE
    v_excluded text[] := '{}';
    v_id       uuid;
    v_task     text;
    v_limit    integer;
BEGIN
    LOOP
        SELECT j.id, j.task INTO v_id, v_task
          FROM jobs j
         WHERE j.queue = p_queue
           AND j.status IN ('queued', 'retrying')
           AND j.run_at <= now()
           AND j.task <> ALL (v_excluded)
         ORDER BY j.priority DESC, j.run_at, j.created_at
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        v_limit := (p_limits ->> v_task)::integer;
        IF v_limit IS NOT NULL THEN
            -- Serialise claims of one limited task so that the count below is exact.
            IF NOT pg_try_advisory_xact_lock(hashtext('tidings.limit:' || v_task))
               OR (SELECT count(*) FROM jobs r WHERE r.task = v_task AND r.status = 'running')
                   >= v_limit THEN
                v_excluded := v_excluded || v_task;
                CONTINUE;
            END IF;
        END IF;
        RETURN QUERY
        WITH j AS (
            UPDATE jobs
               SET status = 'running', seq = seq + 1, started_at = now(), updated_at = now(),
                   worker_id = p_worker
             WHERE id = v_id
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

CREATE FUNCTION claim_jobs(p_queue text, p_worker text, p_limits jsonb, p_count integer)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. p_count LOOP
        RETURN QUERY SELECT * FROM claim_next_job(p_queue, p_worker, p_limits);
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END LOOP;
END;
$$;
