-- claim_jobs: up to p_count claims in one statement, for a worker that took several
-- tokens at once. Each claim is exactly claim_next_job's (priority order, SKIP LOCKED,
-- per-task limits); rows claimed earlier in the loop are already running, so later
-- iterations neither see them nor undercount a limited task.

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
