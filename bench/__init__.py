"""`make bench`: tidings and raw ARQ side by side, on the same Postgres, Redis and machine.

`python -m bench` starts its own server, worker and raw ARQ worker processes against
embedded servers (or the URLs in TIDINGS_BENCH_DATABASE_URL / TIDINGS_BENCH_REDIS_URL),
runs each scenario, prints one table and writes it to `bench/results/latest.json`.
"""
