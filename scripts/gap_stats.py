"""Print the silences between consecutive spoken cues of subtitle files (for choosing --gap).

Usage: python scripts/gap_stats.py FILE.srt [FILE.vtt ...]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from chatbot.corpus.formats import cue_parser
from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.segment import cue_pieces
from chatbot.corpus.types import ReadOptions


def gaps(path: Path) -> list[float]:
    """Seconds of silence between each spoken cue and the next, in start order."""
    options = ReadOptions()
    cues = sorted(
        (c for c in cue_parser(path)(Source(path, options)) if cue_pieces(c)),
        key=lambda c: c.start_ms,
    )
    return [max(0, b.start_ms - a.end_ms) / 1000 for a, b in zip(cues, cues[1:], strict=False)]


def main(paths: list[str]) -> None:
    found: list[float] = []
    for name in paths:
        found.extend(gaps(Path(name)))
    if len(found) < 2:
        sys.exit("need at least three spoken cues")
    found.sort()
    cut = statistics.quantiles(found, n=20)
    print(f"cue pairs: {len(found)}  median gap: {statistics.median(found):.2f} s")
    print("percentiles (5% steps): " + " ".join(f"{q:.1f}" for q in cut))
    for limit in (1, 2, 3, 5, 8, 10):
        share = sum(g > limit for g in found) / len(found)
        print(f"gaps over {limit:>2} s: {share:6.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
