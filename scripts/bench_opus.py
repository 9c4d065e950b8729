"""Benchmark: an OpenSubtitles (OPUS) directory of distinct films, ingested on every core.

Builds N distinct films in the OPUS layout (OpenSubtitles/xml/en/YEAR/IMDBID/SUBID.xml.gz,
tokenized `<w>` form with `<time>` marks, as OPUS ships them) from real lines of dialogue:
the cues of the real subtitles in ../shared/corpora and tests/data when present, and the
real messages of the chitchat dataset (installed with the project), each film a seeded
draw of ~500 of them. Then, in the same run, each in a fresh interpreter:
  - `chatbot ingest DIR --jobs 2` against `--jobs 1` (goal: at least 1.6x on 2 cores),
  - peak memory of the ingest for N films against N/10 films (goal: at most 1.5x).

Usage: python scripts/bench_opus.py [--films 2000] [--rounds 1] [--jobs 2] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import html
import importlib.resources
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBTITLES = [ROOT.parent / "shared" / "corpora" / "subtitles" / "pysrt-utf-8.srt",
             *sorted((ROOT / "tests" / "data" / "releases").glob("*/*.srt"))]
CUES_PER_FILM = 500
# Tokens as OPUS's tokenizer writes them: contractions and punctuation apart.
_TOKEN = re.compile(r"n't\b|'(?:s|re|ve|ll|d|m)\b|\w+(?=n't\b)|\w+|[^\w\s]", re.IGNORECASE)


def real_lines() -> list[str]:
    """Real lines of dialogue: subtitle cues where the files are here, chitchat messages."""
    lines: list[str] = []
    for path in SUBTITLES:
        if path.exists():
            blocks = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n")
            lines += [" ".join(b.split("\n")[2:]) for b in blocks if "-->" in b]
    data = json.loads((importlib.resources.files("chitchat_dataset") / "dataset.json")
                      .read_text(encoding="utf-8"))
    for conversation in data.values():
        for turn in conversation["messages"]:
            lines += [m["text"] for m in turn if m.get("text")]
    return [" ".join(line.split()) for line in lines if line.strip()]


def stamp(ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def film_xml(number: int, lines: list[str]) -> bytes:
    """One film in OPUS's tokenized XML: a sentence per cue, time marks inside."""
    rng = random.Random(number)
    out = ['<?xml version="1.0" encoding="utf-8"?>', f'<document id="{number}">']
    t = 1000
    for n in range(1, CUES_PER_FILM + 1):
        text = lines[rng.randrange(len(lines))]
        t += 8000 if n % 30 == 0 else rng.randrange(200, 1500)  # a scene change now and then
        end = t + 1500 + 40 * len(text)
        out.append(f'  <s id="{n}">')
        out.append(f'    <time id="T{n}S" value="{stamp(t)}" />')
        for i, token in enumerate(_TOKEN.findall(text), 1):
            out.append(f'    <w id="{n}.{i}">{html.escape(token, quote=False)}</w>')
        out.append(f'    <time id="T{n}E" value="{stamp(end)}" />')
        out.append("  </s>")
        t = end
    out += ["  <meta>", f"    <source><year>{2000 + number % 20}</year></source>", "  </meta>",
            "</document>", ""]
    return "\n".join(out).encode()


def build(folder: Path, films: int, lines: list[str]) -> int:
    """Write `films` films under folder/OpenSubtitles; their total size in bytes."""
    total = 0
    for number in range(films):
        film = folder / "OpenSubtitles" / "xml" / "en" / str(2000 + number % 20) / str(
            100_000 + number)
        film.mkdir(parents=True, exist_ok=True)
        data = gzip.compress(film_xml(number, lines), compresslevel=6)
        (film / f"{5_000_000 + number}.xml.gz").write_bytes(data)
        total += len(data)
    return total


INGEST = """
import json, resource, sys, time
from pathlib import Path
from chatbot.corpus.ingest import ingest
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import ReadOptions
folder, db, jobs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
with CorpusStore(db) as store:
    report = ingest(store, [folder], ReadOptions(), jobs=jobs).as_json()
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: on Linux the latter starts from the parent's size at the fork
# that made this process, and the parent holds the film lines.
try:
    own = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "rss_mb": own, "worker_rss_mb": workers, **report}))
"""


def ingest(folder: Path, tmp: Path, jobs: int) -> dict:
    db = tmp / "corpus.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", INGEST, str(folder), str(db), str(jobs)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0 and result["duplicates"] == 0, result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()
    lines = real_lines()
    with tempfile.TemporaryDirectory(prefix="bench-opus-") as tmp_name:
        tmp = Path(tmp_name)
        small, large = tmp / "small", tmp / "large"
        small_films = max(1, args.films // 10)
        build(small, small_films, lines)
        size = build(large, args.films, lines)
        times: dict[int, list[float]] = {1: [], args.jobs: []}
        for _ in range(args.rounds):
            for jobs in (1, args.jobs):
                result = ingest(large, tmp, jobs)
                times[jobs].append(result["seconds"])
        many = result
        few = ingest(small, tmp, args.jobs)
    one, parallel = statistics.median(times[1]), statistics.median(times[args.jobs])
    figures = {
        "films": args.films, "mb_compressed": round(size / 2**20, 1),
        "conversations": many["conversations"], "turns": many["turns"],
        "jobs_1_s": round(one, 2), f"jobs_{args.jobs}_s": round(parallel, 2),
        "speedup": round(one / parallel, 2),
        "films_per_s": round(args.films / parallel, 1),
        f"rss_mb_{small_films}_films": round(few["rss_mb"]),
        f"rss_mb_{args.films}_films": round(many["rss_mb"]),
        "rss_ratio": round(many["rss_mb"] / few["rss_mb"], 2),
        "worker_rss_mb": round(max(few["worker_rss_mb"], many["worker_rss_mb"])),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.films} distinct OPUS films ({figures['mb_compressed']} MB .xml.gz, "
          f"{many['conversations']} conversations, {many['turns']} turns), median of "
          f"{args.rounds} run(s) each")
    print(f"--jobs 1: {one:7.2f} s   --jobs {args.jobs}: {parallel:7.2f} s   "
          f"speedup {figures['speedup']:.2f}x (goal >= 1.6 on 2 cores)")
    print(f"peak RSS: {small_films} films {few['rss_mb']:.0f} MB, {args.films} films "
          f"{many['rss_mb']:.0f} MB: ratio {figures['rss_ratio']:.2f} (goal <= 1.5); "
          f"largest worker {figures['worker_rss_mb']} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
