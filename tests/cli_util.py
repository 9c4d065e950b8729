"""Helpers for tests that drive the CLI: run a command in-process, read its --json line,
see which files this process holds open."""

from __future__ import annotations

import json
import os

import click
from click.testing import CliRunner

from chatbot.cli import cli

# Two cues of one short exchange.
SRT = (
    "1\n00:00:01,000 --> 00:00:02,000\nHow are you?\n\n"
    "2\n00:00:02,500 --> 00:00:03,000\nFine, thanks.\n"
)


def run(*args: str) -> click.testing.Result:
    """`chatbot ARGS...` through click's CliRunner (exceptions propagate)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def last_json(output: str) -> dict:
    """The JSON object a --json command prints as its last line."""
    return json.loads(output.strip().splitlines()[-1])


def open_paths() -> list[str]:
    """The paths of the files this process holds open (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return found
