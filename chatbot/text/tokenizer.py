"""The tokenizer interface, the reserved ids, and fitting, saving and loading by kind.

Every tokenizer maps text to ids and back with the same four reserved ids at the start of
its vocabulary, so models and decoders never need to know which kind they were given.
A tokenizer is saved as `tokenizer.json` in a model directory; the file names its kind.
"""

from __future__ import annotations

import importlib
import inspect
import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
# Id order: RESERVED_TOKENS[i] has id i in every kind of tokenizer.
RESERVED_TOKENS = (PAD, UNK, BOS, EOS)
# Ids decode() leaves out; unk stays, shown as UNK so a reader sees something was lost.
SKIPPED_IDS = frozenset({PAD_ID, BOS_ID, EOS_ID})

TOKENIZER_FILE = "tokenizer.json"
FILE_FORMAT = "chatbot-tokenizer"
FILE_VERSION = 1

# kind -> "module:class"; imported on demand so loading a word model never pays for
# SentencePiece and the modules can import this one without a cycle.
_KINDS = {
    "word": "chatbot.text.word:WordTokenizer",
    "char": "chatbot.text.char:CharTokenizer",
    "subword": "chatbot.text.subword:SubwordTokenizer",
}
KINDS = tuple(_KINDS)
DEFAULT_KIND = "word"


class _HasConversations(Protocol):
    """What fitting needs of a CorpusStore (kept structural so no SQLite import here)."""

    def iter_conversations(self) -> Iterator[tuple[int, str, Any]]: ...


TextSource = _HasConversations | Iterable[str]


class Tokenizer(ABC):
    """Text to ids and back. Ids 0-3 are pad, unk, bos, eos in every kind."""

    kind: str

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """How many ids there are, reserved ones included."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without bos/eos (callers add them)."""

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """`encode` for many texts at once."""
        encode = self.encode
        return [encode(text) for text in texts]

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, skipping pad/bos/eos and rendering unk as "<unk>"."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """The token string of an id; IndexError when out of range."""

    @abstractmethod
    def token_to_id(self, token: str) -> int:
        """The id of a token string; UNK_ID when it is not in the vocabulary."""

    @property
    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The options it was fitted with, as saved in its file."""

    @abstractmethod
    def save(self, directory: Path | str) -> Path:
        """Write it into `directory` (created if needed); returns the tokenizer.json path."""

    @classmethod
    @abstractmethod
    def fit(cls, texts: Iterable[str], vocab_size: int, **options: Any) -> Tokenizer:
        """Learn a vocabulary of at most `vocab_size` ids from streamed texts."""

    @classmethod
    @abstractmethod
    def from_file(cls, path: Path, meta: dict[str, Any]) -> Tokenizer:
        """Rebuild from the parsed tokenizer.json at `path`; ChatbotError when it is bad."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, options={self.options})"


def check_id(token_id: int, size: int) -> int:
    """`token_id` when it is a valid id for a vocabulary of `size`; IndexError otherwise."""
    if not 0 <= token_id < size:
        raise IndexError(f"token id {token_id} is out of range 0..{size - 1}")
    return token_id


class VocabTokenizer(Tokenizer):
    """A tokenizer whose vocabulary is a list of token strings in id order (word, char).

    Subclasses say how text splits into tokens (`tokens`) and joins back (`decode`);
    their one option, `lower`, defaults to `default_lower`.
    """

    default_lower = False

    def __init__(self, vocab: Sequence[str], lower: bool | None = None) -> None:
        if tuple(vocab[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
            raise ValueError(f"a vocabulary must start with {RESERVED_TOKENS}")
        self._vocab = list(vocab)
        self._ids = {token: i for i, token in enumerate(self._vocab)}
        self.lower = self.default_lower if lower is None else lower

    @abstractmethod
    def tokens(self, text: str) -> list[str]:
        """The token strings of `text` (lower-cased when `lower` is on)."""

    def encode(self, text: str) -> list[int]:
        get = self._ids.get
        return [get(token, UNK_ID) for token in self.tokens(text)]

    @property
    def options(self) -> dict[str, Any]:
        return {"lower": self.lower}

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def vocab(self) -> list[str]:
        """The tokens in id order (a copy)."""
        return list(self._vocab)

    def id_to_token(self, token_id: int) -> str:
        return self._vocab[check_id(token_id, len(self._vocab))]

    def token_to_id(self, token: str) -> int:
        return self._ids.get(token, UNK_ID)

    def tokens_of(self, ids: Iterable[int]) -> list[str]:
        """The token strings of `ids` minus pad/bos/eos, unk as "<unk>"."""
        vocab, size = self._vocab, len(self._vocab)
        return [vocab[check_id(i, size)] for i in ids if i not in SKIPPED_IDS]

    def save(self, directory: Path | str) -> Path:
        return write_metadata(directory, self.kind, self.options, vocab=self._vocab)

    @classmethod
    def from_file(cls, path: Path, meta: dict[str, Any]) -> VocabTokenizer:
        vocab = meta.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ChatbotError(f"{path}: 'vocab' is missing or not a list of strings")
        if tuple(vocab[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
            raise ChatbotError(f"{path}: the vocabulary does not start with {RESERVED_TOKENS}")
        if len(set(vocab)) != len(vocab):
            raise ChatbotError(f"{path}: the vocabulary lists a token twice")
        return cls.with_options(path, vocab, options_of(path, meta))

    @classmethod
    def with_options(
        cls, path: Path, vocab: list[str], options: dict[str, Any]
    ) -> VocabTokenizer:
        """Rebuild from the vocabulary and options saved in `path`, checking the options."""
        return cls(vocab, lower=option(path, options, "lower", bool))


def ranked_vocabulary(counts: Counter[str], vocab_size: int, min_count: int = 1) -> list[str]:
    """The reserved tokens, then the `vocab_size - 4` most frequent tokens seen at least
    `min_count` times; ties broken by the token's text, so a corpus gives one vocabulary."""
    ranked = sorted(
        (item for item in counts.items() if item[1] >= min_count and item[0] not in
         RESERVED_TOKENS),
        key=lambda item: (-item[1], item[0]),
    )
    return [*RESERVED_TOKENS, *(token for token, _ in ranked[: vocab_size - len(RESERVED_TOKENS)])]


