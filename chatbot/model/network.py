"""The conversational seq2seq network: simple, seq2seq (+peek) and attention families.

State is explicit: a conversation's state is a flat list of tensors, the decoder's final
recurrent state after an exchange, layer by layer ([h, c] per LSTM layer, [h] per GRU
layer), each (batch, hidden). It goes in with the next exchange and comes out updated, so
each batch row (or chat) owns its state, and a per-row reset mask zeroes only the rows
whose conversation starts at this exchange.

How an exchange flows (B batch, S source length, T target length, H hidden):
  state (D*n x (B, H)) -> encoder initial states -> encoder reads the user's turn
  -> decoder (initialised from the encoder, fed the reply) -> logits (B, T, V)
  -> decoder final states = the state for the next exchange.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from chatbot.model import fast_lstm
from chatbot.model.config import ModelConfig
from chatbot.text.tokenizer import PAD_ID


def _rnn(config: ModelConfig, name: str) -> keras.layers.Layer:
    cls = keras.layers.LSTM if config.cell == "lstm" else keras.layers.GRU
    return cls(config.hidden_dim, return_sequences=True, return_state=True,
               dropout=config.dropout, name=name)


def _run(layer: keras.layers.Layer, x, mask, initial: list, training: bool):
    """A recurrent layer over a padded batch: (outputs, final states). In training, plain
    LSTMs go through fast_lstm: the same function, about 1.7x faster to train on the CPU
    (its loop has shapes that change by step, which XLA-compiled decoding cannot take)."""
    if training and fast_lstm.applies(layer):
        return fast_lstm.run(layer, x, mask, initial, training=training)
    out = layer(x, mask=mask, initial_state=initial, training=training)
    return out[0], list(out[1:])


@keras.saving.register_keras_serializable(package="chatbot")
class ConversationModel(keras.Model):
    """A seq2seq model whose recurrent state runs through a whole conversation.

    Call it with a dict: `source` (B, S) and `target_in` (B, T) token ids (0 = padding;
    `target_in` starts with bos), `state` (a list from `zero_state`, optional) and `reset`
    (B,) booleans (optional: rows whose conversation starts here). It returns a dict with
    `logits` (B, T, V) and `state`.
    """

    def __init__(self, config: dict[str, Any] | ModelConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_ = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(
            config)
        c = self.config_
        encoder_depth, decoder_depth = c.depths
        self.embedding = keras.layers.Embedding(c.vocab_size, c.embedding_dim, name="embedding")
        self.bidirectional = c.family == "attention"
        self.encoder_layers = []
        for i in range(encoder_depth):
            layer = _rnn(c, f"encoder_{i}")
            if self.bidirectional:
                layer = keras.layers.Bidirectional(layer, merge_mode="concat",
                                                   name=f"encoder_{i}_bi")
            self.encoder_layers.append(layer)
        # Bidirectional layers end with two states per tensor: join them to one (B, H).
        self.bridges = [
            keras.layers.Dense(c.hidden_dim, activation="tanh", name=f"bridge_{i}_{k}")
            for i in range(encoder_depth if self.bidirectional else 0)
            for k in range(c.state_size)
        ]
        self.decoder_layers = [_rnn(c, f"decoder_{i}") for i in range(decoder_depth)]
        if c.family == "attention":
            self.keys = keras.layers.Dense(c.hidden_dim, use_bias=False, name="attention_keys")
            self.attention = (
                keras.layers.AdditiveAttention(name="attention")
                if c.attention_score == "bahdanau"
                else keras.layers.Attention(name="attention")
            )
            self.attentional = keras.layers.Dense(c.hidden_dim, activation="tanh",
                                                  name="attentional")
        # No weights: models saved before it load unchanged.
        self.output_dropout = keras.layers.Dropout(c.dropout, name="output_dropout")
        if c.tie_embeddings:
            # A function, not the layer: Keras would track the embedding twice.
            self.output_layer = TiedLogits(lambda: self.embedding.embeddings,
                                           c.vocab_size, c.embedding_dim, c.hidden_dim,
                                           name="tied_logits")
        else:
            self.output_layer = keras.layers.Dense(c.vocab_size, name="logits")
        self._held: list | None = None  # see hold_state()
        # Create every weight now, so a loaded model can receive its weights at once.
        self(self._example_inputs())

    # --- state ---------------------------------------------------------------------------

    def zero_state(self, batch_size: int) -> list:
        """The state at the start of a conversation: zeros, (batch, hidden) each."""
        _, decoder_depth = self.config_.depths
        count = decoder_depth * self.config_.state_size
        return [ops.zeros((batch_size, self.config_.hidden_dim)) for _ in range(count)]

    def reset_rows(self, state: list, reset) -> list:
        """Zero the state of the rows where `reset` (B,) is true; others are untouched."""
        keep = ops.expand_dims(1.0 - ops.cast(reset, "float32"), -1)  # (B, 1)
        return [s * keep for s in state]

    # --- held state, for Keras' own loops (fit, evaluate, predict) -------------------------

    def hold_state(self, batch_size: int) -> None:
        """Keep the state inside the model between calls, for code that drives it with
        Keras' own loops: each call then starts from the state the last call left (rows
        are conversations; batches must come in exchange order), and returns the logits
        alone, as Keras' losses expect. `reset_state()` (or the `ResetState` callback)
        zeroes it. Explicit state, passed in and out, stays the way for everything else.
        """
        import tensorflow as tf

        # Plain tf.Variables, not Keras weights: runtime state is never saved with the model.
        self._held = [tf.Variable(s, trainable=False) for s in self.zero_state(batch_size)]

    def reset_state(self, rows=None) -> None:
        """Zero the held state, or only the rows where `rows` (B,) is true."""
        if self._held is None:
            return
        keep = None if rows is None else self.reset_rows(list(self._held), rows)
        for i, variable in enumerate(self._held):
            variable.assign(ops.zeros_like(variable) if keep is None else keep[i])

    def release_state(self) -> None:
        """Stop holding state: calls take and return it explicitly again."""
        self._held = None

    def _layer_states(self, state: list, layer: int) -> list:
        n = self.config_.state_size
        return state[layer * n:(layer + 1) * n]

    # --- the network ---------------------------------------------------------------------

    def encode(self, source, state: list, training: bool = False):
        """Read the user's turn starting from the conversation state.

        Returns the outputs (B, S, H or 2H), the final states per layer and the mask.
        """
        c = self.config_
        mask = ops.not_equal(source, PAD_ID)  # (B, S)
        x = self.embedding(source)  # (B, S, E)
        _, decoder_depth = c.depths
        batch = ops.shape(source)[0]
        finals = []
        for i, layer in enumerate(self.encoder_layers):
            if i < decoder_depth:
                initial = self._layer_states(state, i)
            else:
                initial = [ops.zeros((batch, c.hidden_dim))] * c.state_size
            if self.bidirectional:
                initial = initial + initial  # both directions start from the context
            x, states = _run(layer, x, mask, initial, training)
            if self.bidirectional:
                n = c.state_size
                states = [
                    self.bridges[i * n + k](ops.concatenate([states[k], states[n + k]], -1))
                    for k in range(n)
                ]
            finals.append(states)
        return x, finals, mask

    def decode(self, target_in, encoded, training: bool = False):
        """Run the decoder over the reply; returns logits (B, T, V) and its final states."""
        features, new_state = self.decode_features(target_in, encoded, training=training)
        return self.output_layer(features), new_state

    def decode_features(self, target_in, encoded, training: bool = False):
        """The decoder's output features (B, T, H) before the vocabulary projection, and
        its final states. Training projects only the real (unpadded) positions."""
        c = self.config_
        outputs, finals, source_mask = encoded
        _, decoder_depth = c.depths
        target_mask = ops.not_equal(target_in, PAD_ID)  # (B, T)
        context = finals[-1][0]  # (B, H): the top encoder layer's final output
        if c.family == "simple":
            steps = ops.shape(target_in)[1]
            x = ops.repeat(ops.expand_dims(context, 1), steps, axis=1)  # (B, T, H)
        else:
            x = self.embedding(target_in)  # (B, T, E)
            if c.peek:
                steps = ops.shape(target_in)[1]
                peeked = ops.repeat(ops.expand_dims(context, 1), steps, axis=1)
                x = ops.concatenate([x, peeked], -1)  # (B, T, E + H)
        # Every family starts the decoder from the encoder's final states (the simple
        # family too: with its input the same vector at every step, that state is what
        # lets it tell one position from the next early in training).
        initial_for = [finals[min(i, len(finals) - 1)] for i in range(decoder_depth)]
        new_state = []
        for layer, initial in zip(self.decoder_layers, initial_for, strict=True):
            x, states = _run(layer, x, target_mask, initial, training)
            new_state.extend(states)
        if c.family == "attention":
            keys = self.keys(outputs)  # (B, S, H)
            # Keras takes [query, value, key]: scores from the keys, a mix of the values.
            attended = self.attention([x, outputs, keys], mask=[target_mask, source_mask])
            x = self.attentional(ops.concatenate([x, attended], -1))  # (B, T, H)
        if training and c.dropout > 0:
            x = self.output_dropout(x, training=True)
        return x, new_state

    def exchange(self, inputs: dict, training: bool = False):
        """One exchange from explicit state (the dict `call` takes, without held state):
        the decoder's features (B, T, H) and the new state. `output_layer` turns features
        into logits. The state goes in and comes out float32, whatever the compute dtype
        (the features are in the compute dtype)."""
        source, target_in = inputs["source"], inputs["target_in"]
        state = inputs.get("state")
        if state is None or not self.config_.context_sensitive:
            state = self.zero_state(ops.shape(source)[0])
        elif inputs.get("reset") is not None:
            state = self.reset_rows(list(state), inputs["reset"])
        # Mixed precision: the state crosses exchanges in float32 (the training lanes, the
        # checkpoints and chats hold it so), and is in the compute dtype only inside.
        state = [ops.cast(s, self.compute_dtype) for s in state]
        encoded = self.encode(source, state, training=training)
        features, new_state = self.decode_features(target_in, encoded, training=training)
        return features, [ops.cast(s, "float32") for s in new_state]

    def call(self, inputs: dict, training: bool = False):
        held = self._held is not None and inputs.get("state") is None
        if held:
            inputs = {**inputs, "state": [v.value() for v in self._held]}
        features, new_state = self.exchange(inputs, training=training)
        # Float32 logits whatever the compute dtype: the softmax and the loss need its range.
        logits = ops.cast(self.output_layer(features), "float32")
        if held:
            for variable, value in zip(self._held, new_state, strict=True):
                variable.assign(value)
            return logits
        return {"logits": logits, "state": new_state}

    def _example_inputs(self) -> dict:
        ids = ops.ones((1, 2), dtype="int32")
        return {"source": ids, "target_in": ids}

    def get_config(self) -> dict[str, Any]:
        return {"config": self.config_.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConversationModel:
        return cls(**config)


@keras.saving.register_keras_serializable(package="chatbot")
class TiedLogits(keras.layers.Layer):
    """Logits from the embedding matrix: features (..., H) -> (..., V). Where H is not the
    embedding size E, a linear map (H -> E) comes first. Owns only that map and a bias;
    the matrix stays the embedding layer's weight."""

    def __init__(self, matrix, vocab_size: int, embedding_dim: int, hidden_dim: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._matrix = matrix
        self.projection = (
            None if hidden_dim == embedding_dim
            else keras.layers.Dense(embedding_dim, use_bias=False, name="projection")
        )
        self.vocab_size = vocab_size
        self.supports_masking = True

    def build(self, input_shape) -> None:
        # Made here, not in __init__, so its path sits under the model's (as Dense's do).
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")

    def call(self, x):
        if self.projection is not None:
            x = self.projection(x)
        return ops.matmul(x, ops.transpose(self._matrix())) + self.bias


class ResetState(keras.callbacks.Callback):
    """Zero a model's held state (see `ConversationModel.hold_state`) at the start of
    every epoch, evaluation and prediction, so each pass starts new conversations."""

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.model.reset_state()

    def on_test_begin(self, logs=None) -> None:
        self.model.reset_state()

    def on_predict_begin(self, logs=None) -> None:
        self.model.reset_state()
