"""The chat when stdin is not a terminal: scripts and tests drive it line by line.

Each input line is a user turn and gets exactly one line on stdout, its reply (newlines
in a reply become spaces), flushed at once so a script can read it before writing the
next turn. Nothing else goes to stdout: notices, errors and the output of /commands go
to stderr. Blank lines are skipped; `/reset` and the other /commands work as in the
terminal (/retry's new reply is a reply: one line on stdout); end of input ends the chat
with exit status 0.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from chatbot.chat.commands import Action, Frontend
from chatbot.chat.session import ChatSession, Reply


def one_line(text: str) -> str:
    """A reply as a single line (every kind of line break becomes a space)."""
    return " ".join(text.splitlines())


class PipeChat(Frontend):
    """Replies on stdout, one line each; everything else on stderr."""

    interactive = False

    def __init__(self, chat: ChatSession, stdin: TextIO | None = None,
                 stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        super().__init__(chat)
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def show_reply(self, reply: Reply) -> None:
        self.stdout.write(one_line(reply.text) + "\n")
        self.stdout.flush()

    def notice(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def run(self) -> int:
        """Chat until end of input (or /quit); the exit status."""
        try:
            for line in self.stdin:
                if self.handle(line.rstrip("\r\n")) is Action.QUIT:
                    break
        except BrokenPipeError:
            # The reader went away: stop quietly, and keep Python's exit-time flush of
            # stdout from failing again on the closed pipe.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stdout.fileno())
            os.close(devnull)
        return 0
