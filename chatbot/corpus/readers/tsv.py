"""Tab-separated sentence pairs (the Anki/manythings files of the Keras seq2seq example).

    Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org ...

Each line is a two-turn conversation from its first two columns; later columns
(attribution) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.types import Conversation, ReadOptions, Turn


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield (first column, second column) of each line as a two-turn conversation."""
    text_file = source.text()
    for line in text_file.lines():
        if not line.strip():
            continue
        pair = [" ".join(column.split()) for column in line.split("\t")[:2]]
        if len(pair) < 2 or not all(pair):
            source.warn("expected two non-empty tab-separated columns; skipped", text_file.line)
            continue
        yield Conversation([Turn(pair[0]), Turn(pair[1])])
