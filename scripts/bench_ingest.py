"""Benchmark: SRT ingestion (parse, segment, store) against the `srt` library's parse alone.

Builds a large SRT file from real cues (../shared/corpora/subtitles/pysrt-utf-8.srt when
present, else generated dialogue), then in the same run times:
  ours:     chatbot's ingest of the file into a fresh corpus database (streaming; a file
            this large is parsed by a second process, see chatbot/corpus/subtitles/child.py),
  baseline: srt.parse over the same file (parse only: it reads the whole text into memory).
Each runs in a fresh interpreter, --rounds times, interleaved; prints the medians, the
ratio baseline/ours (goal: >= 1.0) and the peak RSS of each (for ours, its process plus
its reader process).

Usage: python scripts/bench_ingest.py [--size-mb 30] [--rounds 3] [--keep FILE] [--opus]

With --opus, then also scripts/bench_opus.py: 2,000 distinct OPUS films on every core
(`--jobs 2` against `--jobs 1`) and peak memory for 2,000 films against 200.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "corpora" / "subtitles" / "pysrt-utf-8.srt"


def cue_texts() -> list[str]:
    """Cue texts of a real film, or generated lines when the real file is absent."""
    if REAL.exists():
        blocks = REAL.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n")
        texts = ["\n".join(b.split("\n")[2:]) for b in blocks if "-->" in b]
        return [t for t in texts if t.strip()]
    return [f"- Line {i} of the talk?\n- Answer {i}." if i % 3 == 0 else f"Sentence {i}."
            for i in range(1000)]


def stamp(ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def build(path: Path, size_mb: int) -> int:
    """Write an SRT file of about size_mb megabytes; return the number of cues."""
    texts = cue_texts()
    target = size_mb << 20
    written = n = 0
    t = 1000
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            text = texts[n % len(texts)]
            # Each pass over the film numbers its lines anew: repeated conversations would
            # be left out as stored already, and storing is part of what is measured.
            first, _, rest = text.partition("\n")
            dash = "- " if first.startswith("-") else ""
            first = f"{dash}{n // len(texts)} {first.lstrip('- ')}"
            text = f"{first}\n{rest}" if rest else first
            # Mostly quick exchanges, with a scene change every 40 cues.
            t += 8000 if n % 40 == 39 else 300
            block = f"{n + 1}\n{stamp(t)} --> {stamp(t + 1800)}\n{text}\n\n"
            f.write(block)
            written += len(block.encode())
            t += 1800
            n += 1
    return n


OURS = """
import resource, sys, time
from pathlib import Path
from chatbot.corpus.ingest import ingest_file
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import ReadOptions
Path(sys.argv[2]).unlink(missing_ok=True)
store = CorpusStore(Path(sys.argv[2]))
start = time.perf_counter()
result = ingest_file(store, Path(sys.argv[1]), ReadOptions())
elapsed = time.perf_counter() - start
assert result.error is None, result.error
peak = sum(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
print(elapsed, result.conversations, result.turns, peak / 1024)
"""

# Our parser alone, the same work as the baseline does (for where the time goes).
OURS_PARSE = """
import sys, time
from pathlib import Path
from chatbot.corpus.readers import srt
from chatbot.corpus.source import Source
from chatbot.corpus.types import ReadOptions
start = time.perf_counter()
cues = sum(1 for _ in srt.parse(Source(Path(sys.argv[1]), ReadOptions())))
print(time.perf_counter() - start, cues)
"""

BASELINE = """
import sys, time
import srt
start = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as f:
    cues = list(srt.parse(f.read()))
print(time.perf_counter() - start, len(cues))
"""


def child(code: str, *args: str) -> tuple[list[str], float]:
    """Run code in a fresh interpreter; its printed fields and its peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all of them: run the smaller one first.
    return out.stdout.split(), max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the generated file here")
    parser.add_argument("--opus", action="store_true",
                        help="also run scripts/bench_opus.py (a few minutes)")
    parser.add_argument("--memory-only", action="store_true",
                        help="time and measure only our ingest (srt.parse of a huge file "
                        "needs gigabytes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "big.srt"
        cues = build(path, args.size_mb)
        size = path.stat().st_size / (1 << 20)
        runs: dict[str, list[float]] = {"ours": [], "parse": [], "base": []}
        for _ in range(1 if args.memory_only else args.rounds):
            db = Path(tmp) / "corpus.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            ours, _ = child(OURS, str(path), str(db))
            runs["ours"].append(float(ours[0]))
            ours_rss = float(ours[3])
            if not args.memory_only:
                parse_only, _ = child(OURS_PARSE, str(path))
                runs["parse"].append(float(parse_only[0]))
                base, base_rss = child(BASELINE, str(path))
                runs["base"].append(float(base[0]))
    ours_s = statistics.median(runs["ours"])
    print(f"file: {size:.0f} MB, {cues} cues ({'real' if REAL.exists() else 'generated'} text), "
          f"median of {len(runs['ours'])} runs each")
    print(f"ours (parse+segment+store): {ours_s:7.2f} s  {cues / ours_s:9.0f} cues/s  "
          f"peak RSS {ours_rss:6.0f} MB  -> {ours[1]} conversations, {ours[2]} turns  "
          f"(runs: {', '.join(f'{t:.2f}' for t in runs['ours'])})")
    if args.memory_only:
        return
    base_s = statistics.median(runs["base"])
    parse_s = statistics.median(runs["parse"])
    print(f"ours, parse only:           {parse_s:7.2f} s  {cues / parse_s:9.0f} cues/s  "
          f"(ratio srt.parse / ours: {base_s / parse_s:.2f})")
    print(f"srt.parse alone:            {base_s:7.2f} s  {cues / base_s:9.0f} cues/s  "
          f"peak RSS (max of its runs) {base_rss:6.0f} MB  "
          f"(runs: {', '.join(f'{t:.2f}' for t in runs['base'])})")
    print(f"ratio (srt.parse time / ours): {base_s / ours_s:.2f}  (goal >= 1.0)")
    print(json.dumps({"size_mb": round(size), "cues": cues, "ours_s": round(ours_s, 2),
                      "srt_parse_s": round(base_s, 2), "ratio": round(base_s / ours_s, 2),
                      "ours_parse_only_s": round(parse_s, 2),
                      "ours_peak_rss_mb": round(ours_rss)}))
    if args.opus:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_opus.py")], check=True)


if __name__ == "__main__":
    main()