def check_vocab_size(vocab_size: int) -> None:
    """Refuse a limit that leaves no room for a single real token."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ChatbotError(f"vocab_size must be an integer, not {vocab_size!r}")
    if vocab_size <= len(RESERVED_TOKENS):
        raise ChatbotError(
            f"vocab_size must be more than {len(RESERVED_TOKENS)} (the reserved ids "
            f"pad, unk, bos, eos), not {vocab_size}"
        )


def iter_texts(source: TextSource) -> Iterator[str]:
    """The texts to fit on: every turn of a CorpusStore, or the strings of an iterable.

    Streamed one at a time so fitting never holds the corpus in memory.
    """
    if hasattr(source, "iter_conversations"):
        for _id, _source, conversation in source.iter_conversations():
            for turn in conversation.turns:
                yield turn.text
        return
    if isinstance(source, str):
        raise TypeError("fit on an iterable of texts, not a single string")
    yield from source


def _class_of(kind: str) -> type[Tokenizer]:
    try:
        module, _, name = _KINDS[kind].partition(":")
    except KeyError:
        raise ChatbotError(
            f"unknown tokenizer kind {kind!r}; use one of {', '.join(KINDS)}"
        ) from None
    return getattr(importlib.import_module(module), name)


def fit_tokenizer(
    kind: str, texts: TextSource, vocab_size: int, **options: Any
) -> Tokenizer:
    """Fit a tokenizer of `kind` on a CorpusStore or an iterable of texts."""
    cls = _class_of(kind)
    check_vocab_size(vocab_size)
    known = [name for name, p in inspect.signature(cls.fit).parameters.items()
             if p.kind is p.KEYWORD_ONLY]
    for name in options:
        if name not in known:
            raise ChatbotError(
                f"unknown option {name!r} for a {kind} tokenizer; it takes "
                f"{', '.join(known) or 'none'}"
            )
    return cls.fit(iter_texts(texts), vocab_size, **options)


def load_tokenizer(directory: Path | str) -> Tokenizer:
    """The tokenizer saved in `directory`; ChatbotError naming the file when it is bad."""
    path = Path(directory) / TOKENIZER_FILE
    meta = read_metadata(path)
    kind = meta["kind"]
    if kind not in _KINDS:
        raise ChatbotError(f"{path}: unknown tokenizer kind {kind!r}")
    return _class_of(kind).from_file(path, meta)


# The file: JSON metadata, written atomically.


def write_metadata(
    directory: Path | str, kind: str, options: dict[str, Any], **fields: Any
) -> Path:
    """Write tokenizer.json into `directory`; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FILE_FORMAT, "version": FILE_VERSION, "kind": kind, "options": options}
    meta.update(fields)
    # One token per line (indent) keeps the file readable and diffs small; no timestamps,
    # so fitting the same corpus twice writes the same bytes.
    text = json.dumps(meta, ensure_ascii=False, indent=1) + "\n"
    path = directory / TOKENIZER_FILE
    write_atomic(path, text.encode("utf-8"))
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """The parsed tokenizer.json, with its format, version and kind checked."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ChatbotError(f"{path}: no tokenizer file (missing; was the model saved?)") from None
    except IsADirectoryError:
        raise ChatbotError(f"{path}: is a directory, not a tokenizer file") from None
    except OSError as e:
        raise ChatbotError(f"{path}: cannot read the tokenizer file: {e.strerror}") from None
    if not raw.strip():
        raise ChatbotError(f"{path}: the tokenizer file is empty")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ChatbotError(f"{path}: the tokenizer file is not UTF-8 text (corrupt?)") from None
    except json.JSONDecodeError as e:
        raise ChatbotError(
            f"{path}: the tokenizer file is not valid JSON (truncated or corrupt?): "
            f"{e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT:
        raise ChatbotError(f"{path}: not a chatbot tokenizer file")
    if meta.get("version") != FILE_VERSION:
        raise ChatbotError(
            f"{path}: tokenizer file version {meta.get('version')!r} is not supported "
            f"(this chatbot reads version {FILE_VERSION})"
        )
    if not isinstance(meta.get("kind"), str):
        raise ChatbotError(f"{path}: the tokenizer file does not say its kind")
    return meta


def options_of(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The saved options object; ChatbotError when it is missing or not an object."""
    options = meta.get("options")
    if not isinstance(options, dict):
        raise ChatbotError(f"{path}: 'options' is missing or not an object")
    return options


def option(path: Path, options: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """One saved option, checked for its type."""
    value = options.get(name)
    # bool is an int in Python; an int option must not accept true/false.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ChatbotError(f"{path}: option {name!r} is missing or invalid: {value!r}")
    return value
