"""GPU check: training and decoding speed on a borrowed GPU, as one JSON line.

Run it as `bash scripts/device_check.sh` (at most 8 minutes on one GPU, in a fresh copy of
the tree after `pip install -e .`; it needs no network), or with `--cpu-dry-run` to
rehearse the same code on the CPU in about a minute, tiny and at the standard size only
(tests/test_device_check.py does). TensorFlow must see the GPU: on Linux x86-64
`pip install -e .` installs `tensorflow-cpu`; replace it as the README's "TensorFlow and
GPUs" says, else the script stops with "no GPU found".
It measures, in this order (the most wanted first, so a time guard cuts the least):
  train standard   vocab 8000, embedding 256, hidden 512, batch 32 (bench_train.py's size):
                   ours (`Trainer`, --strategy default, float32, context carried) and the
                   Keras example's padded `model.fit`, in real target tokens/s, and the
                   ratio ours / baseline;
  train large      the same at hidden 1024, batch 256;
  decode           the built-in model (chatbot/default_model), batch 1, greedy and beam 5:
                   ms per generated token (bench_decode.py's way: min_len = max_len);
  mixed precision  ours again with `mixed_precision=True`, at each size (an error there is
                   recorded as a string: the option is new).
Rates leave out each run's first step (the compile). Each part records its wall time and
the GPU's peak memory while it ran (`get_memory_info("GPU:0")["peak"]`; None on the CPU).
Also recorded: the device (name, compute capability), TensorFlow and Keras versions, the
CUDA/cuDNN build, whether Keras takes its cuDNN LSTM kernel and whether ours takes its
CPU kernel (chatbot/model/fast_lstm.py, off on a GPU), and the date.

Corpus: the chitchat dataset, ingested from the `chitchat-dataset` package (a runtime
dependency in pyproject.toml, so `pip install -e .` brings it; no network needed); the dry
run takes its first 300 conversations, so it is quick. The tokenizer is fitted once per
corpus and reused by every run (each run would fit the same one).

Time: a guard skips a part (recording "skipped": why) when less time is left than the
longest part so far took; a watchdog prints what was measured and exits at --limit
seconds (420 on the GPU, 110 in the dry run). Everything but the JSON line goes to stderr.
Exit status: 0 when measurements ran (even partly), 2 when no GPU is found (without
--cpu-dry-run), 1 when setting up failed.

Usage: bash scripts/device_check.sh [--cpu-dry-run] [--limit SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Plan:
    """What one run measures: the sizes, steps and time limit."""

    dry_run: bool
    limit_s: float  # the watchdog prints what was measured and exits then
    floor_s: float  # the least time the guard keeps for a part
    # name -> (hidden, batch, steps), None: not measured. Steps are training steps per
    # run; the first (the compile) is left out of the rate.
    sizes: dict[str, tuple[int, int, int] | None]
    decode_tokens: int  # reply length: tokens + 1 decoder steps per reply
    decode_repeats: int  # timed replies per method (the median is kept)
    subset: int | None  # conversations of the corpus taken; None: all


GPU_PLAN = Plan(dry_run=False, limit_s=420, floor_s=30,
                sizes={"standard": (512, 32, 300), "large": (1024, 256, 100)},
                decode_tokens=30, decode_repeats=10, subset=None)
DRY_PLAN = Plan(dry_run=True, limit_s=110, floor_s=2,
                sizes={"standard": (32, 8, 4), "large": None},
                decode_tokens=5, decode_repeats=2, subset=300)

START = time.monotonic()


def log(message: str) -> None:
    print(f"[device_check {time.monotonic() - START:6.1f}s] {message}", file=sys.stderr,
          flush=True)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:400]


class Report:
    """The JSON being filled, printed once: at the end, or by the watchdog."""

    def __init__(self, plan: Plan, out: Any) -> None:
        self.plan, self.out = plan, out
        self.data: dict[str, Any] = {"check": "device_check", "dry_run": plan.dry_run}
        self.lock = threading.Lock()
        self.printed = False
        self.longest = 0.0  # the longest part so far, seconds
        self.current: str | None = None  # the part running

    def emit(self) -> None:
        with self.lock:
            if self.printed:
                return
            self.printed = True
            peaks = [p for p in _peaks(self.data) if p is not None]
            self.data["peak_gpu_memory_bytes"] = max(peaks) if peaks else None
            self.data["wall_s"] = round(time.monotonic() - START, 2)
            for _ in range(5):  # the main thread may be writing a part meanwhile
                try:
                    line = json.dumps(self.data, default=str)
                    break
                except RuntimeError:
                    time.sleep(0.05)
            else:
                line = json.dumps({"check": "device_check", "error": "report unreadable"})
            self.out.write(line + "\n")
            self.out.flush()

    def watchdog(self) -> None:
        """At the limit: print what was measured and exit 0 (the run is cut short)."""
        def fire() -> None:
            self.data["timed_out"] = (f"the {self.plan.limit_s:.0f} s limit was reached "
                                      f"during {self.current or 'setup'}")
            log(self.data["timed_out"])
            self.emit()
            os._exit(0)

        remaining = self.plan.limit_s - (time.monotonic() - START)
        timer = threading.Timer(max(remaining, 0.0), fire)
        timer.daemon = True
        timer.start()

    def part(self, where: dict[str, Any], key: str, label: str,
             measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run `measure` into `where[key]`, with its wall time and peak GPU memory, unless
        the time left is short; an error becomes its one-line string there."""
        left = self.plan.limit_s - (time.monotonic() - START)
        need = max(self.plan.floor_s, self.longest)
        if left < need:
            entry = {"skipped": f"time guard: {left:.0f} s left of {self.plan.limit_s:.0f} s; "
                                f"a part took up to {need:.0f} s"}
            log(f"{label}: skipped ({entry['skipped']})")
            where[key] = entry
            return entry
        log(f"{label} ...")
        self.current = label
        _reset_peak()
        start = time.monotonic()
        try:
            entry = {k: round(v, 4) if isinstance(v, float) else v
                     for k, v in measure().items()}
        except Exception as e:  # a broken part is a result: the next parts still run
            traceback.print_exc(file=sys.stderr)
            entry = {"error": one_line(e)}
        seconds = time.monotonic() - start
        self.longest = max(self.longest, seconds)
        entry["wall_s"] = round(seconds, 2)
        entry["peak_gpu_memory_bytes"] = _peak()
        where[key] = entry
        log(f"{label}: {json.dumps(entry, default=str)}")
        return entry


