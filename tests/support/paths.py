"""Where the checkout is: tests run from it, and spawned processes import its test tasks."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
