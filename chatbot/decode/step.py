"""One decoder step with the model's own layers, for every family, cell and depth.

`ConversationModel.decode` runs the decoder over a whole reply with Keras' RNN layers;
decoding needs it one token at a time. Each RNN layer's cell (`layer.cell`) is the exact
function the layer applies at every step (on the CPU; on a GPU the layer may use cuDNN,
equal up to rounding), so stepping the cells with the same embedding, attention and
output layers reproduces `model.decode` token for token.

Shapes: N rows (inputs times beams), S source length, H hidden, V vocabulary.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

from keras import ops

from chatbot.text.tokenizer import PAD_ID


class Memory(NamedTuple):
    """What the decoder reads of the user's turn at every step."""

    context: Any  # (N, H): the top encoder layer's final output (simple, peek)
    outputs: Any  # (N, S, H or 2H): encoder outputs, attention values (attention only)
    keys: Any  # (N, S, H): attention keys (attention only)
    mask: Any  # (N, S) bool: real source tokens


def start(model: Any, source: Any, state: list) -> tuple[Memory, list]:
    """Encode the user's turn from the conversation state, as `model.call` does.

    Returns the memory and the decoder's initial states (flat, layer by layer).
    """
    c = model.config_
    outputs, finals, mask = model.encode(source, list(state))
    _, decoder_depth = c.depths
    initial = []
    for i in range(decoder_depth):  # the same pairing of layers as in model.decode
        initial.extend(finals[min(i, len(finals) - 1)])
    if c.family == "attention":
        memory = Memory(finals[-1][0], outputs, model.keys(outputs), mask)
    else:
        memory = Memory(finals[-1][0], outputs[:, :0], outputs[:, :0], mask)
    return memory, initial


def tile(memory: Memory, times: int) -> Memory:
    """Each row repeated `times` times in place (row n becomes rows n*times ...)."""
    return Memory(*(ops.repeat(x, times, axis=0) for x in memory))


def step(model: Any, token: Any, states: list, memory: Memory) -> tuple[Any, list]:
    """Feed one token (N,) per row; returns logits (N, V) and the new states."""
    c = model.config_
    if c.family == "simple":
        x = memory.context  # (N, H): the same vector at every step
    else:
        x = model.embedding(token)  # (N, E)
        if c.peek:
            x = ops.concatenate([x, memory.context], -1)  # (N, E + H)
    n = c.state_size
    new_states: list = []
    for i, layer in enumerate(model.decoder_layers):
        x, layer_states = layer.cell(x, list(states[i * n:(i + 1) * n]), training=False)
        new_states.extend(layer_states)  # (N, H) each
    if c.family == "attention":
        query = ops.expand_dims(x, 1)  # (N, 1, H)
        query_mask = ops.ones_like(query[:, :, 0], dtype="bool")
        with warnings.catch_warnings():
            # A one-token turn gives a softmax over one key, which Keras warns about; it
            # is right here (and the same in model.decode).
            warnings.filterwarnings("ignore", message="You are using a softmax over axis")
            attended = model.attention([query, memory.outputs, memory.keys],
                                       mask=[query_mask, memory.mask])  # (N, 1, 2H)
        x = model.attentional(ops.concatenate([query, attended], -1))[:, 0]  # (N, H)
    return model.output_layer(x), new_states


def empty_source(batch: Any) -> Any:
    """A source of one padding token per row: the decoder's input for 'no turn at all'."""
    return ops.full((batch, 1), PAD_ID, dtype="int32")