def _peaks(value: Any) -> Iterator[int | None]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "peak_gpu_memory_bytes":
                yield item
            else:
                yield from _peaks(item)


def _gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _reset_peak() -> None:
    import tensorflow as tf

    if _gpu_present():
        with contextlib.suppress(Exception):
            tf.config.experimental.reset_memory_stats("GPU:0")


def _peak() -> int | None:
    import tensorflow as tf

    if not _gpu_present():
        return None
    try:
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except Exception:
        return None


# --- setup -------------------------------------------------------------------------------


def load_script(name: str) -> ModuleType:
    """A module of scripts/ (not a package) by its file."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def device_info(dry_run: bool) -> dict[str, Any]:
    """The device the run measures, and the TensorFlow build's CUDA and cuDNN."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    build = tf.sysconfig.get_build_info()
    info: dict[str, Any] = {
        "kind": "GPU" if gpus else "CPU",
        "physical_devices": [f"{d.device_type}:{d.name}" for d in
                             tf.config.list_physical_devices()],
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "cpu_count": os.cpu_count(),
    }
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["name"] = details.get("device_name", gpus[0].name)
        info["details"] = {k: list(v) if isinstance(v, tuple) else v
                           for k, v in details.items()}
        info["gpu_count"] = len(gpus)
    else:
        info["name"] = _cpu_name()
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "CPU: " + line.split(":", 1)[1].strip()
    return "CPU: " + (platform.processor() or platform.machine())


def kernels() -> dict[str, Any]:
    """Which LSTM kernel training takes: Keras' cuDNN one (a GPU) or ours (the CPU)."""
    import keras

    from chatbot.model import fast_lstm

    layer = keras.layers.LSTM(8)
    cell = layer.cell
    try:
        from keras.src.backend.tensorflow.rnn import cudnn_ok

        cudnn = bool(cudnn_ok(cell.activation, cell.recurrent_activation, layer.unroll,
                              cell.use_bias))
    except Exception:  # a private function of Keras: may move
        cudnn = None
    return {"keras_cudnn_lstm": cudnn, "fast_lstm_applies": fast_lstm.applies(layer)}


