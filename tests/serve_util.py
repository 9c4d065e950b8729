"""`chatbot serve` as a user runs it, for the tests: a real process on a free loopback port.

    with Served(model_dir, transcripts) as server:
        httpx.get(server.url + "v1/models")

The command is started with --port 0; its first stdout line names the URL. `wait_ready`
polls /health until the model is loaded. Leaving the block stops the server with SIGTERM
(as a service manager does) and keeps its exit status in `returncode`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHATBOT = [sys.executable, "-c", "from chatbot.cli import main; main()"]
URL_LINE = re.compile(r"Serving on (http://\S+)")


class Served:
    """A `chatbot serve` process."""

    def __init__(self, model_dir: Path | None, transcripts: Path, *args: str,
                 env: dict[str, str] | None = None, ready: bool = True) -> None:
        self.args = ["serve", "--port", "0", "--transcripts", str(transcripts)]
        if model_dir is not None:
            self.args += ["--model", str(model_dir)]
        self.args += list(args)
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.ready = ready
        self.stderr_path = transcripts.parent / f"serve-{time.monotonic_ns()}.err"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.returncode: int | None = None

    def start(self) -> Served:
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(CHATBOT + self.args, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=self.env,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = URL_LINE.search(line)
        if not match:
            self.proc.wait(30)
            raise AssertionError(f"no URL from chatbot serve: {line!r}\n{self.stderr()}")
        self.url = match.group(1)
        if self.ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"chatbot serve exited {self.proc.returncode}: "
                                     f"{self.stderr()}")
            try:
                with urllib.request.urlopen(self.url + "health", timeout=5) as r:
                    if json.load(r)["status"] == "ready":
                        return
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"chatbot serve not ready after {timeout} s: {self.stderr()}")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "health", timeout=10) as r:
            return json.load(r)

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.returncode = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()
        return self.returncode

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.returncode is None:
            self.stop()
