"""The corpus tokenized once: flat arrays on disk that training and eval memory-map.

Tokenizing every conversation again in every epoch costs more than a small model's step,
and at OpenSubtitles scale it is the whole cost of an epoch. So each (corpus content,
tokenizer) pair is tokenized once into a directory:

    manifest.json           counts, the digests below, each file's size and digest
    tokens.bin              int32  every turn's token ids, end to end
    turns.bin               int64  where each turn starts in tokens (turns + 1)
    conversations.bin       int64  where each conversation starts in turns (+ 1)
    split_work.bin          float64  each conversation's place in [0, 1) for a split
    split_conversation.bin  float64  by work or by conversation (chatbot.corpus.split)
    speakers.bin            int32  each turn's speaker (an index into the manifest's
                                   "speakers"; -1: none)
    tokenizer.json (...)    the tokenizer it was built with: workers given a built cache
                            need neither the corpus nor the model directory to read it

It is built into a temporary directory and renamed into place, so a kill or a full disk
never leaves a partial cache. Opening one checks it: the format, the corpus' and the
tokenizer's digests, every file's size, and the blake2b digests of the index files and
of the token blocks the reader will touch (a worker checks only its shard's). A cache
that fails a check is rebuilt, with one line saying why; it is never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.corpus.split import split_value
from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.model.exchanges import Exchange, exchanges

FORMAT = "chatbot-token-cache"
VERSION = 1
MANIFEST = "manifest.json"
BLOCK = 16 << 20  # bytes per digest block of tokens.bin: a shard checks only its own
CHUNK = 20_000  # turns tokenized at a time (memory stays flat)
PARALLEL_FROM = 50_000  # turns: below this, starting worker processes costs more

# name -> dtype of each array file
ARRAYS = {
    "tokens": np.int32,
    "turns": np.int64,
    "conversations": np.int64,
    "split_work": np.float64,
    "split_conversation": np.float64,
    "speakers": np.int32,
}

Progress = Callable[[int, int], None]  # (turns done, turns in all)


class StaleCache(Exception):
    """A cache that must not be used; the message says why (for the line that says so)."""


@dataclass(frozen=True)
class TokenCache:
    """An opened, checked cache: memory maps, nothing loaded whole."""

    path: Path
    manifest: dict[str, Any]
    tokens: np.ndarray
    turns: np.ndarray  # turn k's tokens are tokens[turns[k]:turns[k + 1]]
    conversations: np.ndarray  # conversation c's turns are turns[c]..turns[c + 1] - 1
    split_work: np.ndarray
    split_conversation: np.ndarray
    speakers: np.ndarray

    @property
    def conversation_count(self) -> int:
        return len(self.conversations) - 1

    @property
    def speaker_names(self) -> list[str]:
        return list(self.manifest["speakers"])

    def tokenizer(self) -> Any:
        """The tokenizer the cache was built with."""
        from chatbot.text.tokenizer import load_tokenizer

        return load_tokenizer(self.path)

    def in_split(self, split: str, valid_fraction: float, split_by: str) -> np.ndarray:
        """(conversations,) booleans: which conversations `split` holds, exactly as
        chatbot.corpus.split.in_split says for their keys."""
        if split == "all":
            return np.ones(self.conversation_count, bool)
        values = self.split_work if split_by == "work" else self.split_conversation
        is_valid = values < valid_fraction
        return is_valid if split == "valid" else ~is_valid

    def target_turns(self, reply_as: tuple[str, ...]) -> np.ndarray | None:
        """(turns,) booleans: the turns that are targets when replying as `reply_as`;
        None when every turn is."""
        if not reply_as:
            return None
        names = self.speaker_names
        wanted = [i for i, name in enumerate(names) if name in set(reply_as)]
        return np.isin(self.speakers, np.asarray(wanted, np.int32))

    def exchanges(self, split: str, valid_fraction: float, max_len: int,
                  split_by: str = "work", reply_as: tuple[str, ...] = (),
                  reverse: bool = False) -> Iterator[list[Exchange]]:
        """The split's conversations as exchanges, in store order: the very lists
        `chatbot.train.data.conversations` makes from the store and the tokenizer (each
        exchange backwards with `reverse`, as a reverse model trains on them)."""
        keep = self.in_split(split, valid_fraction, split_by)
        targets = self.target_turns(reply_as)
        for c in np.flatnonzero(keep):
            first, end = int(self.conversations[c]), int(self.conversations[c + 1])
            ids = [self.tokens[self.turns[k]:self.turns[k + 1]].tolist()
                   for k in range(first, end)]
            found = exchanges(ids, max_len, reverse)
            if targets is not None:
                found = [e if targets[first + k + 1] else e._replace(target_out=[])
                         for k, e in enumerate(found)]
                if not any(e.target_out for e in found):
                    continue
            if found:
                yield found


# --- where a cache lives, and whether it fits ---------------------------------------------


def tokenizer_digest(tokenizer: Any) -> str:
    """A digest of the tokenizer's saved files (the same fitted tokenizer, the same one)."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="chatbot-tokenizer-") as tmp:
        tokenizer.save(tmp)
        for file in sorted(Path(tmp).iterdir()):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def default_path(db: Path | str, corpus_digest: str, tokens_digest: str) -> Path:
    """CORPUS.tokens/KEY: beside the corpus, one directory per (content, tokenizer)."""
    from chatbot.corpus.store import token_caches

    key = hashlib.sha256(f"{corpus_digest}:{tokens_digest}:{VERSION}".encode()).hexdigest()
    return token_caches(db) / key[:16]