def versions() -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, timeout=5, check=True).stdout.strip()
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "commit": commit}


def corpus(tmp: Path, subset: int | None) -> tuple[Path, dict[str, Any]]:
    """The chitchat corpus in a store under `tmp` (its first `subset` conversations)."""
    from chatbot.corpus.ingest import builtin_inputs, ingest
    from chatbot.corpus.store import CorpusStore
    from chatbot.corpus.types import ReadOptions

    files, fmt = builtin_inputs("chitchat")
    if subset is not None:
        data = json.loads(files[0].read_text(encoding="utf-8"))
        folder = tmp / "chitchat-subset"
        folder.mkdir()
        files = [folder / "dataset.json"]
        files[0].write_text(json.dumps(dict(itertools.islice(data.items(), subset))),
                            encoding="utf-8")
    db = tmp / "chitchat.db"
    with CorpusStore(db) as store:
        ingest(store, files, ReadOptions(), fmt)
        stats = store.stats()
    return db, {"name": "chitchat", "subset": subset,
                "conversations": stats["conversations"], "turns": stats["turns"]}


@contextlib.contextmanager
def tokenizer_fitted_once() -> Iterator[None]:
    """`fit_tokenizer` on a corpus store fits once per (kind, corpus, size) and then
    returns that tokenizer: every run here would fit the same one (seconds each)."""
    from chatbot.text import tokenizer as module

    original = module.fit_tokenizer
    fitted: dict[tuple, Any] = {}

    def fit(kind: str, texts: Any, vocab_size: int, **options: Any) -> Any:
        path = getattr(texts, "path", None)
        if path is None:
            return original(kind, texts, vocab_size, **options)
        key = (kind, str(Path(path).resolve()), vocab_size, tuple(sorted(options.items())))
        if key not in fitted:
            fitted[key] = original(kind, texts, vocab_size, **options)
        return fitted[key]

    module.fit_tokenizer = fit
    try:
        yield
    finally:
        module.fit_tokenizer = original


# --- the measurements -------------------------------------------------------------------


def train_ours(bench: ModuleType, db: Path, hidden: int, batch: int, steps: int,
               mixed: bool) -> dict[str, Any]:
    import keras

    try:
        result = bench.ours(db, steps, context=True, hidden=hidden, batch=batch,
                            strategy="default", mixed_precision=mixed)
    finally:
        if mixed:  # nothing after this run may inherit a float16 policy
            keras.mixed_precision.set_global_policy("float32")
    if not result.get("tokens_per_second"):
        raise RuntimeError("the run timed no step")
    if mixed:
        with contextlib.suppress(ImportError):  # the option's module: which policy it took
            from chatbot.train.precision import choose

            result["policy"] = choose(True).policy
    return result


def ratio(ours: dict[str, Any], baseline: dict[str, Any]) -> float | None:
    a, b = ours.get("tokens_per_second"), baseline.get("tokens_per_second")
    return round(a / b, 3) if a and b else None


def decode_speed(tokens: int, repeats: int) -> dict[str, Any]:
    """ms per generated token of the built-in model, batch 1, greedy and beam 5."""
    import numpy as np

    from chatbot.decode.search import Search
    from chatbot.decode.settings import DecodeSettings
    from chatbot.model import directory

    loaded = directory.load(directory.resolve(None))
    model, config = loaded.model, loaded.config
    source = np.random.default_rng(0).integers(4, config.vocab_size, size=12).tolist()
    state = [np.asarray(s) for s in model.zero_state(1)]
    greedy = DecodeSettings(min_len=tokens, max_len=tokens, no_repeat_ngram=0)
    methods = {"greedy": greedy, "beam5": greedy.replace(method="beam", beam_size=5)}
    search = Search(model)
    steps = tokens + 1  # the reply's tokens and its end token
    result: dict[str, Any] = {
        "model": f"built-in: {config.family} {config.cell}, vocab {config.vocab_size}, "
                 f"embedding {config.embedding_dim}, hidden {config.hidden_dim}",
        "batch": 1, "tokens": tokens, "repeats": repeats}
    for name, settings in methods.items():
        start = time.perf_counter()
        ids = search.run([source], state, settings)[0][0].ids  # traces
        result[f"{name}_first_call_s"] = round(time.perf_counter() - start, 3)
        if len(ids) != tokens:
            raise RuntimeError(f"{name} made {len(ids)} tokens, not {tokens}")
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            search.run([source], state, settings)
            times.append(time.perf_counter() - start)
        result[f"{name}_ms_per_token"] = statistics.median(times) * 1000 / steps
    return result


