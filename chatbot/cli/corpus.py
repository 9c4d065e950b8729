"""`chatbot ingest` and `chatbot corpus ...`: building and looking at the corpus store."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from chatbot.cli.options import corpus_db, db_option, json_option
from chatbot.corpus import ingest as ingesting
from chatbot.corpus.blob import MEMBER_SEPARATOR
from chatbot.corpus.formats import FORMATS, Format, format_named
from chatbot.corpus.ingest import (
    FileResult,
    IngestReport,
    builtin_inputs,
    default_jobs,
    input_files,
)
from chatbot.corpus.split import SPLIT_BY, SPLITS
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import (
    CHAT_GAP_SECONDS,
    DEFAULT_GAP_SECONDS,
    DEFAULT_MIN_TURNS,
    ReadOptions,
)
from chatbot.errors import ChatbotError

MAX_WARNINGS_SHOWN = 20
MAX_NAMES_SHOWN = 3  # names listed in a line about skipped files
MAX_PRIVATE_SHOWN = 20  # private sources `corpus stats` names (--json: all)
# Show a progress bar only for work that takes a while.
PROGRESS_MIN_BYTES = 16 << 20


def _noun(n: int, singular: str, plural: str | None = None) -> str:
    """The noun for a count: "file" for 1, "files" otherwise."""
    return singular if n == 1 else plural or singular + "s"


def _count(n: int, singular: str, plural: str | None = None, grouped: bool = False) -> str:
    """A count and its noun: "1 file", "2 files" ("12,345 files" when `grouped`)."""
    number = f"{n:,}" if grouped else str(n)
    return f"{number} {_noun(n, singular, plural)}"


def _names(names: list[str]) -> str:
    """The first few names, then "...": "a.txt, b.doc, ..."."""
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (", ..." if len(names) > MAX_NAMES_SHOWN else "")


class _Skipped:
    """What an ingest passed over, one stderr line for each kind: archive members (by
    archive and reason), files of folders with no known format, files read that gave
    nothing."""

    def __init__(self, format_name: str | None, language: str | None) -> None:
        self.format_name = format_name
        self.language = language
        self.members: dict[tuple[str, str], list[str]] = {}
        self.empty: dict[str, list[str]] = {}  # format -> paths read that gave nothing

    def member(self, name: str, reason: str) -> None:
        """Walk's on_skip: `name` is ARCHIVE!member, or a file (of another language)."""
        archive, _, member = name.rpartition(MEMBER_SEPARATOR)
        if reason == "not a known format":
            reason = "no known format (--format F reads them as F)"
        elif reason.startswith("language ") and self.language:
            reason = f"not in language {self.language}"
        self.members.setdefault((archive, reason), []).append(member)

    def result(self, result: FileResult) -> None:
        if result.found_nothing:
            self.empty.setdefault(result.format or "?", []).append(str(result.path))

    def report(self, folders: dict[str, list[str]]) -> None:
        for folder, names in folders.items():
            click.echo(f"{folder.rstrip('/')}/: {_count(len(names), 'file')} skipped: no known "
                       f"format ({_names(names)}; --format F reads them as F)", err=True)
        for (archive, reason), names in self.members.items():
            what = (f"{archive}: {_count(len(names), 'member')}" if archive
                    else _count(len(names), "file"))
            click.echo(f"{what} skipped: {reason} ({_names(names)})", err=True)
        for fmt, paths in self.empty.items():
            hint = (f"; --format {fmt} was given: leave it out to detect the format"
                    if self.format_name == fmt else "")
            click.echo(f"{_count(len(paths), 'file')} read as {fmt} gave no conversations "
                       f"({_names(paths)}{hint})", err=True)


