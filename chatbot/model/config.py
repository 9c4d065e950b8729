"""One dataclass describes a model; it is saved beside the weights as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from chatbot.errors import ChatbotError

FAMILIES = ("simple", "seq2seq", "attention")
CELLS = ("lstm", "gru")
SCORES = ("bahdanau", "luong")


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of a conversational seq2seq model."""

    # simple: the encoder's final vector repeated as the decoder's input (RepeatVector),
    #   the decoder starting from the encoder's final states;
    # seq2seq: Sutskever et al., encoder states initialise a teacher-forced decoder;
    # attention: bidirectional encoder, attention over its outputs at every decoder step.
    family: Literal["simple", "seq2seq", "attention"] = "seq2seq"
    cell: Literal["lstm", "gru"] = "lstm"
    # Recurrent layers: one int for both sides, or [encoder, decoder].
    depth: int | tuple[int, int] = 1
    vocab_size: int = 8000  # including the reserved ids pad=0, unk=1, bos=2, eos=3
    embedding_dim: int = 256
    hidden_dim: int = 512
    # In training only: on the inputs of every recurrent layer (keeps the cuDNN kernel)
    # and on the decoder's output features before the vocabulary projection (Zaremba et
    # al. 2014: the connections between layers, never the recurrent ones).
    dropout: float = 0.0
    # seq2seq only: feed the encoder's context vector at every decoder step (Cho et al.).
    peek: bool = False
    attention_score: Literal["bahdanau", "luong"] = "bahdanau"  # additive or multiplicative
    # Share the embedding matrix with the vocabulary projection (Press & Wolf 2017, Inan
    # et al. 2017): the largest matrix is stored once, so a given size buys a larger
    # model, and rare words learn from both ends. Where hidden and embedding sizes
    # differ, a linear map takes the decoder's features to the embedding size first.
    tie_embeddings: bool = False
    # Carry the recurrent state from one exchange to the next within a conversation.
    context_sensitive: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ChatbotError(f"unknown model family {self.family!r}; choose {FAMILIES}")
        if self.cell not in CELLS:
            raise ChatbotError(f"unknown cell {self.cell!r}; choose {CELLS}")
        if self.attention_score not in SCORES:
            raise ChatbotError(f"unknown attention score {self.attention_score!r}")
        if isinstance(self.depth, list):
            object.__setattr__(self, "depth", tuple(self.depth))
        if min(self.depths) < 1:
            raise ChatbotError(f"depth must be at least 1, not {self.depth}")
        if self.vocab_size < 5 or self.embedding_dim < 1 or self.hidden_dim < 1:
            raise ChatbotError("vocab_size must be at least 5 and sizes positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ChatbotError(f"dropout must be in [0, 1), not {self.dropout}")

    @property
    def depths(self) -> tuple[int, int]:
        """(encoder layers, decoder layers)."""
        if isinstance(self.depth, int):
            return self.depth, self.depth
        encoder, decoder = self.depth
        return int(encoder), int(decoder)

    @property
    def state_size(self) -> int:
        """Tensors per layer in a recurrent state: (h, c) for LSTM, h for GRU."""
        return 2 if self.cell == "lstm" else 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depth"] = list(self.depth) if isinstance(self.depth, tuple) else self.depth
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ChatbotError(f"unknown model options: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
