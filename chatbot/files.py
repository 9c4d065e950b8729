"""Writing files: so that a crash or `kill -9` at any moment leaves the old file or the
new, and privately (mode 0600) for what holds private chats."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once, through a synced temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# Private files (transcripts, typed history, exports of chats): the owner reads and
# writes them, nobody else can.
PRIVATE_MODE = 0o600


def narrow_to_owner(path: Path) -> None:
    """Take group's and others' access away from an existing file (0644 becomes 0600; a
    file private already is left as it is, even one its owner made read-only)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def create_private(path: Path) -> None:
    """Make sure `path` exists and only its owner can read it: a new empty file created
    with mode 0600 (O_EXCL: of several processes starting at once, one creates it), or
    an existing one narrowed to its owner."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    except FileExistsError:
        narrow_to_owner(path)


def open_private(path: Path) -> IO[str]:
    """`path` opened for writing text, readable by its owner only whether it is new or
    exists already: an existing file is narrowed before it is emptied, so what was in it
    and what goes in are never readable by others. A device or pipe (`/dev/stdout`) is
    written as it is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, PRIVATE_MODE)
            os.ftruncate(fd, 0)
        return open(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
