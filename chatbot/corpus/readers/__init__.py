"""One module per input format. Each exposes `read(source, options) -> Iterator[Conversation]`."""
