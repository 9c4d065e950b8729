"""Stage 3: training on the corpus store (imports TensorFlow: load lazily)."""