def _remove_outdated(caches: Path, corpus_digest: str) -> None:
    """Drop the default caches built from an older content of the corpus: they are
    never used again, and they may hold turns since removed (`chatbot corpus rm`)."""
    for entry in caches.iterdir():
        if entry.name.startswith("."):
            continue
        with contextlib.suppress(OSError, StaleCache, KeyError):
            if _manifest(entry)["corpus_digest"] != corpus_digest:
                shutil.rmtree(entry, ignore_errors=True)


def ensure(db: Path | str, tokenizer: Any, path: Path | str | None = None,
           progress: Progress | None = None, say: Callable[[str], None] | None = None
           ) -> TokenCache:
    """The cache of corpus `db` tokenized by `tokenizer`: opened if it is there and
    sound, else built (`say` gets one line saying why an existing one was not used)."""
    from chatbot.corpus.store import CorpusStore

    with CorpusStore(db) as store:
        corpus_digest = store.content_digest()
        tokens_digest = tokenizer_digest(tokenizer)
        target = Path(path) if path else default_path(db, corpus_digest, tokens_digest)
        if target.exists() and not target.is_dir():
            raise ChatbotError(f"{target}: a file, not a token cache directory")
        if target.exists() and any(target.iterdir()):
            _require_cache_files(target)  # never replace a directory that is not a cache
            try:
                return open_cache(target, corpus_digest, tokens_digest)
            except StaleCache as why:
                if say:
                    say(f"{target}: token cache not used ({why}); building it again")
        private = bool(store.private_sources())
        build(store, tokenizer, target, corpus_digest, tokens_digest, progress, private)
    if path is None:
        _remove_outdated(target.parent, corpus_digest)
    return open_cache(target, corpus_digest, tokens_digest)


# --- building -------------------------------------------------------------------------------


class _Writer:
    """An array file written in pieces, digested as it goes (whole, and by blocks)."""

    def __init__(self, path: Path, dtype: Any) -> None:
        self.file = open(path, "wb")  # noqa: SIM115  closed by close()
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.whole = hashlib.blake2b(digest_size=16)
        self.blocks: list[str] = []
        self._block = hashlib.blake2b(digest_size=16)
        self._in_block = 0

    def write(self, values: Any) -> None:
        data = np.ascontiguousarray(values, self.dtype).tobytes()
        self.file.write(data)
        self.count += len(data) // self.dtype.itemsize
        self.whole.update(data)
        view = memoryview(data)
        while view:
            take = min(BLOCK - self._in_block, len(view))
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == BLOCK:
                self.blocks.append(self._block.hexdigest())
                self._block, self._in_block = hashlib.blake2b(digest_size=16), 0

    def close(self) -> dict[str, Any]:
        if self._in_block:
            self.blocks.append(self._block.hexdigest())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return {"dtype": self.dtype.str, "count": self.count,
                "bytes": self.count * self.dtype.itemsize,
                "blake2b": self.whole.hexdigest(), "blocks": self.blocks}


