"""Where an attention model looks while it replies: the weights as a heatmap PNG.

The model replies greedily to the user's turn (a new conversation); then the reply is fed
back teacher-forced, as `ConversationModel.decode_features` runs it, and the attention
layer is called once more on the decoder's outputs with `return_attention_scores=True`.
Row t of the weights is the attention while producing reply token t (the last row: the
end token); column s is the user's token s.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.model.directory import ModelDirectory, read_config
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class Explanation:
    """A reply and the attention behind it."""

    turn: str
    reply: str
    source_tokens: list[str]  # the x axis: the user's tokens as the model read them
    reply_tokens: list[str]  # the y axis: the reply's tokens, then the end token
    weights: np.ndarray  # (len(reply_tokens), len(source_tokens)); each row sums to 1


def check_family(model_dir: Path | str) -> None:
    """ChatbotError unless the model in `model_dir` has attention (reads its config only,
    so a wrong model is reported before TensorFlow loads)."""
    _needs_attention(read_config(model_dir).family, model_dir)


def _needs_attention(family: str, where: Any) -> None:
    if family != "attention":
        raise ChatbotError(f"{where}: explain needs an attention model (this one is "
                           f"{family}); train one with `chatbot train --arch attention`")


def attention_weights(model: Any, source: list[int], target_in: list[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Attention weights (T, S) of a teacher-forced reply from a fresh state, and the
    decoder's features (T, H) they give (equal to `decode_features`', as a check).

    `target_in` is [bos] + the reply; the encoder reads `source`.
    """
    from keras import ops

    from chatbot.decode import step

    c = model.config_
    ids = np.asarray([source or [PAD_ID]], np.int32)  # (1, S)
    target = np.asarray([target_in], np.int32)  # (1, T)
    memory, initial = step.start(model, ids, model.zero_state(1))
    target_mask = ops.not_equal(target, PAD_ID)
    x = model.embedding(target)  # (1, T, E)
    if c.peek:
        peeked = ops.repeat(ops.expand_dims(memory.context, 1), target.shape[1], axis=1)
        x = ops.concatenate([x, peeked], -1)
    n = c.state_size
    for i, layer in enumerate(model.decoder_layers):
        x = layer(x, mask=target_mask, initial_state=initial[i * n:(i + 1) * n])[0]
    attended, weights = model.attention([x, memory.outputs, memory.keys],
                                        mask=[target_mask, memory.mask],
                                        return_attention_scores=True)  # (1, T, 2H), (1, T, S)
    features = model.attentional(ops.concatenate([x, attended], -1))  # (1, T, H)
    return np.asarray(weights)[0], np.asarray(features)[0]


def explain(model: Path | str | ModelDirectory, text: str, settings: Any = None
            ) -> Explanation:
    """The greedy reply to `text` and the attention weights behind it."""
    from chatbot.model import directory

    if not isinstance(model, ModelDirectory):
        check_family(model)
        model = directory.load(model)
    _needs_attention(model.config.family, model.path)
    from chatbot.decode.responder import Responder
    from chatbot.decode.settings import for_model

    responder = Responder(model, settings or for_model(model.metadata, method="greedy"))
    source = responder.encode(text)
    if not source:
        raise ChatbotError("nothing to explain: the text has no words; give a sentence")
    reply, _, info = responder.reply_ids([source], [None])[0]
    weights, _ = attention_weights(model.model, source, [BOS_ID, *info.ids])
    token = model.tokenizer.id_to_token
    return Explanation(text, reply, [token(i) for i in source],
                       [token(i) for i in (*info.ids, EOS_ID)], weights)


def heatmap_png(explanation: Explanation) -> bytes:
    """A PNG of the weights: the user's words across, the reply's words down."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and none is opened
    from matplotlib.figure import Figure

    e = explanation
    rows, columns = e.weights.shape
    figure = Figure(figsize=(max(4.0, 0.55 * columns + 2.5), max(3.0, 0.4 * rows + 2.0)),
                    dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(e.weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(columns), e.source_tokens, rotation=60, ha="right")
    axes.set_yticks(range(rows), e.reply_tokens)
    if rows * columns <= 300:  # small enough to print each weight in its cell
        for (r, col), value in np.ndenumerate(e.weights):
            axes.text(col, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="black" if value > 0.6 else "white")
    axes.set_xlabel("your words")
    axes.set_ylabel("the reply's words")
    axes.set_title(_short(f"{e.turn} → {e.reply}"), fontsize=10)
    figure.colorbar(image, ax=axes, label="attention weight")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def write_explanation(model: Path | str | ModelDirectory, text: str, output: Path | str,
                      settings: Any = None) -> tuple[Path, Explanation]:
    """Write the heatmap of the greedy reply to `text` to `output`; returns the path."""
    output = Path(output)
    if not output.parent.is_dir():
        raise ChatbotError(f"{output.parent}: no such directory for the heatmap")
    explanation = explain(model, text, settings)
    try:
        write_atomic(output, heatmap_png(explanation))
    except OSError as e:
        raise ChatbotError(f"{output}: cannot write ({e.strerror})") from None
    return output, explanation
