"""Conversation states cached under a digest of the conversation so far.

A conversation t0, t1, ... is read as training reads it (chatbot/chat/replies.py): F_k,
the state turn t_k is read with, is the state after the exchange (t_{k-1} -> t_k). The
cache maps the digest of the turns t0..t_k to (F_k, t_k's token ids when the bot said
it): a client that sends its growing history with every request finds the state of all
but the newest exchange, so a request costs one exchange, not one per turn so far.

Digests chain: D_0 is fixed and D_{k+1} = sha256(D_k, role, text), so every prefix's
digest comes from one pass over the turns. Texts are compared as sent, stripped of
surrounding space (clients differ in trailing newlines).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROOT = hashlib.sha256(b"chatbot conversation").hexdigest()


def next_digest(previous: str, role: str, text: str) -> str:
    """The digest of a conversation after one more turn."""
    h = hashlib.sha256(previous.encode())
    h.update(b"\0" + role.encode() + b"\0" + text.strip().encode("utf-8"))
    return h.hexdigest()


def digests(turns: Sequence[tuple[str, str]]) -> list[str]:
    """The digest of every prefix: [D_0 (no turns), D_1, ..., D_len] for (role, text) turns."""
    out = [ROOT]
    for role, text in turns:
        out.append(next_digest(out[-1], role, text))
    return out


@dataclass(frozen=True)
class Cached:
    """F_k (the state turn t_k is read with) and t_k's ids when the bot made them."""

    state: list[Any]
    ids: tuple[int, ...] | None = None


class StateCache:
    """A bounded LRU of conversation states by digest (thread-safe)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, digest: str) -> Cached | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
            return entry

    def put(self, digest: str, entry: Cached) -> None:
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def latest(self, chain: Sequence[str]) -> tuple[int, Cached | None]:
        """The longest cached prefix: (k, entry) for the largest k with chain[k + 1]
        cached, where chain is `digests(turns)`; (0, None) when none is (start from
        zeros at t0). Counts a hit when anything was found."""
        for k in range(len(chain) - 2, -1, -1):
            entry = self.get(chain[k + 1])
            if entry is not None:
                self.hits += 1
                return k, entry
        self.misses += 1
        return 0, None

    def __len__(self) -> int:
        return len(self._entries)
