"""A training run's options: one typed dataclass, saved as JSON, read back by one function.

    MODEL/training.json   the run's options, written when it starts and when a resume
                          changes one (how long it runs, how it reports)
    MODEL/metadata.json   the same under "options" in every exported model, so a copy of
                          the model (the shipped, compact one) still says how it was split

`read_options` reads either, typed, and also the older form (every value a string, no
`split_by`: such models were split by conversation). Light: no TensorFlow here, so the
CLI and `chatbot.evaluate` import it freely.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from chatbot.corpus.split import SPLIT_BY
from chatbot.errors import ChatbotError
from chatbot.text.tokenizer import KINDS

STATE_FILE = "training.json"
OPTIMIZERS = ("adam", "rmsprop")
STRATEGIES = ("default", "mirrored", "multiworker")
SPLIT_BEFORE_WORKS = "conversation"  # how a model that does not say was split

# A field whose metadata says `resume=True` may differ when a run is resumed (how long
# it goes on, how it reports, how often it saves); every other one fixes what the run
# trains on and how (the data order, the model, the optimizer's state) and must match.
_MAY_CHANGE = {"resume": True}


@dataclass(frozen=True)
class TrainOptions:
    """Everything `chatbot train` takes besides the model's own config."""

    db: Path  # the corpus store
    model_dir: Path
    tokenizer: str = "word"  # word, char or subword
    vocab_size: int = 8000
    batch_size: int = 32  # lanes: conversations walked side by side
    epochs: int = field(default=10, metadata=_MAY_CHANGE)
    max_steps: int | None = field(default=None, metadata=_MAY_CHANGE)
    valid_fraction: float = 0.05
    # What the train/validation split keeps on one side: "work" (a film, a book; each
    # dialogue of a dialogue set) or "conversation" (models trained before works).
    split_by: str = "work"
    checkpoint_every: int = field(default=500, metadata=_MAY_CHANGE)
    seed: int = 0
    max_len: int = 40  # tokens per turn; longer turns are cut
    optimizer: str = "adam"  # or "rmsprop", as in the Keras example
    learning_rate: float = 1e-3
    clipnorm: float = 1.0  # the gradients' global norm is clipped to this
    # Epochs without a better validation perplexity before stopping.
    patience: int = field(default=3, metadata=_MAY_CHANGE)
    # After an epoch without a better validation perplexity the learning rate is
    # multiplied by this (Keras' ReduceLROnPlateau, at epoch ends); 1 = never.
    lr_decay: float = field(default=0.5, metadata=_MAY_CHANGE)
    pool: int = 1024  # conversations in the shuffle pool
    strategy: str = field(default="default", metadata=_MAY_CHANGE)  # mirrored, multiworker
    # Steps between TensorBoard / history records (and progress lines in a log).
    log_every: int = field(default=20, metadata=_MAY_CHANGE)
    # Only these speakers' turns are targets (a bot that answers as one person); the
    # state still runs through every turn. Empty: every turn after the first.
    reply_as: tuple[str, ...] = ()
    # Where the corpus' token cache lives (chatbot/train/token_cache.py); None: beside the
    # corpus (CORPUS.tokens/). Its content is fixed by the corpus and the tokenizer, so
    # the place may change on a resume (a worker's copy, say).
    token_cache: Path | None = field(default=None, metadata=_MAY_CHANGE)
    # Float16 (GPU, with loss scaling) or bfloat16 (CPU) compute; variables, the loss,
    # the softmax and the state carried between exchanges stay float32.
    mixed_precision: bool = False
    # Learn p(turn | reply): each exchange read backwards (turn k+1 -> turn k), each one
    # on its own (the state reset at every exchange). The backward model of Li et al.
    # 2016's MMI-bidi, for reranking replies (chatbot/decode/rerank.py).
    reverse: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", Path(self.db))
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "reply_as", tuple(self.reply_as))
        if self.token_cache is not None:
            object.__setattr__(self, "token_cache", Path(self.token_cache))
        if any(not isinstance(n, str) or not n.strip() for n in self.reply_as):
            raise ChatbotError("--reply-as: give a speaker's name as `chatbot corpus "
                               "speakers` lists it")
        for name, choices in (("tokenizer", KINDS), ("optimizer", OPTIMIZERS),
                              ("split_by", SPLIT_BY), ("strategy", STRATEGIES)):
            if getattr(self, name) not in choices:
                raise ChatbotError(f"--{_flag(name)} {getattr(self, name)}: choose one of "
                                   f"{', '.join(choices)}")
        if not 0 < self.lr_decay <= 1:
            raise ChatbotError(f"--lr-decay {self.lr_decay}: must be in (0, 1]")
        if not 0 <= self.valid_fraction < 1:
            raise ChatbotError(f"--valid-fraction {self.valid_fraction}: must be in [0, 1)")
        for name in ("batch_size", "epochs", "checkpoint_every", "max_len", "log_every",
                     "patience", "pool"):
            if getattr(self, name) < 1:
                raise ChatbotError(f"--{_flag(name)} {getattr(self, name)}: must be 1 or more")
        if self.max_steps is not None and self.max_steps < 1:
            raise ChatbotError(f"--max-steps {self.max_steps}: must be 1 or more")

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON values (paths as strings): what is saved."""
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}


def may_change_on_resume(name: str) -> bool:
    """Whether a resumed run may set option `name` to another value than the saved one."""
    return bool(_FIELDS[name].metadata.get("resume"))


def read_options(source: Path | str | Mapping[str, Any]) -> TrainOptions:
    """The options a model was trained with: from a model directory (its training.json,
    else its metadata.json) or from a model's metadata already read.

    Typed values and the older all-strings form are both read; a value that is neither
    is an error, never a silent default. A model that saved no options reads as the
    defaults; one that does not say how it was split was split by conversation. The
    model directory is where the options were read from; the corpus is the saved one
    (else the metadata's "corpus", else Path()).
    """
    if isinstance(source, Mapping):
        return _from_metadata(source, Path(), "metadata.json")
    model_dir = Path(source)
    state = model_dir / STATE_FILE
    if state.exists():
        return options_from_dict(_read_json(state), model_dir, str(state))
    metadata = model_dir / "metadata.json"
    return _from_metadata(_read_json(metadata) if metadata.exists() else {}, model_dir,
                          str(metadata))


def options_from_dict(data: Mapping[str, Any], model_dir: Path | str,
                      where: str = "options") -> TrainOptions:
    """TrainOptions from saved values (typed or strings); `where` names them in errors."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ChatbotError(f"{where}: unknown training options: {', '.join(unknown)}")
    values = {name: _typed(name, value, where) for name, value in data.items()
              if name != "model_dir"}
    values.setdefault("split_by", SPLIT_BEFORE_WORKS)
    values.setdefault("db", Path())
    try:
        return TrainOptions(model_dir=Path(model_dir), **values)
    except ChatbotError as e:
        raise ChatbotError(f"{where}: {e}") from None


def resumed_options(saved: TrainOptions, model_dir: Path | str, /,
                    **given: Any) -> TrainOptions:
    """The saved run's options with the given ones: those a resume may change take the
    given value; every other one must equal the saved one (the corpus: the same file)."""
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise ChatbotError(f"unknown training options: {', '.join(unknown)}")
    differ = [name for name, value in given.items()
              if name != "model_dir" and not may_change_on_resume(name)
              and not _same(name, value, getattr(saved, name))]
    if differ:
        was = ", ".join(f"--{_flag(n)} {getattr(saved, n)}" for n in differ)
        raise ChatbotError(f"{model_dir}: this run was started with {was}; resume without "
                           "those options or with the same values")
    return replace(saved, model_dir=Path(model_dir),
                   **{k: v for k, v in given.items() if may_change_on_resume(k)})


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file (the same path resolved, or the same inode)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:
        return False


_FIELDS = {f.name: f for f in fields(TrainOptions)}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _same(name: str, given: Any, saved: Any) -> bool:
    if name == "db":
        return same_file(given, saved)
    return given == saved


def _typed(name: str, value: Any, where: str) -> Any:
    """A saved value as its field's type; strings (the older form) are parsed."""
    kind = str(_FIELDS[name].type)
    if kind in ("int | None", "Path | None") and value in (None, "None"):
        return None
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "bool" and value in ("True", "False"):
        return value == "True"
    if kind == "tuple[str, ...]" and isinstance(value, list | tuple) and all(
            isinstance(v, str) for v in value):
        return tuple(value)
    base = kind.split(" |")[0]
    text = isinstance(value, str)
    try:
        if base == "Path" and text:
            return Path(value)
        if base == "str" and text:
            return value
        if base == "int" and not isinstance(value, bool) and (text or isinstance(value, int)):
            return int(value)
        if base == "float" and not isinstance(value, bool) and (
                text or isinstance(value, int | float)):
            return float(value)
    except ValueError:
        pass
    raise ChatbotError(f"{where}: training option {name}={value!r} is not {kind}")


def _from_metadata(metadata: Mapping[str, Any], model_dir: Path, where: str) -> TrainOptions:
    options = metadata.get("options")
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ChatbotError(f"{where}: \"options\" must be a JSON object")
    corpus = metadata.get("corpus")
    if "db" not in options and isinstance(corpus, str):
        options = {**options, "db": corpus}
    return options_from_dict(options, model_dir, where)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ChatbotError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ChatbotError(f"{path}: expected a JSON object")
    return data
