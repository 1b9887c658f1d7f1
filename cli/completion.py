"""Shell completion of the names only the server knows: task names, asked of `GET /tasks`.

Completion runs on every Tab, so it asks with a short timeout and completes nothing
rather than hang or print an error when the server is away.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from tidings.client import errors
from tidings.client.sync import Client

COMPLETION_TIMEOUT_S = 2.0


def complete_task_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The registered tasks whose names start with what was typed so far."""
    # The group's own options (--url, --api-key, or their variables) are parsed by now.
    given = ctx.find_root().params
    try:
        with Client(
            given.get("url"), api_key=given.get("api_key"), timeout_s=COMPLETION_TIMEOUT_S
        ) as client:
            tasks = client.tasks()
    except errors.TidingsError:
        return []
    return [
        CompletionItem(task.name, help=task.description or None)
        for task in tasks
        if task.name.startswith(incomplete)
    ]