def build(store: Any, tokenizer: Any, path: Path | str, corpus_digest: str,
          tokens_digest: str, progress: Progress | None = None, private: bool = False) -> None:
    """Tokenize every conversation of `store` into a cache at `path` (replaced whole).

    Written into a sibling temporary directory and renamed into place: a full disk or a
    kill leaves no partial cache (a ChatbotError says which file could not be written).
    Every cache is private (0700 directory, 0600 files): it holds the corpus' text as
    ids; the manifest records whether the corpus has `private` sources.
    """
    path = Path(path)
    report = progress or (lambda done, total: None)
    total = store.stats()["turns"]
    report(0, total)  # shown as begun before the first (slow, on a large store) read
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.name.endswith(".tokens"):  # ours (CORPUS.tokens/), not a user's folder
        with contextlib.suppress(OSError):
            os.chmod(path.parent, 0o700)  # only its owner can list the caches there
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tokenizer.save(work)
        writers = {name: _Writer(work / f"{name}.bin", dtype) for name, dtype in ARRAYS.items()}
        writers["turns"].write([0])
        writers["conversations"].write([0])
        speakers = _tokenize_into(store, tokenizer, writers, total, report)
        files = {f"{name}.bin": w.close() for name, w in writers.items()}
        manifest = {
            "format": FORMAT, "version": VERSION, "corpus": str(getattr(store, "path", "")),
            "corpus_digest": corpus_digest, "tokenizer_digest": tokens_digest,
            "conversations": files["conversations.bin"]["count"] - 1,
            "turns": files["turns.bin"]["count"] - 1,
            "tokens": files["tokens.bin"]["count"], "speakers": speakers,
            "private": private,
            "block_bytes": BLOCK, "files": files,
        }
        write_atomic(work / MANIFEST, json.dumps(manifest, indent=1).encode())
        for file in work.iterdir():
            os.chmod(file, 0o600)
        _move_into_place(work, path, corpus_digest, tokens_digest)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise ChatbotError(f"{e.filename or path}: cannot write the token cache "
                           f"({e.strerror}); no partial cache was left") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _move_into_place(work: Path, path: Path, corpus_digest: str, tokens_digest: str) -> None:
    """Rename the finished build to `path`. Another process (a worker) may have put the
    same cache there first: then that one stays and this build goes."""
    with contextlib.suppress(StaleCache, OSError):
        if path.exists():
            open_cache(path, corpus_digest, tokens_digest)
            shutil.rmtree(work, ignore_errors=True)
            return
    if path.exists():  # a stale cache: out of the way first, then gone
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / "cache")
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(work, path)
    except OSError as error:
        # Lost a race to another build of the same cache: keep the one in place if sound.
        try:
            open_cache(path, corpus_digest, tokens_digest)
        except StaleCache:
            raise error from None
        shutil.rmtree(work, ignore_errors=True)
        return
    _sync_directory(path.parent)


_CACHE_FILES = {f"{name}.bin" for name in ARRAYS} | {MANIFEST, "tokenizer.json",
                                                      "tokenizer.model"}


def _require_cache_files(path: Path) -> None:
    """A ChatbotError unless `path` holds only what a cache holds."""
    others = sorted(p.name for p in path.iterdir() if p.name not in _CACHE_FILES)
    if others:
        raise ChatbotError(f"{path}: not a token cache (it holds {', '.join(others[:3])}"
                           f"{', ...' if len(others) > 3 else ''}); give a new or empty "
                           "directory for --token-cache")


