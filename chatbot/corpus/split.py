"""Train/validation splits: a stable hash of each conversation's split key.

The key (`CorpusStore.iter_turn_texts`) is a film's or book's work, so that no film or
book has conversations on both sides, or the conversation itself for dialogue sets.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "valid", "all")
SPLIT_BY = ("work", "conversation")  # "conversation": how models before works split


def in_split(key: str, split: str, valid_fraction: float) -> bool:
    """Whether the conversation with this stable key belongs to `split`.

    A hash of the key, not a random draw: the same conversation is always on the same
    side, so evaluation on `valid` never sees a training conversation.
    """
    if split == "all":
        return True
    is_valid = split_value(key) < valid_fraction
    return is_valid if split == "valid" else not is_valid


def split_value(key: str) -> float:
    """The key's place in [0, 1): conversations below the valid fraction are `valid`.
    (The token cache stores it, so a split there is one comparison per conversation.)"""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
