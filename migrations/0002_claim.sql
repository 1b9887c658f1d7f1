-- claim_next_job: the one way a worker takes a job. It picks the best due job of a queue
-- (highest priority, then earliest run_at), skips rows other claimers hold, respects
-- per-task concurrency limits cluster-wide, moves the job to running and appends its
-- `started` event, all in one statement. Limits are counted from the jobs that are
-- running now, so a crashed worker cannot leak a slot: its jobs stop counting when the
-- reaper re-queues them.

CREATE FUNCTION claim_next_job(p_queue text, p_worker text, p_limits jsonb)
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
            -- Serialise claims of one limited task so that the count below is exact. Only
            -- try the lock: a transaction claiming several jobs (claim_jobs) holds the
            -- locks of every limited task it claimed, and two that waited on each other's
            -- would deadlock. A task whose lock another claimer holds is skipped for this
            -- claim, as SKIP LOCKED skips a row another claimer holds.
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