class _Warnings:
    """Prints reader warnings to stderr, up to a limit, and counts the rest."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS_SHOWN:
            click.echo(f"warning: {message}", err=True)

    def summary(self) -> None:
        if self.count > MAX_WARNINGS_SHOWN:
            click.echo(f"warning: {_count(self.count - MAX_WARNINGS_SHOWN, 'more warning')} "
                       "not shown", err=True)


def _describe(result: FileResult) -> str:
    if result.error:
        return f"error: {result.error}"
    if result.unchanged_as:
        return f"{result.path}: unchanged (already ingested from {result.unchanged_as})"
    if result.duplicate_of:
        return f"{result.path}: a duplicate of {result.duplicate_of}, not stored again"
    dropped = (f", {result.skipped_conversations} too short dropped"
               if result.skipped_conversations else "")
    repeated = (f", {result.duplicate_conversations} stored already"
                if result.duplicate_conversations else "")
    return (f"{result.path}: {_count(result.conversations, 'conversation')}, "
            f"{_count(result.turns, 'turn')} ({result.format}{dropped}{repeated})")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@db_option
@click.option("--format", "format_name", type=click.Choice(sorted(FORMATS)), default=None,
              help="Read every file as this format instead of detecting it.")
@click.option("--encoding", default=None, help="Text encoding of the files (default: detect).")
@click.option("--gap", "gap_seconds", type=click.FloatRange(min=0), default=None,
              help="A silence this long (seconds) ends a conversation (default: "
              f"{DEFAULT_GAP_SECONDS:g} for subtitles, {CHAT_GAP_SECONDS:g} for chat exports).")
@click.option("--min-turns", type=click.IntRange(min=1), default=DEFAULT_MIN_TURNS,
              show_default=True, help="Drop (and count) conversations with fewer turns.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes that read files and archive members (default: the "
              "number of cores).")
@click.option("--language", default=None, metavar="CODE",
              help="Archives in the OPUS layout (.../xml/LANG/YEAR/IMDBID/...): read only this "
              "language's files.")
@click.option("--keep-duplicates", is_flag=True,
              help="Store every file and conversation, even a film or conversation stored "
              "already (a film's second release, an export read back).")
@click.option("--builtin", "builtins", multiple=True, metavar="NAME",
              help="An installed dataset: chitchat, or chatterbot[:LANGUAGE] (default english).")
@click.option("--transcripts", "transcripts_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="A chat transcripts file (see `chatbot transcripts path`): its "
              "conversations become one source, replacing what an earlier run took from it.")
@click.option("--only-rated", type=click.Choice(["good", "bad"]), default=None,
              help="With --transcripts: keep only the stretches of each chat whose bot replies "
              "were all rated so, each ending at such a reply.")
@json_option
def ingest(paths, db_path, format_name, encoding, gap_seconds, min_turns, jobs, language,
           keep_duplicates, builtins, transcripts_path, only_rated, as_json):
    """Read subtitles, novels and dialogue sets into conversations.

    \b
    Example:
        chatbot ingest movie.srt novels/ --db corpus.db
        chatbot ingest en.zip --language en        # an OpenSubtitles archive from OPUS
        chatbot ingest --builtin chitchat
        chatbot ingest --transcripts "$(chatbot transcripts path)" --only-rated good

    Directories are walked recursively, and archives (.zip, .tar, .tar.gz) are read in
    place, member by member. The format comes from the file's extension and content (srt,
    vtt, ass, ttml, OPUS xml, novel .txt and .epub, Cornell, DailyDialog, ChatterBot YAML,
    chitchat JSON, tab-separated pairs, JSONL export); --format overrides it. Content
    stored already is not stored again, nor is a film's other release (by IMDb id, or by
    near-duplicate text). What is skipped (files of no known format, archive members, files
    that hold no conversations) gets a line on stderr. Exit status 1 if any file failed or
    nothing at all was ingested, 130 if interrupted.
    """
    if not paths and not builtins and transcripts_path is None:
        raise click.UsageError("give files or directories to ingest, --builtin NAME or "
                               "--transcripts FILE")
    if only_rated and transcripts_path is None:
        raise click.UsageError("--only-rated applies to --transcripts FILE")
    fmt = format_named(format_name) if format_name else None
    warnings = _Warnings()
    skipped = _Skipped(format_name, language)
    jobs_list: list[tuple[list[Path], Format | None]] = []
    if paths:
        jobs_list.append((list(paths), fmt))
    for name in builtins:
        files, builtin_format = builtin_inputs(name)
        jobs_list.append((files, builtin_format))
    total = sum(_size(p) for files, job_format in jobs_list
                for p in input_files(files, every_file=job_format is not None))
    total += _size(transcripts_path) if transcripts_path is not None else 0
    show_bar = sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES
    report = IngestReport()
    # A corpus that receives chat transcripts or exports is private from the start (one
    # that finds a chat export among its inputs is made so before it goes in).
    private = transcripts_path is not None or (fmt is not None and ingesting.is_private(fmt))
    with CorpusStore(corpus_db(db_path), private=private) as store, \
            click.progressbar(
        length=total, file=sys.stderr, label="ingesting", show_eta=True,
        hidden=not show_bar,
    ) as bar:
        done = 0  # bytes of the inputs before the current job
        counted = {"files": 0, "conversations": 0}
        file_start = [0]  # where the input being read here starts (bytes into the job)

        def progress(position: int) -> None:
            if done + file_start[0] + position > bar.pos:
                bar.update(done + file_start[0] + position - bar.pos)

        options = ReadOptions(encoding=encoding, gap_seconds=gap_seconds, min_turns=min_turns,
                              warn=warnings, progress=progress)

        def on_file(result: FileResult) -> None:
            counted["files"] += 1
            counted["conversations"] += result.conversations
            bar.label = (f"ingesting: {_count(counted['files'], 'file', grouped=True)}, "
                         f"{_count(counted['conversations'], 'conversation', grouped=True)}")
            bar.update(done + result.done_bytes - bar.pos)
            file_start[0] = result.done_bytes
            report.results.append(result)
            skipped.result(result)
            line = _describe(result)
            if result.error:
                click.echo(line, err=True)
            elif not as_json and not result.found_nothing:  # those get a line on stderr
                if show_bar:
                    click.echo("", err=True)
                click.echo(line)

        try:
            for files, job_format in jobs_list:
                done_report = ingesting.ingest(
                    store, files, options, job_format, on_file, jobs=jobs or default_jobs(),
                    language=language, keep_duplicates=keep_duplicates, on_skip=skipped.member)
                report.skipped_members += done_report.skipped_members
                report.skipped_files.update(done_report.skipped_files)
                done = bar.pos
            if transcripts_path is not None:
                from chatbot.transcripts.ingest import ingest_transcripts

                result = ingest_transcripts(store, transcripts_path, only_rated, min_turns)
                result.done_bytes = _size(transcripts_path)
                on_file(result)
        except KeyboardInterrupt:
            counts = report.as_json()
            click.echo(f"\ninterrupted: {_count(counts['files'], 'file')} done and stored; "
                       "the file being stored when it stopped is not in the store", err=True)
            sys.exit(130)
    warnings.summary()
    skipped.report(report.skipped_files)
    counts = report.as_json()
    nothing = report.nothing_ingested()
    if nothing and not counts["failed"]:  # failures have said why already
        click.echo("error: nothing ingested: no conversation stored, none stored already",
                   err=True)
    if as_json:
        click.echo(json.dumps(counts))
    else:
        extra = "".join(
            f", {_count(counts[key], singular)}{after}" for key, singular, after in (
                ("duplicates", "duplicate file", ""),
                ("duplicate_conversations", "conversation", " stored already"),
                ("skipped_members", "archive member", " skipped"),
                ("skipped_files", "file", " of no known format skipped"),
                ("empty_files", "file", " with no conversations")) if counts[key])
        click.echo(
            f"{_count(counts['files'], 'file')}: "
            f"{_count(counts['conversations'], 'conversation')}, "
            f"{_count(counts['turns'], 'turn')}, "
            f"{_count(counts['skipped_conversations'], 'short conversation')} dropped, "
            f"{counts['unchanged']} unchanged, {counts['failed']} failed{extra}"
        )
    if counts["failed"] or nothing:
        sys.exit(1)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@click.group()
def corpus() -> None:
    """Look at the corpus store: stats, show, search, speakers, export, rm."""


@corpus.command()
@db_option
@json_option
def stats(db_path, as_json):
    """Count sources, conversations and turns, and name the sources that are private
    data (chat transcripts and exports: `chatbot corpus rm SOURCE` deletes one).

    \b
    Example:
        chatbot corpus stats --json
    """
    with _open_existing(db_path) as store:
        counts = store.stats()
        private = store.private_sources()
        if as_json:
            click.echo(json.dumps({**counts, "private_sources": private}, ensure_ascii=False))
            return
        click.echo(f"{_count(counts['sources'], 'source')}, "
                   f"{_count(counts['conversations'], 'conversation')}, "
                   f"{_count(counts['turns'], 'turn')} in {store.path}")
        if counts["duplicates"] or counts["duplicate_conversations"]:
            click.echo(f"not stored again: {_count(counts['duplicates'], 'duplicate file')} "
                       "(another release of a stored film), "
                       f"{_count(counts['duplicate_conversations'], 'conversation')} stored "
                       "already")
        for row in store.stats_by_format():
            sources, duplicates = row["sources"], row["duplicates"]
            conversations, turns = row["conversations"] or 0, row["turns"] or 0
            dupes = f" {duplicates:>6} {_noun(duplicates, 'duplicate')}" if duplicates else ""
            click.echo(f"  {row['format']:<16} {sources:>6} {_noun(sources, 'source'):<7} "
                       f"{conversations:>9} {_noun(conversations, 'conversation'):<13} "
                       f"{turns:>10} {_noun(turns, 'turn'):<5}{dupes}".rstrip())
        if private:
            click.echo(f"private data ({_mode(store.path)}): {_count(len(private), 'source')} "
                       "of chat transcripts or exports (`chatbot corpus rm SOURCE` deletes one)")
            for row in private[:MAX_PRIVATE_SHOWN]:
                click.echo(f"  {row['id']:>6}  {row['path']}  ({row['format']}, "
                           f"{_count(row['conversations'], 'conversation')})")
            if len(private) > MAX_PRIVATE_SHOWN:
                click.echo(f"  ... and {len(private) - MAX_PRIVATE_SHOWN} more (--json lists "
                           "them all)")


def _mode(path: Path) -> str:
    """How private a file is, in words: "mode 0600", or a warning when others can read it."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return f"mode {mode:04o}: others can read it; chmod 600 {path}"
    return f"mode {mode:04o}"


