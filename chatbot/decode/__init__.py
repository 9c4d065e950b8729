"""Stage 4: decoding replies that carry the conversation state.

settings.py      DecodeSettings: method (greedy, beam, sample) and constraints (no TensorFlow)
step.py          one decoder step with the model's own layers (equals model.decode)
constraints.py   reserved ids, min/max length, n-gram blocking, as score masks
search.py        the compiled greedy, sampled and beam searches (one tf.function each)
responder.py     Responder: text and state in, reply, new state and ReplyInfo out
rerank.py        the N best rescored: MMI-bidi with a reverse model, or PMI
conversation.py  Conversation: one chat's state, advanced along training's exact path

Everything but settings.py and rerank.py imports TensorFlow: import those modules lazily
(rerank.py imports it only to compile its scorer).
"""
