"""Stage 3: training on the corpus store. `options` (the run's options, read back from a
model directory) is light; the loop imports TensorFlow when a Trainer is made."""
