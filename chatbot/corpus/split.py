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
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    is_valid = int.from_bytes(digest, "big") / 2**64 < valid_fraction
    return is_valid if split == "valid" else not is_valid
