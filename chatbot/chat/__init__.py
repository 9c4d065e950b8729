"""Stage 5: the chat, in a terminal (prompt_toolkit) or over a pipe.

    loading.py   find, check and load the model (quietly, off the prompt's critical path)
    replies.py   the pure computation of one reply: fold known turns, decode, pick
    session.py   ChatSession, the engine: turns, state, transcripts, /retry, /set...
    commands.py  the /command registry: dispatch, /help and completion from one list
    repl.py      the prompt_toolkit front end (history, toolbar, keys, Ctrl-C)
    pipe.py      the front end when stdin is not a terminal: a line in, a line out
    app.py       wiring for `chatbot chat`

Nothing here imports TensorFlow at import time; the model is loaded when a chat starts.
"""
