"""Stage 2: context-sensitive seq2seq models in Keras 3 (imports TensorFlow: load lazily)."""
