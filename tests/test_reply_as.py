"""`chatbot train --reply-as NAME`: only NAME's turns are targets, the state runs through
everyone's, the model records it, and `chatbot eval` scores exactly NAME's replies."""

from __future__ import annotations

import json

import pytest

from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import Conversation, Turn
from chatbot.model.exchanges import exchanges
from chatbot.text.tokenizer import BOS_ID, fit_tokenizer
from chatbot.train.data import conversations, targets
from tests.cli_util import last_json, run

LINES = ["hi there", "hello , how are you ?", "fine thanks , and you ?", "not bad at all",
         "what are you doing today ?", "working , as usual", "see you later then",
         "bye for now", "did you eat ?", "yes , pasta"]


def chats() -> list[Conversation]:
    """Group chats of Ana, Ben and Cy: Ana replies in most, never in the last ones."""
    people = ["Ana", "Ben", "Cy"]
    made = []
    for n in range(24):
        speakers = people if n < 18 else ["Ben", "Cy"]
        size = 3 + n % 4
        made.append(Conversation([  # each conversation its own (the store keeps one copy)
            Turn(f"{LINES[(n + k) % len(LINES)]}{' ' + 'x' * (n + 1) if k == 0 else ''}",
                 speakers[(n + k) % len(speakers)], k * 1000)
            for k in range(size)]))
    return made


def expected_targets(made: list[Conversation], name: str) -> int:
    """The speaker's turns that follow another turn: what --reply-as trains on."""
    return sum(1 for c in made for t in c.turns[1:] if t.speaker == name)


@pytest.fixture
def corpus(tmp_path):
    db = tmp_path / "corpus.db"
    with CorpusStore(db) as store:
        store.add_source("/chats/group.txt", "a" * 64, "jsonl", "utf-8", chats(), 2)
    return db


def test_only_the_speakers_turns_are_targets_and_the_state_runs_through_all(corpus):
    made = chats()
    tokenizer = fit_tokenizer("word", LINES, 60)
    with CorpusStore(corpus) as store:
        found = list(conversations(store, tokenizer, "all", 0.05, 40, "conversation",
                                   ("Ana",)))
        every = list(conversations(store, tokenizer, "all", 0.05, 40, "conversation"))
    # Conversations in which Ana never replies bring nothing to learn: left out.
    with_ana = [c for c in made if any(t.speaker == "Ana" for t in c.turns[1:])]
    assert len(found) == len(with_ana) < len(every)
    assert sum(targets(c) for c in found) == expected_targets(made, "Ana")
    for conversation, exchanged in zip(with_ana, found, strict=True):
        full = exchanges(tokenizer.encode_batch([t.text for t in conversation.turns]), 40)
        assert len(exchanged) == len(full)  # every exchange is still walked...
        for k, (e, whole) in enumerate(zip(exchanged, full, strict=True)):
            # ...with its turn read and its reply fed in, so the state runs through it,
            assert e.source == whole.source and e.target_in == whole.target_in
            assert e.target_in[0] == BOS_ID
            # but only Ana's replies are predicted.
            is_ana = conversation.turns[k + 1].speaker == "Ana"
            assert (e.target_out == whole.target_out) if is_ana else e.target_out == []
    two = list(conversations(CorpusStore(corpus), tokenizer, "all", 0.05, 40,
                             "conversation", ("Ana", "Cy")))
    assert sum(targets(c) for c in two) == (expected_targets(made, "Ana")
                                            + expected_targets(made, "Cy"))


def test_train_reply_as_is_recorded_and_eval_scores_that_speakers_replies(corpus, tmp_path):
    model = tmp_path / "ana"
    trained = run("train", "--db", str(corpus), "--model", str(model), "--reply-as", "Ana",
                  "--max-steps", "3", "--embedding-dim", "8", "--hidden-dim", "8",
                  "--vocab-size", "60", "--batch-size", "4", "--split-by", "conversation",
                  "--json")
    assert trained.exit_code == 0, trained.output
    metadata = json.loads((model / "metadata.json").read_text())
    assert metadata["options"]["reply_as"] == ["Ana"]
    measured = run("eval", "--db", str(corpus), "--model", str(model), "--split", "all",
                   "--max-exchanges", "5", "--json")
    assert measured.exit_code == 0, measured.output
    report = last_json(measured.stdout)
    assert report["exchanges"] == expected_targets(chats(), "Ana")
    assert report["replies"] == 5
    # A resume must train on the same targets.
    other = run("train", "--model", str(model), "--resume", "--reply-as", "Ben")
    assert other.exit_code == 1 and "--reply-as" in other.stderr
    nobody = run("train", "--db", str(corpus), "--model", str(tmp_path / "x"),
                 "--reply-as", "Zoe", "--max-steps", "1")
    assert nobody.exit_code == 1
    assert "Zoe" in nobody.stderr and "corpus speakers" in nobody.stderr
