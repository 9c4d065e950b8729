"""A process that tokenizes texts for the token cache, run by it as
`python -m chatbot.train.tokenize_worker TOKENIZER_DIR`.

Its own interpreter, not multiprocessing's: spawning through multiprocessing runs the
caller's main module again (a script without a `__main__` guard would start over), and
forking a process that runs TensorFlow's threads is not safe. On stdin, chunks: an
8-byte length and a pickled list of texts; on stdout, for each: the count of texts, the
payload's length, then each text's token count (int64) and all the ids (int32).
"""

from __future__ import annotations

import itertools
import pickle
import sys

import numpy as np

from chatbot.text.tokenizer import load_tokenizer


def main() -> None:
    tokenizer = load_tokenizer(sys.argv[1])
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = source.read(8)
        if len(header) < 8:
            return
        texts = pickle.loads(read_exactly(source, int.from_bytes(header, "little")))
        encoded = tokenizer.encode_batch(texts)
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        ids = np.fromiter(itertools.chain.from_iterable(encoded), np.int32, int(lengths.sum()))
        payload = lengths.tobytes() + ids.tobytes()
        sink.write(len(encoded).to_bytes(8, "little") + len(payload).to_bytes(8, "little"))
        sink.write(payload)
        sink.flush()


def read_exactly(stream, size: int) -> bytes:
    """`size` bytes from `stream`; EOFError when it ends first (its writer died)."""
    data = bytearray()
    while len(data) < size:
        part = stream.read(size - len(data))
        if not part:
            raise EOFError("the stream ended early")
        data += part
    return bytes(data)


if __name__ == "__main__":
    main()
