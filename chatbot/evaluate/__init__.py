"""Stage 5: measuring a model (perplexities, an n-gram baseline, reply metrics) and
showing its attention. `metrics` and `ngram` import no TensorFlow; `run` and `explain`
load it when they load a model.
"""
