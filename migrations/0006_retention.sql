-- Retention: the pruner deletes finished jobs (their events go by ON DELETE CASCADE) once
-- they are older than their retention, which depends on the job's task (`retain_s` in
-- `tasks.defaults`) and its status. This index holds finished jobs only, ordered within
-- each (task, status) by finished_at: each class of retention is one range from its start,
-- so a batch reads only jobs that are due to go, and the distinct tasks are read from it by
-- a skip scan. Jobs that wait or run are not in it: pickup never touches it.
--
-- Migrations run in a transaction, so this builds the index while holding writes to `jobs`
-- off. On a large existing table, build it first without blocking writes, then migrate:
--   CREATE INDEX CONCURRENTLY jobs_finished ON jobs (task, status, finished_at)
--       WHERE status IN ('succeeded', 'failed', 'cancelled');

CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (task, status, finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
