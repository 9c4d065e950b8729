"""The built-in default model: a model directory shipped inside the package, if any."""

from __future__ import annotations

from pathlib import Path

from chatbot.model.directory import CONFIG_FILE

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "default_model"

NO_BUILTIN_MODEL = ("no built-in model yet: train one with `chatbot train --model DIR` "
                    "(or `make chat`) and pass --model DIR")


def builtin_model_dir() -> Path | None:
    """`chatbot/default_model/` when a model has been packaged there, else None."""
    return BUILTIN_DIR if (BUILTIN_DIR / CONFIG_FILE).is_file() else None
