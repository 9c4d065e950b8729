"""Ingestion streams: peak memory does not grow with the size of the input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import resource, sys
from pathlib import Path

import pytest
from chatbot.corpus.ingest import ingest_file
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.subtitles import child
from chatbot.corpus.types import ReadOptions
child.CHILD_MIN_BYTES = int(sys.argv[3])
result = ingest_file(CorpusStore(Path(sys.argv[2])), Path(sys.argv[1]), ReadOptions())
assert result.error is None and result.turns > 0, result
# This process's peak plus the reader process's (if any): both are memory the ingest takes.
peak = sum(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
print(peak // 1024)
"""


def srt_file(path: Path, megabytes: int) -> Path:
    """A subtitle file of about `megabytes` MB: quick exchanges, a scene change every 40 cues."""
    line = "- Where were you last night?\n- Out with the others, as usual.\n"
    with open(path, "w", encoding="utf-8") as f:
        n = t = 0
        while f.tell() < megabytes << 20:
            t += 9000 if n % 40 == 39 else 2000
            s, ms = divmod(t, 1000)
            stamp = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},{ms:03d}"
            f.write(f"{n}\n{stamp} --> {stamp}\n{line}\n")
            n += 1
    return path


def peak_rss_mb(tmp_path: Path, megabytes: int, child_min_bytes: int) -> int:
    path = tmp_path / f"{megabytes}.srt"
    if not path.exists():
        srt_file(path, megabytes)
    db = tmp_path / f"{megabytes}-{child_min_bytes}.db"
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(db), str(child_min_bytes)],
                         capture_output=True, text=True, check=True, timeout=600)
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("child_min_bytes", [1 << 40, 0], ids=["one process", "reader process"])
def test_peak_memory_is_flat_in_input_size(tmp_path, child_min_bytes):
    small = peak_rss_mb(tmp_path, 2, child_min_bytes)
    large = peak_rss_mb(tmp_path, 24, child_min_bytes)
    # Twelve times the input; a loader that kept it all would add well over 100 MB.
    assert large - small < 30, (small, large)
