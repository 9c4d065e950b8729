"""Training curves: TensorBoard logs, a line-per-record history and a PNG of the curves.

    DIR/logs/train, DIR/logs/valid   TensorBoard event files (`tensorboard --logdir DIR/logs`)
    DIR/history.jsonl                one JSON record per logged step or validation
    DIR/curves.png                   train and validation perplexity against steps

The history is appended line by line: a kill leaves at worst a torn last line, which
reading skips. After a resume, steps repeat; the later record of a step wins.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from chatbot.files import write_atomic

HISTORY_FILE = "history.jsonl"
CURVES_FILE = "curves.png"
LOGS_DIR = "logs"


class TrainingLog:
    """Writes the curves of one model directory (a no-op on non-chief workers)."""

    def __init__(self, model_dir: Path, enabled: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.enabled = enabled
        self._writers: dict[str, Any] = {}

    def record(self, split: str, step: int, values: dict[str, float | None]) -> None:
        """Log `values` (e.g. loss, perplexity, tokens_per_second) for `split` at `step`."""
        if not self.enabled:
            return
        import tensorflow as tf

        clean = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}
        writer = self._writers.get(split)
        if writer is None:
            writer = tf.summary.create_file_writer(str(self.model_dir / LOGS_DIR / split))
            self._writers[split] = writer
        with writer.as_default():
            for name, value in clean.items():
                tf.summary.scalar(name, value, step=step)
        with open(self.model_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"split": split, "step": step, **clean}) + "\n")

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writers (their files); a later record opens
        new ones."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.close()

    def plot(self) -> Path | None:
        """Write DIR/curves.png from the history; None when there is nothing to plot."""
        if not self.enabled:
            return None
        self.flush()
        series = read_history(self.model_dir)
        if not series:
            return None
        path = self.model_dir / CURVES_FILE
        write_atomic(path, curves_png(series, title=self.model_dir.name))
        return path


def read_history(model_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Perplexity per split as sorted (step, value) pairs; torn or foreign lines skipped."""
    by_step: dict[str, dict[int, float]] = {}
    path = Path(model_dir) / HISTORY_FILE
    if not path.exists():
        return {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            split, step, value = record["split"], int(record["step"]), record["perplexity"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        by_step.setdefault(split, {})[step] = float(value)
    return {split: sorted(points.items()) for split, points in by_step.items()}


def curves_png(series: dict[str, list[tuple[int, float]]], title: str = "") -> bytes:
    """A PNG of perplexity against steps, one line per split, log scale."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and none is opened
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    for split, points in sorted(series.items()):
        steps, values = zip(*points, strict=True)
        axes.plot(steps, values, marker="o" if len(points) < 30 else None,
                  markersize=3, label=split)
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("perplexity per target token")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