def _tokenize_into(store: Any, tokenizer: Any, writers: dict[str, _Writer], total: int,
                   report: Progress) -> list[str]:
    """Stream the store's turns through the tokenizer into the writers, a chunk at a
    time (in worker processes for large corpora); the speakers' names, in index order."""
    speakers: dict[str, int] = {}
    tokens_end = 0
    turns_end = 0
    last: int | None = None
    done = 0

    def chunks() -> Iterator[tuple[list[str], list[int], list[tuple[float, float]], list[int]]]:
        nonlocal last
        texts: list[str] = []
        who: list[int] = []
        splits: list[tuple[float, float]] = []
        ends: list[int] = []  # turn counts in the chunk where a conversation ends
        for conversation, work_key, conversation_key, text, speaker in store.iter_turn_rows():
            if conversation != last:
                if last is not None:
                    ends.append(len(texts))
                splits.append((split_value(work_key), split_value(conversation_key)))
                last = conversation
                if len(texts) >= CHUNK:  # cut at a conversation's start
                    yield texts, who, splits[:-1], ends
                    texts, who, splits, ends = [], [], splits[-1:], []
            texts.append(text)
            who.append(-1 if not speaker else speakers.setdefault(speaker, len(speakers)))
        if last is not None:
            ends.append(len(texts))
        yield texts, who, splits, ends

    for (texts, who, splits, ends), (lengths, flat) in _encoded(chunks(), tokenizer, total):
        writers["tokens"].write(flat)
        writers["turns"].write(tokens_end + np.cumsum(lengths))
        writers["speakers"].write(who)
        writers["conversations"].write(turns_end + np.asarray(ends, np.int64))
        if splits:
            values = np.asarray(splits, np.float64)
            writers["split_work"].write(values[:, 0])
            writers["split_conversation"].write(values[:, 1])
        tokens_end += int(lengths.sum())
        turns_end += len(texts)
        done += len(texts)
        report(done, total)
    return list(speakers)


