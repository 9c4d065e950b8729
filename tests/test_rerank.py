"""Replies that fit the turn: a reverse model (`chatbot train --reverse`) learns
p(turn | reply) on the conversations read backwards, and reranking the N best by MMI-bidi
(with it) or PMI (without) turns a model's generic reply into the turn's own, in the
Responder, the chat and eval. A wrong --reverse-model is one line."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.corpus.store import CorpusStore  # noqa: E402
from chatbot.corpus.types import Conversation, Turn  # noqa: E402
from chatbot.decode.settings import DecodeSettings  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.model.exchanges import Exchange  # noqa: E402
from chatbot.text.tokenizer import BOS_ID, EOS_ID, fit_tokenizer  # noqa: E402
from chatbot.train import token_cache  # noqa: E402
from chatbot.train.data import lanes  # noqa: E402
from chatbot.train.lane_batches import epoch_order, lane_batches  # noqa: E402
from chatbot.transcripts.store import TranscriptStore  # noqa: E402
from tests.cli_util import last_json, run  # noqa: E402
from tests.test_reply_as import chats  # noqa: E402
from tests.tiny_model import tiny_model_dir  # noqa: E402

NAMES = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "candle", "forest",
         "rocket", "violin", "garden"]
ASKING = ["tell me about the {}", "where is the {}", "have you seen the {}", "what about the {}"]
GENERIC = "i do not know"
TURNS = [(ask.format(name), name) for name in NAMES for ask in ASKING]
LANES = 24  # conversations, walked side by side


def swapped(turns: list[list[int]], max_len: int) -> list[Exchange]:
    """Written out by hand: (t1 -> t0), (t2 -> t1), ...; the turn read keeps its last
    max_len tokens, the turn predicted its first (no eos when cut)."""
    made = []
    for k in range(len(turns) - 1):
        read, said = turns[k + 1], turns[k]
        if len(said) >= max_len:
            made.append(Exchange(read[-max_len:], [BOS_ID, *said[:max_len - 1]],
                                 said[:max_len]))
        else:
            made.append(Exchange(read[-max_len:], [BOS_ID, *said], [*said, EOS_ID]))
    return made


def test_reverse_lanes_are_the_hand_swapped_exchanges_each_on_its_own(tmp_path):
    made = chats()
    db = tmp_path / "chats.db"
    with CorpusStore(db) as store:
        store.add_source("/chats/group.txt", "a" * 64, "jsonl", "utf-8", made, 2)
        tokenizer = fit_tokenizer("word", store, 60)
    cache = token_cache.ensure(db, tokenizer)
    max_len = 4  # turns cut on both sides
    by_hand = [swapped(tokenizer.encode_batch([t.text for t in c.turns]), max_len)
               for c in made]
    assert list(cache.exchanges("all", 0.05, max_len, "conversation",
                                reverse=True)) == by_hand
    # Ana's replies only: the reverse exchange of (turn -> Ana's reply) is learnt.
    ana = [[e if c.turns[k + 1].speaker == "Ana" else e._replace(target_out=[])
            for k, e in enumerate(found)] for c, found in zip(made, by_hand, strict=True)]
    ana = [c for c in ana if any(e.target_out for e in c)]
    assert list(cache.exchanges("all", 0.05, max_len, "conversation", ("Ana",),
                                reverse=True)) == ana
    for expected, targets in ((by_hand, None), (ana, cache.target_turns(("Ana",)))):
        order = epoch_order(cache, "all", 0.05, "conversation", targets=targets)
        built = list(lane_batches(cache, order, 3, max_len, targets, reverse=True))
        walked = list(lanes(iter(expected), 3))
        assert len(built) == len(walked)
        for ours, theirs in zip(built, walked, strict=True):
            np.testing.assert_array_equal(ours.source, theirs.source)
            np.testing.assert_array_equal(ours.target_in, theirs.target_in)
            width = theirs.target_out.shape[1]
            np.testing.assert_array_equal(ours.target_out[:, :width], theirs.target_out)
            assert ours.reset.all()  # every exchange on its own: p(turn | reply) alone


def conversations() -> list[Conversation]:
    """Questions about a thing; half the time the reply is the generic one, else one of
    two replies that name the thing: the likeliest reply is always the generic one.
    Long conversations (each question once, in its own order) so that an epoch is long
    and the run a few epochs; the odd ones start with a reply, so that every step has
    replies to learn (only B's turns are learnt, with --reply-as B)."""
    made = []
    for c in range(LANES):
        order = random.Random(c).sample(range(len(TURNS)), len(TURNS))
        turns = [Turn(GENERIC, "B")] if c % 2 else []
        for i in order:
            question, name = TURNS[i]
            reply = [GENERIC, GENERIC, f"the {name} is here", f"the {name} is gone"][(i + c) % 4]
            turns += [Turn(question, "A"), Turn(reply, "B")]
        made.append(Conversation(turns))
    return made


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(corpus, forward model, reverse model), trained for a few hundred steps."""
    root = tmp_path_factory.mktemp("rerank")
    db = root / "corpus.db"
    with CorpusStore(db) as store:
        store.add_source("/questions.jsonl", "d" * 64, "jsonl", "utf-8", conversations(), 2)
    common = ["--db", str(db), "--arch", "attention", "--hidden-dim", "24",
              "--embedding-dim", "16", "--batch-size", str(LANES), "--max-steps", "200",
              "--epochs", "100", "--patience", "100", "--lr-decay", "1", "--learning-rate",
              "0.02", "--valid-fraction", "0", "--max-len", "8", "--split-by",
              "conversation", "--checkpoint-every", "1000", "--reply-as", "B", "--json"]
    for name, extra in (("forward", ["--no-context"]), ("reverse", ["--reverse"])):
        result = run("train", "--model", str(root / name), *common, *extra)
        assert result.exit_code == 0, result.output
    return db, root / "forward", root / "reverse"


def test_train_reverse_says_so_and_keeps_no_context(models, tmp_path):
    from chatbot.model import directory

    db, forward, reverse = models
    metadata = json.loads((reverse / "metadata.json").read_text())
    assert metadata["options"]["reverse"] is True
    assert json.loads((reverse / "config.json").read_text())["context_sensitive"] is False
    assert not json.loads((forward / "metadata.json").read_text())["options"]["reverse"]
    assert directory.trained_reverse(directory.read_metadata(reverse))
    # A resume trains on what the run began with.
    other = run("train", "--model", str(forward), "--resume", "--reverse")
    assert other.exit_code == 1 and "--reverse" in other.stderr
    both = run("train", "--db", str(db), "--model", str(tmp_path / "m"), "--reverse",
               "--context", "--max-steps", "1")
    assert both.exit_code == 1 and "drop --context" in both.stderr


def names_said(texts: list[str]) -> int:
    """How many replies (to the first turns of TURNS) name the thing their turn asked
    about."""
    return sum(name in text.split() for (_, name), text in zip(TURNS, texts, strict=False))


def test_reranking_turns_the_generic_reply_into_the_turn_s_own(models):
    from chatbot.decode.responder import Responder

    _, forward, reverse = models
    responder = Responder(forward, reverse_model=reverse)
    assert responder.reverse is not None and responder.reverse.loaded.reverse
    turns = [question for question, _ in TURNS]
    # Beam 8: the search reranking runs (rerank_n 8), compiled once for all three.
    beam = DecodeSettings(method="beam", beam_size=8, max_len=8)
    plain = [text for text, _, _ in responder.reply_batch(turns, settings=beam)]
    assert plain.count(GENERIC) >= 0.9 * len(turns)  # the likeliest reply: generic
    for rerank in ("mmi", "pmi"):
        found = responder.reply_batch(turns, settings=beam.replace(rerank=rerank))
        texts = [text for text, _, _ in found]
        assert names_said(texts) >= 0.75 * len(turns), (rerank, texts)
        info = found[0][2]
        marks = [c.rerank for c in info.candidates]
        assert marks == sorted(marks, reverse=True) and info.score == marks[0]
        assert GENERIC in [c.text for c in info.candidates]  # it was there, and lost
    # Sampling: rerank_n samples per turn, drawn together and reproducible with a seed.
    sampled = beam.replace(method="sample", rerank="mmi", seed=7)
    texts = [text for text, _, _ in responder.reply_batch(turns[:12], settings=sampled)]
    assert names_said(texts) >= 8
    assert texts == [t for t, _, _ in responder.reply_batch(turns[:12], settings=sampled)]


def test_chat_reranks_with_a_reverse_model_and_set_rerank_switches(models, tmp_path):
    _, forward, reverse = models
    base = ["chat", "--model", str(forward), "--transcripts", str(tmp_path / "t.db"),
            "--decode", "beam", "--beam-size", "8"]
    from click.testing import CliRunner

    from chatbot.cli import cli

    turns = "where is the apple\n/set rerank off\nwhere is the apple\n" \
            "/set rerank pmi\nwhere is the apple\n/settings\n"
    result = CliRunner().invoke(cli, [*base, "--reverse-model", str(reverse)], input=turns)
    assert result.exit_code == 0, result.output
    first, plain, pmi = result.stdout.splitlines()
    assert "apple" in first.split() and plain == GENERIC and "apple" in pmi.split()
    assert "decoding: beam 8" in result.stderr and "rerank pmi of 8" in result.stderr
    # Without a reverse model, mmi is refused at once; pmi needs none.
    with TranscriptStore(tmp_path / "u.db") as store:
        chat = ChatSession(object(), store, model_path=forward)  # type: ignore[arg-type]
        with pytest.raises(ChatbotError, match="needs a reverse model"):
            chat.set("rerank", "mmi")
        assert chat.set("rerank", "pmi").rerank == "pmi"
        assert chat.set("rerank_lambda", "0.3").rerank_lambda == 0.3
        with pytest.raises(ChatbotError, match="rerank_lambda must be in"):
            chat.set("rerank_lambda", "2")


def test_a_wrong_reverse_model_is_one_line(models, tmp_path):
    from chatbot.decode.responder import Responder

    db, forward, reverse = models
    # Another tokenizer: a reverse model of other words.
    other = tiny_model_dir(["some other words entirely"], metadata={
        "options": {"reverse": True, "max_len": 8}})
    chat = ["chat", "--model", str(forward), "--transcripts", str(tmp_path / "t.db")]
    for args, message in [(["--reverse-model", str(forward)], "not a reverse model"),
                          (["--reverse-model", str(other)], "its tokenizer is not the one"),
                          (["--reverse-model", str(tmp_path / "nowhere")], "no model directory"),
                          (["--rerank", "mmi"], "needs --reverse-model")]:
        result = run(*chat, *args)
        assert result.exit_code == 1, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    wrong = run("eval", "--db", str(db), "--model", str(forward), "--reverse-model",
                str(forward))
    assert wrong.exit_code == 1 and "not a reverse model" in wrong.stderr
    with pytest.raises(ChatbotError, match="not a reverse model"):
        Responder(forward, reverse_model=forward)
    with pytest.raises(ChatbotError, match="rerank mmi needs a reverse model"):
        Responder(forward).reply("hello", settings=DecodeSettings(rerank="mmi"))


def test_eval_ranks_by_mmi_and_reranks_its_replies(models):
    db, forward, reverse = models
    result = run("eval", "--db", str(db), "--model", str(forward), "--reverse-model",
                 str(reverse), "--split", "all", "--max-exchanges", "96", "--json")
    assert result.exit_code == 0, result.output
    report = last_json(result.stdout)
    assert report["replies"] == 96  # two conversations' replies: each ranked against the other's
    # A specific true reply loses to a generic distractor by likelihood, not by MMI (a
    # generic true reply may lose to a distractor that names the thing: about 1 in 3).
    assert report["hits_at_1_mmi"] >= report["hits_at_1"] + 0.05
    assert 0 <= report["hits_at_1_mmi_no_context"] <= 1
    # Only B's replies are scored, each at its own decoder position (a step whose fed
    # turns are wider than its targets once misaligned them: perplexity in the thousands).
    assert report["perplexity"] < 2
