"""scripts/device_check.sh --cpu-dry-run: the GPU check's whole run, tiny, on the CPU.

One run (about a minute on 2 cores) checks the wrapper, the one JSON line on stdout and
every figure the GPU run reports, so the script works when a GPU is borrowed for minutes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def positive(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def test_cpu_dry_run_prints_one_json_line_of_positive_figures():
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh"), "--cpu-dry-run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout[-3000:]
    report = json.loads(lines[0])

    assert report["dry_run"] is True
    assert "timed_out" not in report and "error" not in report, report
    assert report["device"]["kind"] == "CPU" and report["device"]["name"].startswith("CPU")
    assert report["peak_gpu_memory_bytes"] is None
    assert report["kernels"]["fast_lstm_applies"] is True  # ours on the CPU, not cuDNN
    assert report["versions"]["tensorflow"] and report["versions"]["keras"]
    assert report["date"][:2] == "20"
    assert positive(report["wall_s"]) and report["wall_s"] < report["limit_s"]
    assert report["corpus"]["name"] == "chitchat" and positive(report["corpus"]["turns"])

    standard = report["train"]["standard"]
    assert standard["vocab"] == 8000 and standard["embedding"] == 256
    for run in ("ours", "baseline", "ours_mixed_precision"):
        if run == "ours_mixed_precision" and "error" in standard[run]:
            # The script's contract: a failing mixed-precision run is recorded, not fatal
            # (its own tests are the training tests').
            assert isinstance(standard[run]["error"], str)
            assert standard["ratio_mixed_precision"] is None
        else:
            assert positive(standard[run].get("tokens_per_second")), (run, standard[run])
        assert positive(standard[run]["wall_s"])
        assert standard[run]["peak_gpu_memory_bytes"] is None
    assert positive(standard["ratio"])
    assert "skipped" in report["train"]["large"]  # the GPU run's second size

    decode = report["decode"]
    for figure in ("greedy_ms_per_token", "beam5_ms_per_token", "wall_s"):
        assert positive(decode[figure]), (figure, decode)
    assert decode["batch"] == 1
