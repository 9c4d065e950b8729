"""Tokenizers: text to ids and back, as words, characters or SentencePiece subwords.

`fit_tokenizer(kind, texts, vocab_size)` learns one from a CorpusStore or any iterable
of texts; `tokenizer.save(directory)` and `load_tokenizer(directory)` keep it in a model
directory. Ids 0-3 are pad, unk, bos and eos in every kind.
"""

from chatbot.text.tokenizer import (
    BOS_ID,
    DEFAULT_KIND,
    EOS_ID,
    KINDS,
    PAD_ID,
    TOKENIZER_FILE,
    UNK,
    UNK_ID,
    Tokenizer,
    fit_tokenizer,
    load_tokenizer,
)

__all__ = [
    "BOS_ID",
    "DEFAULT_KIND",
    "EOS_ID",
    "KINDS",
    "PAD_ID",
    "TOKENIZER_FILE",
    "UNK",
    "UNK_ID",
    "Tokenizer",
    "fit_tokenizer",
    "load_tokenizer",
]
