"""ChatterBot corpus YAML: a `conversations:` list of lists of strings.

    categories:
    - greetings
    conversations:
    - - Hello
      - Hi there!

Each inner list is one conversation. The files are small, so the whole document is
parsed at once; it is walked as yaml nodes (SafeLoader, as yaml.safe_load uses) rather
than as constructed Python values so that warnings can name the line of the bad item.
"""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from chatbot.corpus.source import Source
from chatbot.corpus.types import Conversation, ReadOptions, Turn
from chatbot.errors import ReaderError

# ChatterBot files are a few KB; anything this big is not one, and would be parsed whole.
MAX_BYTES = 32 << 20
_NULL_TAG = "tag:yaml.org,2002:null"


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield each inner list of `conversations:` as a conversation."""
    if source.info.size > MAX_BYTES:
        size = source.info.size
        raise ReaderError(source.path, f"too large for a ChatterBot YAML file ({size} bytes)")
    text_file = source.text()
    document = "\n".join(text_file.lines())  # decoding errors arrive as ReaderError with a line
    conversations = _conversations_node(source, document)
    for node in conversations.value:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.SequenceNode):
            # Usually a mis-indented pair ("- Q\n - A" parsed as one string).
            source.warn(f"conversation is a {_kind(node)}, not a list; skipped", line)
            continue
        turns = [Turn(text) for text in _texts(source, node) if text]
        if turns:
            yield Conversation(turns)


def _conversations_node(source: Source, document: str) -> yaml.SequenceNode:
    """Parse the document and find its `conversations:` sequence."""
    loader = None
    try:
        loader = yaml.SafeLoader(document)  # rejects control characters already
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ReaderError(source.path, f"invalid YAML: {e.problem or e.context}", line) from None
    except yaml.reader.ReaderError as e:  # a control character; position counts characters
        line = document.count("\n", 0, e.position) + 1
        raise ReaderError(source.path, f"invalid YAML: {e.reason}", line) from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines() or [type(e).__name__]
        raise ReaderError(source.path, f"invalid YAML: {first[0]}") from None
    except RecursionError:
        raise ReaderError(source.path, "invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "conversations":
                if isinstance(value, yaml.SequenceNode):
                    return value
                raise ReaderError(
                    source.path,
                    f"'conversations:' is a {_kind(value)}, not a list",
                    value.start_mark.line + 1,
                )
    raise ReaderError(source.path, "no 'conversations:' list (not a ChatterBot corpus file)")


def _texts(source: Source, conversation: yaml.SequenceNode) -> Iterator[str]:
    for item in conversation.value:
        if isinstance(item, yaml.ScalarNode):
            if item.tag == _NULL_TAG:
                continue  # an empty "- " entry
            # The scalar as written: `yes` stays "yes" rather than becoming "True".
            yield " ".join(item.value.split())
        else:
            source.warn(
                f"{_kind(item)} inside a conversation; only text is read, skipped",
                item.start_mark.line + 1,
            )


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "scalar" if node.tag != _NULL_TAG else "null"