@corpus.command()
@click.argument("conversation_id", type=int)
@db_option
@json_option
def show(conversation_id, db_path, as_json):
    """Print one conversation, turn by turn.

    \b
    Example:
        chatbot corpus show 12
    """
    with _open_existing(db_path) as store:
        conversation = store.conversation(conversation_id)
    if as_json:
        click.echo(json.dumps(conversation, ensure_ascii=False))
        return
    click.echo(f"conversation {conversation['id']} (#{conversation['position']} of "
               f"{conversation['source']})")
    for number, turn in enumerate(conversation["turns"], 1):
        when = f" [{_clock(turn['start_ms'])}]" if turn["start_ms"] is not None else ""
        who = f" {turn['speaker']}:" if turn["speaker"] else ""
        click.echo(f"{number:>3}{when}{who} {turn['text']}")


def _clock(ms: int) -> str:
    """A subtitle's time into its film, or a chat message's date and time (chat exports
    store times since the epoch: anything past a day is one)."""
    if ms >= 86_400_000:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


@corpus.command()
@click.argument("query")
@db_option
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many turns, best matches first.")
@json_option
def search(query, db_path, limit, as_json):
    """Full-text search over turns (SQLite FTS5 syntax: words, "phrases", OR, NOT, prefix*).

    \b
    Example:
        chatbot corpus search '"how are you"'
    """
    with _open_existing(db_path) as store:
        hits = store.search(query, limit)
    if as_json:
        click.echo(json.dumps(hits, ensure_ascii=False))
        return
    for hit in hits:
        click.echo(f"{hit['conversation_id']}:{hit['position']}  {hit['snippet']}")
    if not hits:
        click.echo("no matches", err=True)


