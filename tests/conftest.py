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


# --- how `make test` (pytest -n auto --dist loadfile) spreads the work --------------------
#
# xdist gives a worker one unit of work at a time: a test file (its module fixtures are
# made once), or one of the slow tests of SLOW_TESTS on its own (their module fixtures
# are cheap to make again). Units start slowest first (longest processing time first),
# so the last ones to start are short and the two workers finish together, rather than
# one waiting on a long unit that started last (xdist's own order is by number of tests:
# a one-test file of a minute and a half went last). Seconds as `--durations` showed on
# two busy cores; only their order matters. A test or file not named here is part of its
# file's unit, started after these; a renamed test just loses its place. test_training.py's
# multi-worker and full-disk tests stay in its unit: they run on the token cache its
# earlier tests built beside their corpus, as they always have.
# (--dist loadgroup with xdist_group marks would do the grouping, but under pytest 9.2
# xdist 3.8 silently ignores the marks: pytest-dev/pytest-xdist#1386.)
SLOW_TESTS = {  # a node id, or its start (every parametrization): seconds
    "tests/test_model_training.py::test_each_family_overfits_real_conversations[simple": 75,
    "tests/test_training.py::test_mirrored_strategy_on_two_cpu_replicas_matches_one_device": 75,
    "tests/test_chat.py::test_four_chats_write_one_file_at_once_and_kill_9_loses_nothing_shown":
        55,
    "tests/test_decode.py::test_antilm_follows_li_et_al": 45,
    "tests/test_training.py::test_kill_9_while_training_leaves_a_loadable_directory": 40,
    "tests/test_model_training.py::test_each_family_overfits_real_conversations": 30,
    "tests/test_decode.py::test_a_trained_reply_depends_on_the_conversation_and_a_reset": 30,
}
SLOW_FILES = {  # a file: seconds of its tests not in SLOW_TESTS
    "tests/test_training.py": 215,
    "tests/test_decode.py": 145,
    "tests/test_evaluate.py": 105,
    "tests/test_model.py": 100,
    "tests/test_serve_reliability.py": 90,
    "tests/test_mixed_precision.py": 70,
    "tests/test_builtin_model.py": 65,
    "tests/test_export_savedmodel.py": 55,
    "tests/test_rerank.py": 60,
    "tests/test_ranking.py": 45,
    "tests/test_token_cache.py": 45,
    "tests/test_device_check.py": 40,
    "tests/test_memory.py": 40,
    "tests/test_serve_api.py": 40,
    "tests/test_model_training.py": 35,
    "tests/test_chat.py": 35,
    "tests/test_serve_page.py": 35,
    "tests/test_serve_security.py": 25,
    "tests/test_duplicates.py": 15,
    "tests/test_cli_corpus.py": 12,
    "tests/test_reader_opus.py": 10,
    "tests/test_transcripts.py": 9,
    "tests/test_tokenizers.py": 8,
    "tests/test_reply_as.py": 7,
}


def work_unit(nodeid: str) -> tuple[str, float]:
    """The unit of work a test belongs to (its file, or the test alone) and its seconds."""
    for prefix, seconds in SLOW_TESTS.items():
        if nodeid.startswith(prefix):
            return nodeid, seconds
    path = nodeid.split("::", 1)[0]
    return path, SLOW_FILES.get(path, 0.0)


@pytest.hookimpl(optionalhook=True)  # (a hook of xdist's, asked on the controller)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SlowestFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)[0]

    # Units in the order the workers collected them (below), not by number of tests.
    config.option.loadscopereorder = False
    return SlowestFirst(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the order units start in
        # Stable: a unit's tests keep their order, units of equal cost the collection's.
        items.sort(key=lambda item: -work_unit(item.nodeid)[1])


@pytest.fixture(autouse=True)
def sigint_as_at_a_terminal():
    """Ctrl-C as a terminal delivers it: a shell that runs the tests in the background
    has them ignore SIGINT (Python then installs no handler of its own, and children
    inherit the ignoring), which the Ctrl-C tests of ingest, training and chat need."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
