"""A runtime that knows nothing of chatbot: greedy replies from exported SavedModels.

Run as a script in a fresh process (tests/test_export_savedmodel.py does):

    python tests/savedmodel_client.py '{"exports": [DIR, ...], "turns": [[A1, B1], [A2, B2]],
                                       "max_len": 8, "min_len": 1}'

It imports only TensorFlow, NumPy and the standard library; it tokenizes with the
exported tokenizer.json (word tokenizers: the rules of chatbot/text/word.py restated
here), calls `encode` and loops over `step` greedily, carrying each conversation's state
from one turn to the next. It prints one JSON line: per export, per turn, the source ids,
the reply ids and the state after the reply, and whether `chatbot` was ever imported.
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

# The word tokenizer's rules, as chatbot/text/word.py documents them.
_CLITICS = r"(?:s|m|d|ll|re|ve)"
_TOKEN = re.compile(
    rf"""
      [^\W_]+(?=n't\b)
    | (?<=[^\W_])n't\b
    | (?<=[^\W_])'{_CLITICS}\b
    | \w+(?:(?:'(?!{_CLITICS}\b)|-|(?<=\d)[.,:](?=\d))\w+)*
    | \.{{2,}} | [!?]+ | -{{2,}}
    | [^\w\s]
    """,
    re.VERBOSE | re.IGNORECASE,
)
_FOLD = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "„": '"', "…": "..."})


class Runtime:
    """One exported model: its tokenizer, ids and the two signatures."""

    def __init__(self, path: str) -> None:
        folder = Path(path)
        self.info = json.loads((folder / "signatures.json").read_text(encoding="utf-8"))
        tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        if tokenizer["kind"] != "word":
            raise SystemExit(f"this client reads word tokenizers, not {tokenizer['kind']}")
        self.lower = tokenizer["options"]["lower"]
        self.vocab = {token: i for i, token in enumerate(tokenizer["vocab"])}
        loaded = tf.saved_model.load(path)
        self.encode_fn = loaded.signatures["encode"]
        self.step_fn = loaded.signatures["step"]
        self.ids = self.info["ids"]

    def tokenize(self, text: str) -> list[int]:
        text = text.translate(_FOLD)
        tokens = _TOKEN.findall(text.lower() if self.lower else text)
        ids = [self.vocab.get(t, self.ids["unk"]) for t in tokens]
        keep = self.info["max_source_len"]
        return ids[-keep:] if keep else ids

    def zero_state(self, rows: int) -> np.ndarray:
        _, k, h = self.info["state"]["shape"]
        return np.zeros((rows, k, h), np.float32)

    def greedy(self, sources: list[list[int]], state: np.ndarray, max_len: int,
               min_len: int) -> tuple[list[list[int]], np.ndarray]:
        """Greedy replies to a batch of turns; the state after each reply (N, K, H)."""
        ids = self.ids
        width = max(1, max(len(s) for s in sources))
        source = np.full((len(sources), width), ids["pad"], np.int32)
        for row, s in enumerate(sources):
            source[row, :len(s)] = s
        encoded = self.encode_fn(source=tf.constant(source), state=tf.constant(state))
        memory = {name: value for name, value in encoded.items() if name != "state"}
        state = encoded["state"]
        token = np.full(len(sources), ids["bos"], np.int32)
        done = np.zeros(len(sources), bool)
        replies: list[list[int]] = [[] for _ in sources]
        finals = np.zeros(state.shape, np.float32)
        for t in range(max_len + 1):
            out = self.step_fn(token=tf.constant(token), state=state, **memory)
            state = out["state"]
            scores = tf.nn.log_softmax(out["logits"]).numpy()
            # The project's masks: never pad, bos or unk; no end before min_len tokens;
            # only the end at max_len.
            scores[:, [ids["pad"], ids["bos"], ids["unk"]]] = -np.inf
            if t < min_len:
                scores[:, ids["eos"]] = -np.inf
            if t >= max_len:
                end = scores[:, ids["eos"]].copy()
                scores[:] = -np.inf
                scores[:, ids["eos"]] = end
            choice = scores.argmax(-1).astype(np.int32)
            for row in np.flatnonzero(~done):
                if choice[row] == ids["eos"]:
                    done[row] = True
                    finals[row] = state.numpy()[row]  # the state after [bos] + reply
                else:
                    replies[row].append(int(choice[row]))
            if done.all():
                break
            token = np.where(done, ids["pad"], choice).astype(np.int32)
        return replies, finals


def main() -> None:
    job = json.loads(sys.argv[1])
    results = []
    for path in job["exports"]:
        runtime = Runtime(path)
        state = runtime.zero_state(len(job["turns"][0]))
        turns = []
        for texts in job["turns"]:
            sources = [runtime.tokenize(text) for text in texts]
            replies, state = runtime.greedy(sources, state, job["max_len"], job["min_len"])
            turns.append({"sources": sources, "replies": replies, "state": state.tolist()})
        results.append(turns)
    print(json.dumps({"results": results, "chatbot_imported": "chatbot" in sys.modules}))


if __name__ == "__main__":
    main()
