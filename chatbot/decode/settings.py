"""How a reply is chosen: one frozen dataclass, checked when it is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from chatbot.errors import ChatbotError

METHODS = ("greedy", "beam", "sample")
RERANKS = ("off", "mmi", "pmi")


@dataclass(frozen=True)
class DecodeSettings:
    """Search method and constraints for decoding a reply.

    Lengths count reply tokens, the end token excluded. Every reply ends with the end
    token: it is masked before `min_len` tokens and forced after `max_len`.
    """

    method: Literal["greedy", "beam", "sample"] = "greedy"
    beam_size: int = 5  # beam only: hypotheses kept at each step and returned, best first
    # GNMT length penalty: a hypothesis scores logp / ((5 + len) / 6) ** length_penalty,
    # len counting its tokens and the end token; 0 = raw log probability (favours short).
    length_penalty: float = 0.6
    min_len: int = 1
    max_len: int = 40
    temperature: float = 1.0  # sample only; near 0 it is greedy
    top_k: int = 0  # sample only: draw from the k likeliest tokens; 0 = all
    top_p: float = 1.0  # sample only: from the smallest set holding this much probability
    seed: int | None = None  # sample only: the same seed, the same reply
    # No n-gram of this size twice in a reply (the "as as as" repetitions); 0 = off.
    no_repeat_ngram: int = 3
    # No n-gram of this size copied from the user's turn (parroting); 0 = off.
    block_source_ngrams: int = 0
    # No token right after itself ("sailor sailor", "true true"): the anti-LM favours such
    # stutters, since a language model rarely predicts the word it has just seen.
    no_adjacent_repeat: bool = False
    # MMI-antiLM (Li et al. 2016): score = log p(reply | context) - antilm * log p(reply),
    # p(reply) from the decoder given an empty turn and a fresh state; 0 = off.
    antilm: float = 0.0
    # The penalty applies to the first antilm_gamma reply tokens only (Li et al.'s g(k):
    # the first words decide genericness, and later ones need the language model for
    # grammar); 0 = every token.
    antilm_gamma: int = 5
    # With the anti-LM on, only the antilm_top_k likeliest next tokens under
    # p(reply | context) are candidates: the penalty then reorders plausible words
    # instead of promoting rare ones that have nothing to do with the turn (which a
    # lambda near 1 otherwise does); 0 = every token.
    antilm_top_k: int = 0
    # Rerank rerank_n candidates (the n best of a beam search that wide, or n samples) by
    # (chatbot/decode/rerank.py, Li et al. 2016's MMI-bidi):
    #   mmi: lambda * log p(reply | turn, state) + (1 - lambda) * log p(turn | reply)
    #        (the second from a reverse model: `chatbot train --reverse`)
    #   pmi: log p(reply | turn, state) - lambda * log p(reply)  (no reverse model needed)
    # each plus rerank_gamma * the reply's tokens; "off": the search's best.
    rerank: Literal["off", "mmi", "pmi"] = "off"
    rerank_lambda: float = 0.5
    rerank_gamma: float = 0.0
    rerank_n: int = 8
    allow_unk: bool = False  # let the reply contain the unknown token

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ChatbotError(f"unknown decoding method {self.method!r}; choose one of "
                               f"{', '.join(METHODS)}")
        if self.rerank not in RERANKS:
            raise ChatbotError(f"unknown rerank {self.rerank!r}; choose one of "
                               f"{', '.join(RERANKS)}")
        for name in ("beam_size", "min_len", "max_len", "top_k", "no_repeat_ngram",
                     "block_source_ngrams", "antilm_gamma", "antilm_top_k", "rerank_n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ChatbotError(f"{name} must be an integer, not {value!r}")
        for name in ("length_penalty", "temperature", "top_p", "antilm", "rerank_lambda",
                     "rerank_gamma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ChatbotError(f"{name} must be a number, not {value!r}")
        if not isinstance(self.no_adjacent_repeat, bool):
            raise ChatbotError("no_adjacent_repeat must be true or false, not "
                               f"{self.no_adjacent_repeat!r}")
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise ChatbotError(f"seed must be an integer or None, not {self.seed!r}")
        if self.beam_size < 1:
            raise ChatbotError(f"beam_size must be at least 1, not {self.beam_size}")
        if self.max_len < 1:
            raise ChatbotError(f"max_len must be at least 1, not {self.max_len}")
        if not 0 <= self.min_len <= self.max_len:
            raise ChatbotError(f"min_len must be between 0 and max_len ({self.max_len}), "
                               f"not {self.min_len}")
        if not self.temperature > 0:
            raise ChatbotError(f"temperature must be above 0, not {self.temperature}; "
                               "use method greedy for the likeliest reply")
        if self.top_k < 0:
            raise ChatbotError(f"top_k must be 0 (off) or more, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ChatbotError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.no_repeat_ngram < 0 or self.block_source_ngrams < 0:
            raise ChatbotError("n-gram sizes must be 0 (off) or more")
        if self.antilm < 0 or self.antilm_gamma < 0 or self.antilm_top_k < 0:
            raise ChatbotError("antilm, antilm_gamma and antilm_top_k must be 0 (off) or "
                               "more")
        if not 0 <= self.rerank_lambda <= 1:
            raise ChatbotError(f"rerank_lambda must be in [0, 1], not {self.rerank_lambda}")
        if self.rerank_n < 1:
            raise ChatbotError(f"rerank_n must be at least 1, not {self.rerank_n}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ChatbotError(f"seed must be in [0, 2**63), not {self.seed}")

    def replace(self, **changes: Any) -> DecodeSettings:
        """A copy with some fields changed (checked again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ChatbotError(f"unknown decoding options: {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def for_model(metadata: Mapping[str, Any], **overrides: Any) -> DecodeSettings:
    """The settings a model recommends (its metadata's "decoding": the anti-generic
    settings measured for it), `overrides` on top; the defaults where it names none."""
    recommended = metadata.get("decoding") or {}
    try:
        if not isinstance(recommended, dict):
            raise ChatbotError("must be an object of decoding settings")
        settings = DecodeSettings().replace(**recommended)
    except ChatbotError as e:
        raise ChatbotError(f"the model's metadata.json, \"decoding\": {e}") from None
    return settings.replace(**overrides)
