"""The claim as two versions of tidings define it, so a run can compare them on one database.

`fifo` is migration 0005's `claim_next_job` (priority, then due time, first come first
served); `fair` is migration 0009's (the same, plus concurrency keys, rate limits and the
round robin across tenants). Both are read from the migration files as shipped, and a
scenario installs one with `use(pool, version)`; the fair one is what the database has
after migrating, so a scenario puts it back when it is done.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

# Where each version's 5-argument claim_next_job is defined.
SOURCES = {"fifo": "0005_registered_tasks.sql", "fair": "0009_fair_sharing.sql"}
_DEFINITION = re.compile(
    r"CREATE (?:OR REPLACE )?FUNCTION claim_next_job\(\s*p_queue text, p_worker text, "
    r"p_limits jsonb, p_tasks text\[\], p_due_for_s float8\s*\).*?\n\$\$;",
    re.DOTALL,
)


def definition(version: str) -> str:
    """The `CREATE OR REPLACE FUNCTION` statement of that version's claim."""
    text = resources.files("tidings.migrations").joinpath(SOURCES[version]).read_text()
    match = _DEFINITION.search(text)
    if match is None:
        raise RuntimeError(f"no claim_next_job in {SOURCES[version]}")
    return re.sub(r"^CREATE (OR REPLACE )?", "CREATE OR REPLACE ", match.group(0))


async def use(pool: asyncpg.Pool, version: str) -> None:
    """Make every claim from now on run `version`'s claim."""
    await pool.execute(definition(version))