def measure(plan: Plan, report: Report) -> None:
    """Every part, in order of importance, into `report.data`."""
    data = report.data
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        start = time.monotonic()
        db, data["corpus"] = corpus(Path(tmp), plan.subset)
        data["corpus"]["wall_s"] = round(time.monotonic() - start, 2)
        bench = load_script("bench_train")
        train: dict[str, Any] = {}
        data["train"] = train
        with tokenizer_fitted_once():
            for name, shape in plan.sizes.items():
                if shape is None:
                    # Each run costs seconds of tracing, whatever its size: the dry run
                    # measures one size, through the same code.
                    train[name] = {"skipped": "dry run: the standard size only"}
                    continue
                hidden, batch, steps = shape
                size = train[name] = {"vocab": bench.VOCAB, "embedding": bench.EMBED,
                                      "hidden": hidden, "batch": batch, "steps": steps}
                report.part(size, "ours", f"train {name} ours",
                            partial(train_ours, bench, db, hidden, batch, steps, False))
                report.part(size, "baseline", f"train {name} baseline",
                            partial(bench.baseline, db, steps, hidden=hidden, batch=batch))
                size["ratio"] = ratio(size["ours"], size["baseline"])
            report.part(data, "decode", "decode",
                        partial(decode_speed, plan.decode_tokens, plan.decode_repeats))
            for name, shape in plan.sizes.items():
                if shape is None:
                    continue
                hidden, batch, steps = shape
                size = train[name]
                report.part(size, "ours_mixed_precision", f"train {name} ours mixed precision",
                            partial(train_ours, bench, db, hidden, batch, steps, True))
                size["ratio_mixed_precision"] = ratio(size["ours_mixed_precision"],
                                                      size["baseline"])
    report.current = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="the same run on the CPU, tiny sizes and steps (seconds)")
    parser.add_argument("--limit", type=float, default=None,
                        help="seconds before the watchdog prints what was measured and "
                             f"exits (default {GPU_PLAN.limit_s:.0f}; dry run "
                             f"{DRY_PLAN.limit_s:.0f})")
    args = parser.parse_args()
    plan = DRY_PLAN if args.cpu_dry_run else GPU_PLAN
    if args.limit is not None:
        plan = Plan(**{**plan.__dict__, "limit_s": args.limit})
    if plan.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # the CPU, even on a GPU machine
    # The JSON line alone on stdout: anything else printing there (TensorFlow's native
    # code included) goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    try:
        import chatbot  # noqa: F401  before TensorFlow: its own SQLite lacks FTS5

        tf = importlib.import_module("tensorflow")
    except Exception as e:
        print(f"device_check: cannot import the project or TensorFlow ({one_line(e)}); "
              "run `pip install -e .` first", file=sys.stderr)
        return 1
    if not plan.dry_run and not tf.config.list_physical_devices("GPU"):
        hint = ("" if tf.test.is_built_with_cuda() else " (this TensorFlow has no CUDA: "
                "pip uninstall -y tensorflow-cpu && pip install 'tensorflow[and-cuda]')")
        print(f"no GPU found; use --cpu-dry-run{hint}", file=sys.stderr)
        return 2

    report = Report(plan, out)
    report.watchdog()
    data = report.data
    try:
        data["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        data["device"] = device_info(plan.dry_run)
        data["versions"] = versions()
        data["kernels"] = kernels()
        data["limit_s"] = plan.limit_s
        log(f"device: {data['device']['name']}; TensorFlow {data['versions']['tensorflow']}, "
            f"Keras {data['versions']['keras']}; kernels {data['kernels']}")
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        print(f"device_check: setup failed: {one_line(e)}", file=sys.stderr)
        return 1
    try:
        measure(plan, report)
    except Exception as e:
        if "train" not in data:  # no measurement ran: the corpus or a script failed
            traceback.print_exc(file=sys.stderr)
            print(f"device_check: setup failed: {one_line(e)}", file=sys.stderr)
            return 1
        traceback.print_exc(file=sys.stderr)
        data["error"] = one_line(e)
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