@corpus.command()
@db_option
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many speakers, most turns first.")
@json_option
def speakers(db_path, limit, as_json):
    """List who speaks in the corpus, by turns, most first (to find your own name).

    Turns with no speaker (most subtitles and books) are not listed; a line on stderr
    counts them. --json prints a list of {"speaker", "turns", "conversations"}.

    \b
    Example:
        chatbot corpus speakers -n 10
    """
    with _open_existing(db_path) as store:
        found, unnamed = store.speakers()
    if as_json:
        click.echo(json.dumps(found[:limit], ensure_ascii=False))
        return
    width = max((len(f"{row['turns']:,}") for row in found[:limit]), default=1)
    for row in found[:limit]:
        click.echo(f"{row['turns']:>{width},} {_noun(row['turns'], 'turn'):<5}  "
                   f"{_count(row['conversations'], 'conversation', grouped=True):<20} "
                   f"{row['speaker']}".rstrip())
    notes = []
    if len(found) > limit:
        notes.append(f"{_count(len(found) - limit, 'more speaker', grouped=True)} not shown "
                     "(-n N shows more)")
    if unnamed:
        notes.append(f"{_count(unnamed, 'turn', grouped=True)} with no speaker not listed")
    if not found:
        notes.insert(0, "no speakers named in the corpus")
    if notes:
        click.echo("; ".join(notes), err=True)


