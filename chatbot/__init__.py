"""chatbot: a context-sensitive seq2seq chatbot that learns to talk from real conversations."""

__version__ = "0.1.0"
