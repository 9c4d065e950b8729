"""Shared test fixtures: the real corpora beside the project, and isolated data dirs."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from chatbot.corpus.types import ReadOptions

ROOT = Path(__file__).resolve().parent.parent
SHARED_CORPORA = ROOT.parent / "shared" / "corpora"


@pytest.fixture
def corpora() -> Path:
    """../shared/corpora (real files nobody on the project wrote); skip when absent."""
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_CORPORA} (a fresh clone has none)")
    return SHARED_CORPORA


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own CHATBOT_HOME so nothing touches the user's data."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CHATBOT_HOME", str(home))
    return home


@pytest.fixture
def warnings_list() -> list[str]:
    return []


@pytest.fixture
def options(warnings_list) -> ReadOptions:
    """Default read options that collect warnings into `warnings_list`."""
    return ReadOptions(warn=warnings_list.append)


@pytest.fixture(autouse=True)
def sigint_as_at_a_terminal():
    """Ctrl-C as a terminal delivers it: a shell that runs the tests in the background
    has them ignore SIGINT (Python then installs no handler of its own, and children
    inherit the ignoring), which the Ctrl-C tests of ingest, training and chat need."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