def _encoded(chunks: Iterator[Any], tokenizer: Any, total: int
             ) -> Iterator[tuple[Any, tuple[np.ndarray, np.ndarray]]]:
    """(chunk, (token counts, ids)) for each chunk, in order; in worker processes when
    there are many turns and more than one core (one chunk in flight per worker, so
    memory stays flat and no pipe can fill both ways)."""
    workers = min(os.cpu_count() or 1, 8)
    if total < PARALLEL_FROM or workers < 2:
        for chunk in chunks:
            yield chunk, _flatten(tokenizer.encode_batch(chunk[0]))
        return
    import pickle
    import subprocess
    import sys

    from chatbot.train.tokenize_worker import read_exactly

    with tempfile.TemporaryDirectory(prefix="chatbot-tokenizer-") as tmp:
        tokenizer.save(tmp)
        processes = [subprocess.Popen(
            [sys.executable, "-m", "chatbot.train.tokenize_worker", tmp],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(workers)]
        try:
            sent: list[Any] = []  # the chunks sent, in order (None once yielded)
            for chunk in chunks:
                k = len(sent)
                worker = processes[k % workers]
                if k >= workers:  # this worker's last chunk first: take its result
                    yield sent[k - workers], _received(worker.stdout, read_exactly)
                    sent[k - workers] = None
                data = pickle.dumps(chunk[0], protocol=pickle.HIGHEST_PROTOCOL)
                worker.stdin.write(len(data).to_bytes(8, "little") + data)
                worker.stdin.flush()
                sent.append(chunk)
            for k in range(max(0, len(sent) - workers), len(sent)):
                yield sent[k], _received(processes[k % workers].stdout, read_exactly)
        except (EOFError, BrokenPipeError):
            raise ChatbotError("a tokenizing process stopped unexpectedly while the "
                               "token cache was built; nothing was kept") from None
        finally:
            for process in processes:
                with contextlib.suppress(OSError):
                    process.stdin.close()
                process.wait()


def _flatten(encoded: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    return lengths, np.fromiter((i for ids in encoded for i in ids), np.int32,
                                int(lengths.sum()))


def _received(stream: Any, read_exactly: Callable[[Any, int], bytes]
              ) -> tuple[np.ndarray, np.ndarray]:
    """One result of a tokenizing process: (token counts, ids)."""
    header = read_exactly(stream, 16)
    count = int.from_bytes(header[:8], "little")
    payload = read_exactly(stream, int.from_bytes(header[8:], "little"))
    return (np.frombuffer(payload[:8 * count], np.int64),
            np.frombuffer(payload[8 * count:], np.int32))


def _sync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- opening --------------------------------------------------------------------------------


def open_cache(path: Path | str, corpus_digest: str | None = None,
               tokens_digest: str | None = None,
               shard: tuple[int, int] | None = None) -> TokenCache:
    """The cache at `path`, checked (StaleCache says why it must not be used).

    The digests, when given, must be the cache's. `shard` (index, count) checks only the
    token blocks of that shard's conversations (`shard_range`); the index files are
    always checked whole.
    """
    path = Path(path)
    manifest = _manifest(path)
    if corpus_digest is not None and manifest.get("corpus_digest") != corpus_digest:
        raise StaleCache("the corpus changed since it was built")
    if tokens_digest is not None and manifest.get("tokenizer_digest") != tokens_digest:
        raise StaleCache("built with another tokenizer")
    files = manifest["files"]
    arrays = {}
    for name, dtype in ARRAYS.items():
        info = files.get(f"{name}.bin")
        file = path / f"{name}.bin"
        if not isinstance(info, dict):
            raise StaleCache(f"the manifest lacks {file.name}")
        try:
            size = file.stat().st_size
        except OSError:
            raise StaleCache(f"{file.name} is missing") from None
        if size != info.get("bytes") or np.dtype(dtype).str != info.get("dtype"):
            raise StaleCache(f"{file.name} is truncated or of another size "
                             f"({size:,} bytes, {info.get('bytes'):,} expected)")
        arrays[name] = (np.memmap(file, dtype=dtype, mode="r") if size
                        else np.zeros(0, dtype))
        if name != "tokens" and _digest(file) != info.get("blake2b"):
            raise StaleCache(f"{file.name} does not match its digest (corrupt)")
    cache = TokenCache(path, manifest, **arrays)
    if len(cache.turns) - 1 != manifest.get("turns") or (
            cache.conversation_count != manifest.get("conversations")):
        raise StaleCache("its counts do not match the manifest")
    first, end = shard_range(cache, *(shard or (0, 1)))
    _check_blocks(path / "tokens.bin", files["tokens.bin"],
                  int(cache.turns[cache.conversations[first]]) * 4,
                  int(cache.turns[cache.conversations[end]]) * 4)
    return cache


def shard_range(cache: TokenCache, index: int, count: int) -> tuple[int, int]:
    """Conversations [first, end) of shard `index` of `count`: contiguous, so a worker
    reads only its part of tokens.bin."""
    n = cache.conversation_count
    return n * index // count, n * (index + 1) // count


def _manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StaleCache("no manifest.json (an unfinished build?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StaleCache(f"manifest.json cannot be read ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StaleCache("not a token cache")
    if manifest.get("version") != VERSION:
        raise StaleCache(f"format version {manifest.get('version')!r}, this chatbot "
                         f"reads {VERSION}")
    if manifest.get("block_bytes") != BLOCK or not isinstance(manifest.get("files"), dict):
        raise StaleCache("manifest.json is not one this chatbot wrote")
    return manifest


def _digest(file: Path, start: int = 0, end: int | None = None) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(file, "rb") as f:
        f.seek(start)
        left = (end - start) if end is not None else None
        while left is None or left > 0:
            data = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not data:
                break
            digest.update(data)
            if left is not None:
                left -= len(data)
    return digest.hexdigest()


def _check_blocks(file: Path, info: dict[str, Any], start: int, end: int) -> None:
    """The digest blocks of `file` covering bytes [start, end) match the manifest's."""
    blocks = info.get("blocks")
    size = int(info.get("bytes", 0))
    if not isinstance(blocks, list) or len(blocks) != -(-size // BLOCK):
        raise StaleCache(f"{file.name}: the manifest's block digests do not fit its size")
    for block in range(start // BLOCK, -(-end // BLOCK)):
        if _digest(file, block * BLOCK, min(size, (block + 1) * BLOCK)) != blocks[block]:
            raise StaleCache(f"{file.name} does not match its digest at block {block} "
                             "(corrupt)")
