-- Finding jobs among millions: task and queue filters by name, prefix and substring, and
-- the dashboard's trends over the jobs that finished in the last hour.
--
-- A btree per name in byte order (`text_pattern_ops`), per tenant: a prefix is one range
-- of it; a substring is matched against the tenant's distinct names, read from it by a
-- skip scan (one probe per name), then looked up as exact names; and it keeps the
-- listing's order after the name, so the newest jobs of a name come straight off it. The
-- status rides along (INCLUDE), so a status with a name is counted from the index alone.
-- No trigram index: it needs an extension, and it more than doubled the cost of inserting
-- jobs (docs/decisions.md, "Finding jobs, acting on many, trends").
CREATE INDEX IF NOT EXISTS jobs_task_search
    ON jobs (tenant, task text_pattern_ops, created_at DESC, id DESC) INCLUDE (status);
CREATE INDEX IF NOT EXISTS jobs_queue_search
    ON jobs (tenant, queue text_pattern_ops, created_at DESC, id DESC) INCLUDE (status);

-- Trends: the jobs that finished in a window, per tenant, newest first.
CREATE INDEX IF NOT EXISTS jobs_finished_recent
    ON jobs (tenant, finished_at DESC) WHERE finished_at IS NOT NULL;
