-- A worker claims only jobs of tasks it has registered, so a rolling deploy that adds a
-- task never hands its jobs to an older worker that would fail them as UnknownTask. The
-- claim functions gain the worker's task names (NULL: any task). The old signatures stay,
-- as calls of the new ones with any task, for workers of the previous version until they
-- stop. Each worker row lists its tasks, so a waiting job can say that no live worker has
-- its task. `p_due_for_s` leaves out jobs due for less than that long: an idle worker that
-- looks for jobs whose token was lost does not race the tokens of jobs submitted a moment
-- ago.

ALTER TABLE workers ADD COLUMN tasks text[];

CREATE FUNCTION claim_next_job(
    p_queue text, p_worker text, p_limits jsonb, p_tasks text[], p_due_for_s float8
)
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
           AND j.run_at <= now() - make_interval(secs => p_due_for_s)
           AND (p_tasks IS NULL OR j.task = ANY (p_tasks))
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

CREATE FUNCTION claim_jobs(
    p_queue text, p_worker text, p_limits jsonb, p_count integer, p_tasks text[],
    p_due_for_s float8
)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. p_count LOOP
        RETURN QUERY
            SELECT * FROM claim_next_job(p_queue, p_worker, p_limits, p_tasks, p_due_for_s);
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION claim_next_job(p_queue text, p_worker text, p_limits jsonb)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE sql AS $$
    SELECT * FROM claim_next_job(p_queue, p_worker, p_limits, NULL, 0);
$$;

CREATE OR REPLACE FUNCTION claim_jobs(
    p_queue text, p_worker text, p_limits jsonb, p_count integer
)
RETURNS TABLE (claimed_event job_events, claimed_job jobs)
LANGUAGE sql AS $$
    SELECT * FROM claim_jobs(p_queue, p_worker, p_limits, p_count, NULL, 0);
$$;
