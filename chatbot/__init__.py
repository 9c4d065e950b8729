"""chatbot: a context-sensitive seq2seq chatbot that learns to talk from real conversations."""

# sqlite3 must load before TensorFlow: TensorFlow bundles its own SQLite without FTS5, and
# whichever library loads first serves both, which would break full-text search in any
# process that also runs a model (training, chat).
import sqlite3  # noqa: F401

__version__ = "0.1.0"