@corpus.command()
@click.argument("source")
@db_option
@json_option
def rm(source, db_path, as_json):
    """Delete a source with its conversations, turns and search entries, for good.

    SOURCE is the path as the store records it (absolute; ARCHIVE!member for an
    archive's member: `chatbot corpus stats` lists the private ones with their ids), a
    path from here, an archive or a folder (all that was read from it), or the source's
    id. Films stored as duplicates of it go too, so that ingesting them again stores
    them.

    \b
    Example:
        chatbot corpus rm "$(chatbot transcripts path)"   # the chats taken in
        chatbot corpus rm 12 --json
    """
    with _open_existing(db_path) as store:
        removed = store.remove(source)
    if as_json:
        click.echo(json.dumps(removed.as_json(), ensure_ascii=False))
        return
    for row in removed.sources:
        private = ", private" if row["private"] else ""
        click.echo(f"removed {row['path']} ({row['format']}{private}): "
                   f"{_count(row['conversations'] or 0, 'conversation')}, "
                   f"{_count(row['turns'] or 0, 'turn')}")
    if removed.duplicates:
        click.echo(f"removed {_count(removed.duplicates, 'duplicate file')} recorded as "
                   "repeating it")


@corpus.command()
@db_option
@click.option("--format", "format_name", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="Output format: this project's JSONL (which "
              "`chatbot ingest` reads back).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout (private, 0600, when the corpus is: it "
              "holds chat transcripts).")
@click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True,
              help="Only one side of the train/validation split, as `chatbot train` makes it.")
@click.option("--valid-fraction", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="With --split: the share of works (films, books; dialogues of dialogue "
              "sets) that go to validation.")
@click.option("--split-by", type=click.Choice(SPLIT_BY), default="work", show_default=True,
              help="With --split: keep each work on one side (what training does), or split "
              "by conversation (how models trained before works were split).")
def export(db_path, format_name, output, split, valid_fraction, split_by):
    """Write conversations as JSONL: one {"id", "source", "turns"} object a line.

    \b
    Example:
        chatbot corpus export > corpus.jsonl
        chatbot corpus export --split valid --valid-fraction 0.05 > valid.jsonl
    """
    from chatbot.corpus.readers import jsonl
    from chatbot.files import open_private

    with _open_existing(db_path) as store:
        if output is None:
            out = sys.stdout
        elif store.path.stat().st_mode & 0o077 == 0:  # a private corpus: a private copy
            out = open_private(output)
        else:
            out = open(output, "w", encoding="utf-8")
        with out if output is not None else contextlib.nullcontext(out):
            for conversation_id, source, conversation in store.iter_conversations(
                    split, valid_fraction, split_by):
                out.write(jsonl.dumps(conversation_id, source, conversation) + "\n")


def _open_existing(db_path: Path | None) -> CorpusStore:
    """The corpus store for reading; a missing file is an error, not a new empty store."""
    path = corpus_db(db_path)
    if not path.exists():
        raise ChatbotError(f"{path}: no corpus database yet; run `chatbot ingest` first")
    return CorpusStore(path)
