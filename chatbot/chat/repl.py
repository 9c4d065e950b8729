"""The terminal chat: a prompt_toolkit PromptSession around a ChatSession.

- History in a private file (data_dir()/chat_history), suggestions from it (→ takes
  one), completion of /commands and their arguments, a bottom toolbar (model,
  conversation, turn, decoding, last reply's time).
- Enter sends; Esc-Enter inserts a new line (pasted text keeps its lines, by bracketed
  paste); /multiline swaps the two for long input.
- Ctrl-C clears the line being typed; during a reply it stops waiting for it: the model
  works on a worker thread, so the chat returns to the prompt at once, and the abandoned
  reply is neither shown nor stored (the user's turn, already stored, stays).
- Ctrl-D on an empty line or /quit: goodbye, exit status 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.styles import Style

from chatbot.chat.commands import COMMANDS, Action, Frontend, Registry, describe
from chatbot.chat.session import ChatSession, Pending, Reply
from chatbot.files import create_private

STYLE = Style.from_dict({
    "you": "bold ansigreen",
    "bot": "bold ansicyan",
    "notice": "ansibrightblack",
    "error": "ansired",
    "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
    "bottom-toolbar.key": "bold",
})
YOU = "you> "
BOT = "bot> "


class CommandCompleter(Completer):
    """Completes /command names (with their help) and then their arguments."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def get_completions(self, document: Document, event: CompleteEvent
                        ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        if " " not in text:
            for command in self.registry:
                for word in command.words:
                    if ("/" + word).startswith(text.lower()):
                        yield Completion("/" + word, -len(text), display_meta=command.help)
            return
        head, *words = text.split(" ")
        command = self.registry.lookup(head)
        if command is None or command.complete is None:
            return
        current = words[-1]
        for choice in command.complete(words):
            if choice.startswith(current.lower()):
                yield Completion(choice, -len(current))


def private_history(path: Path) -> History:
    """A FileHistory whose file only its owner can read (it holds what was typed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)  # an existing one with a wider mode is narrowed
    except OSError:
        return InMemoryHistory()  # a read-only home: chat without a history file
    return FileHistory(str(path))


class Repl(Frontend):
    """The interactive chat. `loading` is the background model load, if any (the toolbar
    says so until it is done)."""

    interactive = True

    def __init__(self, chat: ChatSession, *, executor: ThreadPoolExecutor | None = None,
                 loading: Future[Any] | None = None, history: History | None = None,
                 input: Any = None, output: Any = None) -> None:
        super().__init__(chat)
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="chat-reply")
        self.loading = loading
        self.multiline = False
        self.last_reply: Reply | None = None
        self.session: PromptSession[str] = PromptSession(
            history=history or InMemoryHistory(),
            auto_suggest=AutoSuggestFromHistory(),
            completer=CommandCompleter(COMMANDS),
            complete_while_typing=True,
            bottom_toolbar=self.toolbar,
            key_bindings=self._bindings(),
            multiline=Condition(lambda: self.multiline),
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
            enable_open_in_editor=True,  # Ctrl-X Ctrl-E: write a long turn in $EDITOR
            refresh_interval=0.5,  # the toolbar follows the background load
            style=STYLE,
            input=input,
            output=output,
        )
        self.output = self.session.output

    def _bindings(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("escape", "enter", filter=Condition(lambda: not self.multiline))
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        return keys

    # Output

    def echo(self, fragments: list[tuple[str, str]]) -> None:
        """Print styled text above the prompt (the one place the chat writes)."""
        print_formatted_text(FormattedText(fragments), style=STYLE, output=self.output)

    def show_reply(self, reply: Reply) -> None:
        self.last_reply = reply
        self.echo([("class:bot", BOT), ("", reply.text.replace("\n", "\n" + " " * len(BOT)))])

    def notice(self, text: str) -> None:
        self.echo([("class:notice", text)])

    def error(self, text: str) -> None:
        self.echo([("class:error", text)])

    def show(self, lines: list[str]) -> None:
        self.echo([("", "\n".join(lines))])

    def toolbar(self) -> FormattedText:
        chat = self.chat
        conversation = chat.conversation_id if chat.conversation_id is not None else "new"
        parts = [("class:bottom-toolbar.key", f" {chat.model_name} "),
                 ("", f"│ conversation {conversation} │ turn {chat.turn_number} │ "
                      f"{describe(chat.settings)} ")]
        if self.loading is not None and not self.loading.done():
            parts.append(("", "│ loading the model… "))
        elif self.last_reply is not None:
            parts.append(("", f"│ last reply {self.last_reply.latency_ms} ms "))
        parts.append(("", "│ Esc-Enter sends " if self.multiline else "│ /help "))
        return FormattedText(parts)

    def toggle_multiline(self) -> bool:
        self.multiline = not self.multiline
        return self.multiline

    # Replies

    def make_reply(self, pending: Pending) -> Reply | None:
        """Run the reply on the worker thread; Ctrl-C abandons it (None)."""
        # The responder is fetched on the worker too: it may still be loading there.
        future = self.executor.submit(self.compute, pending)
        try:
            while True:
                # A short wait, again and again: the OS may hand Ctrl-C's SIGINT to any
                # thread (TensorFlow runs many), and then only a main thread that wakes
                # up to run Python sees it; one long wait would hold it till the reply.
                try:
                    made = future.result(timeout=0.1)
                    break
                except TimeoutError:
                    continue
        except KeyboardInterrupt:
            # Still queued (behind the model's load): it never runs. Running: the worker
            # finishes it unseen, since a compiled search cannot be stopped midway.
            future.cancel()
            self.notice("(reply stopped)")
            return None
        return self.chat.complete(pending, made)

    # The loop

    def run(self, greeting: Iterable[str] = ()) -> int:
        """Chat until Ctrl-D or /quit; the exit status."""
        for line in greeting:
            self.notice(line)
        try:
            while True:
                try:
                    text = self.session.prompt([("class:you", YOU)])
                except KeyboardInterrupt:
                    continue  # the half-typed line is dropped; the chat goes on
                except EOFError:
                    break
                if self.handle(text) is Action.QUIT:
                    break
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.notice("Goodbye.")
        return 0
