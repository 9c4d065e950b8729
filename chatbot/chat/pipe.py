"""The chat when stdin is not a terminal: scripts and tests drive it line by line.

Each input line is a user turn and gets exactly one line on stdout, its reply (newlines
in a reply become spaces), flushed at once so a script can read it before writing the
next turn. A blank line (nothing but spaces) is no turn: it gets an empty line, and so
does a turn whose reply failed (the error goes to stderr), so a file of turns piped in
gets its replies line for line (`paste turns.txt replies.txt`). Nothing
else goes to stdout: notices, errors and the output of /commands go to stderr. `/reset`
and the other /commands work as in the terminal and print no line on stdout (except
/retry, whose new reply is a reply: one line); end of input ends the chat with exit
status 0.
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
        self.lines = 0  # lines written to stdout

    def show_reply(self, reply: Reply) -> None:
        self._line(one_line(reply.text))

    def _line(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()
        self.lines += 1

    def notice(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def run(self) -> int:
        """Chat until end of input (or /quit); the exit status."""
        try:
            for line in self.stdin:
                text = line.rstrip("\r\n").strip()
                if text.startswith("/") and not text.startswith("//"):
                    if self.handle(text) is Action.QUIT:
                        break
                    continue
                before = self.lines
                if text:
                    self.handle(text)
                if self.lines == before:  # a blank line, or a turn that failed
                    self._line("")
        except BrokenPipeError:
            # The reader went away: stop quietly, and keep Python's exit-time flush of
            # stdout from failing again on the closed pipe.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stdout.fileno())
            os.close(devnull)
        return 0
