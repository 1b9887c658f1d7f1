"""The claim as two versions of tidings define it, so a run can compare them on one database.

`fifo` is migration 0005's claim (priority, then due time, first come first served);
`fair` is migration 0011's (the same, plus concurrency keys, rate limits and the round
robin across tenants, in one loop per pass). A version is its two functions,
`claim_next_job` and `claim_jobs`, read from the migration files as shipped; a scenario
installs one with `use(pool, version)`. The fair one is what the database has after
migrating, so a scenario puts it back when it is done.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

# The functions every version defines, by name, with the arguments (a pattern) that tell
# the 5- and 6-argument claims from the older wrappers of the same names.
_CLAIM_NEXT_JOB = (
    "claim_next_job",
    r"\(\s*p_queue text, p_worker text, p_limits jsonb, p_tasks text\[\], p_due_for_s float8\s*\)",
)
_CLAIM_JOBS = (
    "claim_jobs",
    r"\(\s*p_queue text, p_worker text, p_limits jsonb, p_count integer, "
    r"p_tasks text\[\],\s*p_due_for_s float8\s*\)",
)
# Each version's migration, and its functions in the order they are installed: a function
# the other calls comes first.
VERSIONS = {
    "fifo": ("0005_registered_tasks.sql", (_CLAIM_NEXT_JOB, _CLAIM_JOBS)),
    "fair": ("0011_claim_in_one_loop.sql", (_CLAIM_JOBS, _CLAIM_NEXT_JOB)),
}


def definitions(version: str) -> list[str]:
    """The `CREATE OR REPLACE FUNCTION` statements of that version's claim."""
    source, signatures = VERSIONS[version]
    text = resources.files("tidings.migrations").joinpath(source).read_text()
    statements = []
    for name, arguments in signatures:
        pattern = rf"CREATE (?:OR REPLACE )?FUNCTION {name}{arguments}.*?\n\$\$;"
        match = re.search(pattern, text, re.DOTALL)
        if match is None:
            raise RuntimeError(f"no {name} in {source}")
        statements.append(re.sub(r"^CREATE (OR REPLACE )?", "CREATE OR REPLACE ", match.group(0)))
    return statements


async def use(pool: asyncpg.Pool, version: str) -> None:
    """Make every claim from now on run `version`'s claim."""
    async with pool.acquire() as conn, conn.transaction():
        for statement in definitions(version):
            await conn.execute(statement)
