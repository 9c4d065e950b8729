"""Subword tokens: a SentencePiece model (unigram or BPE) trained on the corpus.

Trained with identity normalisation and extra whitespace kept, so decoding gives the
text back exactly for text whose characters are in the model. Saved as tokenizer.json
(kind, options, size and the SHA-256 of the model) beside tokenizer.model, the model's
serialized protocol buffer (SentencePiece's own format).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sentencepiece as spm

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.text.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    RESERVED_TOKENS,
    UNK,
    UNK_ID,
    Tokenizer,
    check_id,
    option,
    options_of,
    write_metadata,
)

MODEL_FILE = "tokenizer.model"
MODEL_TYPES = ("unigram", "bpe")
# Texts are sampled (seeded) down to this many sentences: enough for a good model and
# keeps SentencePiece's memory bounded on a large corpus.
DEFAULT_INPUT_SENTENCE_SIZE = 2_000_000
# A fixed thread count rather than the machine's: SentencePiece's result depends on it,
# and the same corpus should give the same model on every machine.
DEFAULT_NUM_THREADS = 8
# SentencePiece's recommendation for scripts with large alphabets (Chinese, Japanese).
LARGE_ALPHABET_COVERAGE = 0.9995
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " "})


def auto_coverage(alphabet_size: int, vocab_size: int) -> float:
    """Keep every character (1.0) when the alphabet fits easily in the vocabulary.

    Otherwise (Chinese, Japanese, or noisy text with many rare symbols) drop the rarest
    0.05% of character occurrences, which become unk.
    """
    fits = alphabet_size + len(RESERVED_TOKENS) <= vocab_size // 2
    return 1.0 if fits else LARGE_ALPHABET_COVERAGE


class SubwordTokenizer(Tokenizer):
    """A SentencePiece model with the project's reserved ids."""

    kind = "subword"

    def __init__(self, model: bytes, options: dict[str, Any]) -> None:
        self._model = model
        self._options = dict(options)
        self._sp = spm.SentencePieceProcessor(model_proto=model)
        self._size = self._sp.get_piece_size()

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model."""
        return self._model

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        # SentencePiece encodes a list in its own threads, outside the GIL.
        return self._sp.encode(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        # pad/bos/eos are control symbols SentencePiece leaves out; unk shows as UNK
        # (the model's unk_surface).
        size = self._size
        return self._sp.decode([check_id(int(i), size) for i in ids])

    def id_to_token(self, token_id: int) -> str:
        return self._sp.id_to_piece(check_id(int(token_id), self._size))

    def token_to_id(self, token: str) -> int:
        return self._sp.piece_to_id(token)

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # The model first: tokenizer.json, written last, is what makes the pair complete.
        write_atomic(directory / MODEL_FILE, self._model)
        return write_metadata(
            directory,
            self.kind,
            self._options,
            vocab_size=self._size,
            model_file=MODEL_FILE,
            model_sha256=hashlib.sha256(self._model).hexdigest(),
        )

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        model_type: str = "unigram",
        character_coverage: float | None = None,
        input_sentence_size: int = DEFAULT_INPUT_SENTENCE_SIZE,
        byte_fallback: bool = False,
        num_threads: int = DEFAULT_NUM_THREADS,
        seed: int = 0,
    ) -> SubwordTokenizer:
        """Train SentencePiece on streamed texts; the vocabulary may come out smaller.

        The texts go to a temporary file one line at a time (never a list in memory)
        while their characters are counted to choose `character_coverage` when it is
        not given (see `auto_coverage`). Training is seeded, so it is deterministic.
        `byte_fallback` spells unknown characters as UTF-8 bytes instead of unk (it
        takes 256 ids).
        """
        if model_type not in MODEL_TYPES:
            raise ChatbotError(
                f"unknown subword model_type {model_type!r}; use {' or '.join(MODEL_TYPES)}"
            )
        if character_coverage is not None and not 0.9 <= character_coverage <= 1.0:
            raise ChatbotError(
                f"character_coverage must be between 0.9 and 1.0, not {character_coverage}"
            )
        with tempfile.TemporaryDirectory(prefix="chatbot-subword-") as tmp:
            sentences = Path(tmp) / "sentences.txt"
            alphabet = _write_sentences(texts, sentences)
            if character_coverage is None:
                character_coverage = auto_coverage(alphabet, vocab_size)
            options = {
                "model_type": model_type,
                "character_coverage": character_coverage,
                "input_sentence_size": input_sentence_size,
                "byte_fallback": byte_fallback,
                "num_threads": num_threads,
                "seed": seed,
            }
            with open(sentences, encoding="utf-8", newline="\n") as lines:
                model = _train((line[:-1] for line in lines), vocab_size, options)
        return cls(model, options)

    @classmethod
    def from_file(cls, path: Path, meta: dict[str, Any]) -> SubwordTokenizer:
        options = options_of(path, meta)
        option(path, options, "model_type", str)
        name = meta.get("model_file")
        if not isinstance(name, str) or Path(name).name != name:
            raise ChatbotError(f"{path}: 'model_file' is missing or not a file name")
        model_path = path.parent / name
        try:
            model = model_path.read_bytes()
        except FileNotFoundError:
            raise ChatbotError(
                f"{model_path}: the SentencePiece model named in {path.name} is missing"
            ) from None
        except OSError as e:
            raise ChatbotError(f"{model_path}: cannot read the model: {e.strerror}") from None
        if hashlib.sha256(model).hexdigest() != meta.get("model_sha256"):
            raise ChatbotError(
                f"{model_path}: does not match the checksum in {path.name} "
                "(truncated, corrupt, or from another save)"
            )
        try:
            tokenizer = cls(model, options)
        except (RuntimeError, OSError) as e:
            raise ChatbotError(f"{model_path}: not a SentencePiece model: {_reason(e)}") from None
        sp = tokenizer._sp
        if (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ChatbotError(f"{model_path}: the model's reserved ids are not pad, unk, bos, eos")
        if meta.get("vocab_size") != tokenizer.vocab_size:
            raise ChatbotError(
                f"{path}: says vocab_size {meta.get('vocab_size')!r} but the model has "
                f"{tokenizer.vocab_size}"
            )
        return tokenizer


def _write_sentences(texts: Iterable[str], path: Path) -> int:
    """Write one text per line (line breaks inside become spaces); the alphabet's size."""
    chars: Counter[str] = Counter()
    written = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for text in texts:
            line = text.translate(_LINE_BREAKS)
            if not line.strip():
                continue
            chars.update(line)
            out.write(line + "\n")
            written += 1
    if not written:
        raise ChatbotError("no text to fit the subword tokenizer on (the corpus is empty)")
    return len(chars)


def _train(sentences: Iterator[str], vocab_size: int, options: dict[str, Any]) -> bytes:
    """The serialized model SentencePiece trains on `sentences`."""
    model = io.BytesIO()
    # Seeds the sentence sampling; the same corpus and options give the same bytes.
    spm.set_random_generator_seed(options["seed"])
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=model,
            vocab_size=vocab_size,
            model_type=options["model_type"],
            character_coverage=options["character_coverage"],
            input_sentence_size=options["input_sentence_size"],
            shuffle_input_sentence=True,  # a seeded uniform sample, not the first N lines
            byte_fallback=options["byte_fallback"],
            num_threads=options["num_threads"],
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_surface=UNK,
            # Exact round trips: no NFKC, and runs of spaces stay as written.
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            # A small corpus gives a smaller vocabulary rather than an error.
            hard_vocab_limit=False,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ChatbotError(f"cannot train the subword tokenizer: {_reason(e)}") from None
    return model.getvalue()


def _reason(error: Exception) -> str:
    """SentencePiece's message without its source location, on one line."""
    text = " ".join(str(error).split())
    return text.rsplit("] ", 1)[-1] if "] " in text else text
