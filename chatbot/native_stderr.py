"""Keeping TensorFlow's native start-up chatter off the terminal.

TensorFlow's C++ logging writes to file descriptor 2 directly: TF_CPP_MIN_LOG_LEVEL
does not silence its oneDNN notices, and on a terminal they would scribble over the
chat's prompt or a progress line. The chat, `chatbot eval` and `chatbot train` run the
code that prints them with the descriptor captured, and show only what is news.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# What TensorFlow's native code prints on every start: not news to a user.
_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "oneDNN supports DT_BOOL only on platforms with AVX-512",  # when a search is traced
)


@contextmanager
def quiet_native_stderr() -> Iterator[list[str]]:
    """Send file descriptor 2 to a temporary file while the block runs; afterwards the
    list holds what was written there, TensorFlow's start-up chatter left out.

    TensorFlow's C++ logging writes to the descriptor directly (TF_CPP_MIN_LOG_LEVEL does
    not silence the oneDNN notice), and on a terminal it would scribble over the prompt.
    """
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr at all: nothing to guard
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            lines.extend(line for line in text.splitlines()
                         if line.strip() and not any(n in line for n in _NOISE))


@contextmanager
def tensorflow_quietly() -> Iterator[None]:
    """For a command's start: TensorFlow's Python logging at warnings and errors (a
    user's TF_CPP_MIN_LOG_LEVEL wins), native stderr captured while the block runs, and
    what it printed beyond the chatter written to stderr afterwards."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr() as lines:
        yield
    for line in lines:
        print(line, file=sys.stderr)
