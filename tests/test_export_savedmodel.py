"""`chatbot export --format savedmodel`: a SavedModel that reproduces the project's replies
in a process that never imports chatbot, and the command's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from chatbot.decode.responder import Responder  # noqa: E402
from chatbot.decode.settings import DecodeSettings  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.model.savedmodel import export_savedmodel, state_layout  # noqa: E402
from chatbot.text.tokenizer import UNK_ID  # noqa: E402
from tests.cli_util import last_json, run  # noqa: E402
from tests.tiny_model import tiny_model_dir  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

TEXTS = ["hello there , how are you ?", "i am fine , thanks . and you ?",
         "what is your name ?", "my name is bob", "do you like music ?", "yes , i do !"]
# Two conversations of two turns each, decoded as a batch of two; "zebra" is unknown.
TURNS = [["hello there, how are you?", "what is your name, zebra?"],
         ["i am fine. and you?", "do you like music"]]
# Greedy with no constraint the client does not apply: its masks are the reserved ids
# (pad, bos, unk), no end before min_len and only the end at max_len. The n-gram bans
# (no_repeat_ngram is 3 by default) are left off: a runtime would restate them itself.
SETTINGS = DecodeSettings(method="greedy", no_repeat_ngram=0, min_len=1, max_len=8)
CLIENT = Path(__file__).with_name("savedmodel_client.py")
MODELS = {
    "attention-lstm": dict(family="attention", cell="lstm"),
    # Peek (the context at every step); trained with turns cut to 4 ids (saved as a
    # string, as `chatbot train` does).
    "seq2seq-gru-depth-2": dict(family="seq2seq", cell="gru", depth=2, peek=True,
                                metadata={"options": {"max_len": "4"}}),
    "simple-lstm-depth-1-2": dict(family="simple", cell="lstm", depth=[1, 2]),
}


def expected(model_dir: Path) -> list[dict]:
    """The project's greedy replies (Responder) to TURNS, the state carried per row."""
    responder = Responder(model_dir, SETTINGS)
    states = None
    turns = []
    for texts in TURNS:
        out = responder.reply_batch(texts, states)
        states = [state for _, state, _ in out]
        turns.append({"sources": [responder.encode(t) for t in texts],
                      "replies": [list(info.ids) for _, _, info in out],
                      "state": np.stack([np.concatenate(s) for s in states])})  # (N, K, H)
    return turns


def start_client(exports: list[Path]) -> subprocess.Popen:
    """The fresh-process client, started on the exported SavedModels (it runs while this
    process computes the expected replies: two cores, half the wait)."""
    job = {"exports": [str(p) for p in exports], "turns": TURNS,
           "max_len": SETTINGS.max_len, "min_len": SETTINGS.min_len}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen([sys.executable, str(CLIENT), json.dumps(job)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def client_result(process: subprocess.Popen) -> dict:
    """The client's JSON line, once it has ended."""
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()  # a no-op once it has ended
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each model of MODELS saved and exported: name -> (model dir, export dir). The
    attention model goes through the command, into an empty directory that exists."""
    root = tmp_path_factory.mktemp("exports")
    found = {}
    for name, config in MODELS.items():
        model_dir = tiny_model_dir(TEXTS, **config)
        out = root / name
        if name == "attention-lstm":
            out.mkdir()
            result = run("export", "--model", str(model_dir), "--format", "savedmodel",
                         "--json", str(out))
            assert result.exit_code == 0, result.output
            shown = last_json(result.output)
            assert shown["path"] == str(out) and shown["format"] == "savedmodel"
            assert set(shown["signatures"]) == {"encode", "step"}
            assert shown["state"]["layout"] == ["decoder_0/h", "decoder_0/c"]
        else:
            assert export_savedmodel(model_dir, out) == out
        found[name] = (model_dir, out)
    assert sorted(p.name for p in root.iterdir()) == sorted(MODELS)  # no temporary left
    return found


def test_savedmodel_reproduces_greedy_replies_without_chatbot(exported):
    process = start_client([out for _, out in exported.values()])
    try:
        wanted = [expected(model_dir) for model_dir, _ in exported.values()]
    except BaseException:
        process.kill()
        raise
    got = client_result(process)
    assert got["chatbot_imported"] is False
    lengths = set()
    for name, turns, want_turns in zip(exported, got["results"], wanted, strict=True):
        # Turn 2 starts from the state turn 1 left: state in and out both count.
        for turn, want in zip(turns, want_turns, strict=True):
            assert turn["sources"] == want["sources"], name
            assert turn["replies"] == want["replies"], name
            np.testing.assert_allclose(np.array(turn["state"]), want["state"], rtol=1e-5,
                                       atol=1e-6, err_msg=name)
            lengths.update(len(r) for r in want["replies"])
    # Replies of several steps (these models' replies end early or run to max_len); an
    # unknown word read as unk.
    assert max(lengths) > 1
    assert UNK_ID in got["results"][0][0]["sources"][1]


def test_the_export_holds_the_tokenizer_and_describes_state_and_ids(exported):
    for name, (_, out) in exported.items():
        files = {p.name for p in out.iterdir()}
        assert {"saved_model.pb", "variables", "tokenizer.json", "signatures.json"} <= files
        info = json.loads((out / "signatures.json").read_text())
        assert info["ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}, name
        assert info["signatures"]["step"]["outputs"]["logits"]["shape"] == [
            None, info["vocab_size"]]
    # What signatures.json says is what the SavedModel declares.
    import tensorflow as tf

    out = exported["attention-lstm"][1]
    info = json.loads((out / "signatures.json").read_text())
    loaded = tf.saved_model.load(str(out))
    for name in ("encode", "step"):
        function = loaded.signatures[name]
        declared = {"inputs": function.structured_input_signature[1],
                    "outputs": function.structured_outputs}
        for side, specs in declared.items():
            assert {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                    for k, v in specs.items()} == info["signatures"][name][side], (name, side)
    assert info["signatures"]["encode"]["outputs"]["encoder_outputs"]["shape"] == [
        None, None, 32]  # bidirectional: 2 x hidden
    info = json.loads((exported["seq2seq-gru-depth-2"][1] / "signatures.json").read_text())
    assert info["state"]["layout"] == ["decoder_0/h", "decoder_1/h"]
    assert info["state"]["shape"] == [None, 2, 16]
    assert info["max_source_len"] == 4
    assert state_layout("lstm", 2) == ["decoder_0/h", "decoder_0/c", "decoder_1/h",
                                       "decoder_1/c"]


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_export_refuses_an_occupied_out_and_a_bad_model(tmp_path):
    model_dir = tiny_model_dir(TEXTS, **MODELS["attention-lstm"])
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    line = one_line_error(run("export", "--model", str(model_dir), str(occupied)))
    assert "not empty" in line and str(occupied) in line
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]  # untouched

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a directory" in one_line_error(run("export", "--model", str(model_dir),
                                                   str(a_file)))

    missing = tmp_path / "no-model"
    line = one_line_error(run("export", "--model", str(missing), str(tmp_path / "out")))
    assert str(missing) in line
    assert not (tmp_path / "out").exists()

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    assert "model.keras missing" in one_line_error(
        run("export", "--model", str(partial), str(tmp_path / "out")))

    with pytest.raises(ChatbotError, match="not empty"):
        export_savedmodel(model_dir, occupied)
