"""Keeping TensorFlow's native start-up chatter off the terminal.

TensorFlow's C++ logging writes to file descriptor 2 directly: TF_CPP_MIN_LOG_LEVEL
does not silence its oneDNN notices, and on a terminal they would scribble over the
chat's prompt or a progress line. The chat, `chatbot eval` and `chatbot train` run the
code that prints them with the descriptor filtered: it goes to a pipe, and a reader
thread passes every line on to the real stderr at once, except the known chatter.

Nothing is held back: the descriptor is shared by the whole process, so while the chat's
model loads on a worker thread, whatever the main thread writes to stderr still shows
the moment it is written (a capture into a file would hide it until the load ended).
"""

from __future__ import annotations

import os
import select
import sys
import threading
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
_PARTIAL_WAIT_S = 0.05  # a line without its end yet is passed on after this long


def is_noise(line: str) -> bool:
    """Whether a line is TensorFlow's start-up chatter."""
    return any(n in line for n in _NOISE)


class _Filter:
    """fd 2 redirected into a pipe; a daemon thread forwards all but the chatter."""

    def __init__(self) -> None:
        self.users = 0
        self.saved = -1  # the real stderr, duplicated
        self.thread: threading.Thread | None = None

    def start(self) -> bool:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to guard
            return False
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.saved = saved
        self.thread = threading.Thread(target=_forward, args=(read, saved), daemon=True,
                                       name="stderr-filter")
        self.thread.start()
        return True

    def stop(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        # fd 2 held the pipe's only write end: putting the real stderr back ends the
        # reader's input, and it passes on the rest before it stops.
        os.dup2(self.saved, 2)
        if self.thread is not None:
            self.thread.join(timeout=5.0)
            if self.thread.is_alive():  # a child process still holds the pipe
                return  # the reader keeps `saved` open for itself
        os.close(self.saved)


def _forward(read: int, out: int) -> None:
    """Copy the pipe to `out` line by line, leaving out the chatter; a partial line
    (a progress bar's \\r redraw, a prompt) goes on after a short pause."""
    pending = b""

    def write(data: bytes) -> None:
        while data:
            try:
                data = data[os.write(out, data):]
            except OSError:
                return

    try:
        while True:
            if pending:
                ready, _, _ = select.select([read], [], [], _PARTIAL_WAIT_S)
                if not ready:
                    write(pending)
                    pending = b""
                    continue
            chunk = os.read(read, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line for line in lines
                    if not is_noise(line.decode("utf-8", errors="replace"))]
            if kept:
                write(b"".join(line + b"\n" for line in kept))
        if pending and not is_noise(pending.decode("utf-8", errors="replace")):
            write(pending)
    finally:
        os.close(read)


_FILTER = _Filter()
_LOCK = threading.Lock()


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """While the block runs, TensorFlow's start-up chatter on file descriptor 2 is left
    out and everything else written there is passed on at once.

    Safe from several threads at once: the first to enter installs the filter, the last
    to leave removes it.
    """
    with _LOCK:
        active = _FILTER.users > 0 or _FILTER.start()
        if active:
            _FILTER.users += 1
    try:
        yield
    finally:
        if active:
            with _LOCK:
                _FILTER.users -= 1
                if _FILTER.users == 0:
                    _FILTER.stop()


@contextmanager
def tensorflow_quietly() -> Iterator[None]:
    """For a command's start: TensorFlow's Python logging at warnings and errors (a
    user's TF_CPP_MIN_LOG_LEVEL wins), its native chatter left out while the block runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr():
        yield
