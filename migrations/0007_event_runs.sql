-- Compact progress storage. The progress and log events of one running attempt that one
-- flush of a worker writes become one row here (their seq range and the notes as the
-- UTF-8 JSON array the worker encoded: kind, current, total, message, data per note),
-- not one `job_events` row each. Postgres stores the bytes as they come and parses them
-- only when a reader expands them. Lifecycle events (queued, started, the outcomes)
-- stay one `job_events` row each. A job's seq stays gapless across the two tables: each
-- seq is in exactly one of them.

CREATE TABLE job_event_runs (
    job_id    uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    first_seq integer     NOT NULL CHECK (first_seq >= 1),
    last_seq  integer     NOT NULL CHECK (last_seq >= first_seq),
    status    text        NOT NULL,
    attempt   integer     NOT NULL,
    at        timestamptz NOT NULL,
    notes     bytea       NOT NULL,
    PRIMARY KEY (job_id, first_seq)
);

-- Every event of every job, one row each, as `job_events` had them all before: for SQL
-- readers (reports, checks). The server reads the two tables itself, by seq range.
CREATE VIEW job_history AS
SELECT job_id, seq, kind, status, attempt, progress_current, progress_total, message, data, at
  FROM job_events
UNION ALL
SELECT r.job_id, r.first_seq + (n.ordinality - 1)::integer, n.note ->> 0, r.status, r.attempt,
       (n.note ->> 1)::float8, (n.note ->> 2)::float8, n.note ->> 3,
       NULLIF(n.note -> 4, 'null'::jsonb), r.at
  FROM job_event_runs r,
       jsonb_array_elements(convert_from(r.notes, 'UTF8')::jsonb) WITH ORDINALITY AS n (note);
