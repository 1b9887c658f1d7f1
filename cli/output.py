"""How a read command chooses its output: text for people, or JSON for programs.

Every read command takes `-o/--output text|json` and `--json` (short for `-o json`); the
command receives one `json_output` flag. JSON goes to stdout unstyled: one document for a
command that prints one thing, one object per line (JSON Lines) for an event stream.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

OUTPUTS = ("text", "json")


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `-o/--output` and `--json` to a command, and pass it `json_output`."""

    @functools.wraps(command)
    def with_output(*args: Any, output: str, as_json: bool, **kwargs: Any) -> Any:
        return command(*args, json_output=as_json or output == "json", **kwargs)

    with_output = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (the same as -o json)."
    )(with_output)
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        default="text",
        show_default=True,
        help="text for people, json for programs.",
    )(with_output)


def print_json(value: Any) -> None:
    """One JSON document on stdout, indented, never wrapped or styled."""
    click.echo(json.dumps(value, indent=2, default=str))


def print_json_line(value: Any) -> None:
    """One JSON object on one line of stdout, flushed at once (for `--follow` and `watch`)."""
    click.echo(json.dumps(value, default=str, separators=(",", ":")))
