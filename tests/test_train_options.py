"""A training run's options: one typed dataclass, read back by one function; the CLI's
options derived from the library's dataclasses. No training here: all of it is fast."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.errors import ChatbotError
from chatbot.model.config import ModelConfig
from chatbot.train.options import (
    STATE_FILE,
    TrainOptions,
    read_options,
    resumed_options,
)

ROOT = Path(__file__).resolve().parent.parent


def test_options_round_trip_typed_through_the_model_directory(tmp_path):
    options = TrainOptions(db=tmp_path / "c.db", model_dir=tmp_path / "m", max_steps=7,
                           split_by="conversation", learning_rate=0.01)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / STATE_FILE).write_text(json.dumps(options.to_dict()))
    assert read_options(tmp_path / "m") == options
    # Moved elsewhere: the options say where they were read from.
    (tmp_path / "m").rename(tmp_path / "moved")
    assert read_options(tmp_path / "moved").model_dir == tmp_path / "moved"
    # From an exported model's metadata (what `chatbot eval` has).
    metadata = {"corpus": "/data/c.db", "options": {**options.to_dict(), "db": "/data/c.db"}}
    assert read_options(metadata).max_steps == 7
    assert read_options(metadata).db == Path("/data/c.db")


def test_older_models_read_the_same_way():
    # The shipped model: every value a string, no split_by (split by conversation then).
    shipped = read_options(ROOT / "chatbot" / "default_model")
    assert shipped.max_steps is None and shipped.epochs == 15 and shipped.batch_size == 32
    assert shipped.split_by == "conversation" and shipped.learning_rate == 0.001
    assert read_options({"options": {"valid_fraction": "0.1"}}).valid_fraction == 0.1
    # A model that saved no options: the defaults, split by conversation.
    bare = read_options({"steps": 3})
    assert bare.batch_size == TrainOptions.batch_size and bare.split_by == "conversation"


@pytest.mark.parametrize("options, message", [
    ({"batch_size": "many"}, "batch_size='many' is not int"),
    ({"batch_size": True}, "batch_size=True is not int"),
    ({"valid_fraction": [0.1]}, r"valid_fraction=\[0.1\] is not float"),
    ({"learnin_rate": 0.1}, "unknown training options: learnin_rate"),
    ({"split_by": "film"}, "--split-by film: choose one of work, conversation"),
])
def test_a_bad_saved_option_is_an_error_not_a_default(options, message):
    with pytest.raises(ChatbotError, match=message):
        read_options({"options": options})


def test_split_options_callers_keep_working():
    from chatbot.evaluate.run import split_options

    assert split_options({"options": {"valid_fraction": "0.1"}}) == (0.1, 40, 32, "conversation")
    typed = TrainOptions(db=Path("c.db"), model_dir=Path("m"), batch_size=8).to_dict()
    assert split_options({"options": typed}) == (0.05, 40, 8, "work")


def test_a_resume_keeps_what_fixes_the_run_and_takes_how_long_it_goes(tmp_path):
    db = tmp_path / "c.db"
    db.write_bytes(b"")
    saved = TrainOptions(db=db.resolve(), model_dir=tmp_path / "m", batch_size=8, epochs=2)
    (tmp_path / "sub").mkdir()
    again = resumed_options(saved, tmp_path / "m", epochs=5, max_steps=100, log_every=7,
                            batch_size=8, db=tmp_path / "sub" / ".." / "c.db")
    assert (again.epochs, again.max_steps, again.log_every, again.batch_size) == (5, 100, 7, 8)
    (tmp_path / "link.db").symlink_to(db)
    assert resumed_options(saved, tmp_path / "m", db=tmp_path / "link.db").db == saved.db
    with pytest.raises(ChatbotError, match=r"started with --batch-size 8, --db .*c\.db;"):
        resumed_options(saved, tmp_path / "m", batch_size=16, db=tmp_path / "other.db")
    with pytest.raises(ChatbotError, match="unknown training options: batch"):
        resumed_options(saved, tmp_path / "m", batch=16)


def test_trainer_resume_refuses_another_run_before_building_anything(tmp_path):
    from chatbot.train.loop import Trainer

    model = tmp_path / "m"
    with pytest.raises(ChatbotError, match="nothing to resume"):
        Trainer.resume(model)
    (model / "checkpoints").mkdir(parents=True)
    (model / "config.json").write_text(ModelConfig(hidden_dim=16).to_json())
    saved = TrainOptions(db=tmp_path / "c.db", model_dir=model, seed=3)
    (model / STATE_FILE).write_text(json.dumps(saved.to_dict()))
    with pytest.raises(ChatbotError, match=r"built with other options than given \(hidden_dim"):
        Trainer.resume(model, hidden_dim=32, max_steps=9)
    with pytest.raises(ChatbotError, match="started with --seed 3"):
        Trainer.resume(model, seed=4)


def test_every_field_is_an_option_with_help_and_the_dataclass_default():
    from chatbot.cli.train import option_fields, train

    by_field = {v: k for k, v in option_fields().items()}
    wanted = {f.name for f in fields(TrainOptions)} | {f.name for f in fields(ModelConfig)}
    assert set(by_field) == wanted
    params = {p.name: p for p in train.params}
    for cls in (TrainOptions, ModelConfig):
        for f in fields(cls):
            param = params[by_field[f.name]]
            assert isinstance(param, click.Option) and param.help, f.name
            if f.name not in ("db", "model_dir"):
                assert param.default == f.default, f.name
    assert all(p.help for p in train.params if isinstance(p, click.Option))
    shown = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "last --log-every steps" in " ".join(shown.split())  # what train_perplexity is
