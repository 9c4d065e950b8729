"""Reviewed transcripts back into the corpus store, as one source per transcripts file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from chatbot.corpus.ingest import FileResult
from chatbot.corpus.store import CorpusStore
from chatbot.errors import ChatbotError
from chatbot.transcripts.export import to_conversations, transcripts
from chatbot.transcripts.store import Rating, TranscriptStore

FORMAT = "transcripts"  # the format recorded for the source (`chatbot corpus stats`)


def source_name(path: Path) -> str:
    """How the corpus names a transcripts file: 'transcripts:/absolute/path'."""
    return f"{FORMAT}:{path.resolve()}"


def ingest_transcripts(
    corpus: CorpusStore, path: Path, only_rated: Rating | None = None, min_turns: int = 2
) -> FileResult:
    """Put a transcripts file's conversations into the corpus; errors go into the result.

    The source's digest is that of the conversations put in, so running it again on
    unchanged transcripts (with the same filter) does nothing. When they have changed,
    the new conversations replace the ones an earlier run took from the same file, in
    the same transaction: chats that grew are not counted twice, and a failure leaves
    the earlier copy in place. The corpus then holds private chats: the source is recorded
    as private data, and the file is made readable by its owner only (mode 0600, with
    its -wal and -shm files) before they go in.
    """
    result = FileResult(Path(path), format=FORMAT)
    try:
        with TranscriptStore(path, create=False) as store:
            conversations = list(to_conversations(transcripts(store), only_rated))
        corpus.make_private()
        content = json.dumps([[[t.speaker, t.text] for t in c.turns] for c in conversations],
                             ensure_ascii=False)
        digest = hashlib.sha256(f"{FORMAT}\n{content}".encode()).hexdigest()
        known = corpus.source_with_digest(digest)
        if known is not None:
            result.unchanged_as = known["path"]
            return result
        name = source_name(Path(path))
        with corpus.db.atomic():
            corpus.remove_source(name)
            counts = corpus.add_source(name, digest, FORMAT, None, conversations, min_turns,
                                       private=True)
    except ChatbotError as e:
        result.error = str(e)
        return result
    except sqlite3.OperationalError as e:  # e.g. the corpus locked past the busy timeout
        result.error = f"{corpus.path}: cannot write the corpus database: {e}"
        return result
    return result.count(counts)

