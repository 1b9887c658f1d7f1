"""The `tidings` command's exit statuses, which scripts test (documented in the README)."""

SUCCEEDED = 0  # done; with --follow/watch: the job succeeded
JOB_FAILED = 1  # with --follow/watch: the job (or a member of the batch) failed or was cancelled
USAGE = 2  # a bad command line (click's own status)
REFUSED = 3  # the server answered with an error: 401, 404, 409, 422, …
UNREACHABLE = 4  # no answer, or 503 / 429: try again later
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
