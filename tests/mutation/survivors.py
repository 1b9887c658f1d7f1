"""The mutants of a `make mutate` session that no test killed, one line each.

    python tests/mutation/survivors.py .mutate/session.sqlite

Reads `cosmic-ray dump` and prints `path:line operator | the line as it is in the source`,
so each survivor can be judged: an equivalent mutant (no behaviour can tell it apart), or
a change the tests should notice and do not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main(session: str) -> int:
    dump = subprocess.run(
        [str(Path(sys.executable).with_name("cosmic-ray")), "dump", session],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    survivors = []
    done = 0
    for line in dump.splitlines():
        work, result = json.loads(line)
        if result is None or result.get("worker_outcome") == "skipped":
            continue  # not run yet, or filtered out (equivalent by construction)
        done += 1
        if result.get("test_outcome") == "survived":
            mutation = work["mutations"][0]
            survivors.append(
                (mutation["module_path"], mutation["start_pos"][0], mutation["operator_name"])
            )
    sources: dict[str, list[str]] = {}
    for path, number, operator in sorted(survivors):
        lines = sources.setdefault(path, Path(path).read_text().splitlines())
        print(f"{path}:{number} {operator.split('/')[-1]} | {lines[number - 1].strip()}")
    print(f"{len(survivors)} of {done} mutants survived")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
