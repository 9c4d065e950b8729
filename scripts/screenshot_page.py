"""Screenshot of the web chat page in a real conversation: docs/serve-page.png.

Starts `chatbot serve` on a free port (the built-in model unless --model is given, a
throwaway transcripts file), opens the page in headless Chromium (Debian's, driven by
Playwright) at a phone's size, says a few things, rates a reply, and saves the picture.

Usage: python scripts/screenshot_page.py [--model DIR] [--output docs/serve-page.png]
       [--width 390] [--height 760] [--dark] [MESSAGE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = ["hi! how are you today?", "what do you like to do on weekends?",
            "do you like movies?"]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def start_server(model: str | None, transcripts: Path) -> tuple[subprocess.Popen[str], str]:
    """`chatbot serve` on a free port; returns it and its URL once the model is loaded."""
    command = [sys.executable, "-m", "chatbot", "serve", "--port", "0",
               "--transcripts", str(transcripts)]
    if model:
        command += ["--model", model]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("CHATBOT_API_KEY", None)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    match = re.search(r"Serving on (http://\S+)", server.stdout.readline())
    if not match:
        server.wait(30)
        sys.exit("chatbot serve printed no URL")
    url = match.group(1)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"chatbot serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url + "health", timeout=5) as response:
                if json.load(response)["status"] == "ready":
                    return server, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    server.terminate()
    sys.exit("the model did not load in 5 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the built-in model)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "serve-page.png")
    parser.add_argument("--width", type=int, default=390)
    parser.add_argument("--height", type=int, default=760)
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    parser.add_argument("messages", nargs="*", default=MESSAGES)
    args = parser.parse_args()

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("no Chromium (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        server, url = start_server(args.model, Path(scratch) / "transcripts.db")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                     args=BROWSER_ARGS)
                page = browser.new_page(
                    viewport={"width": args.width, "height": args.height},
                    device_scale_factor=2, color_scheme="dark" if args.dark else "light")
                page.goto(url)
                for number, text in enumerate(args.messages, 1):
                    page.locator("#input").fill(text)
                    page.locator("#input").press("Enter")
                    page.locator("#log li.msg.bot").nth(number - 1).wait_for(timeout=60_000)
                page.locator("#log li.msg.bot").first.get_by_role(
                    "button", name="Good reply").click()
                page.locator("#log li.msg.bot button.good[aria-pressed=true]").wait_for()
                page.locator("#input").fill("and what is your favourite one?")
                page.evaluate("document.activeElement.blur()")
                args.output.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.output))
                browser.close()
        finally:
            server.terminate()
            server.wait(60)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
