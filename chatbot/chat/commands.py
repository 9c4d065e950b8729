"""The /commands: one registry feeds dispatch, /help and completion.

Adding a command is one decorated function:

    @COMMANDS.command("retry", "a different reply to the last turn", aliases=("r",))
    def _retry(front: Frontend, args: str) -> Action | None: ...

Handlers talk to the user only through the `Frontend` they get, so the same command
works in the terminal (repl.py) and over a pipe (pipe.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from chatbot.chat.replies import Made
from chatbot.chat.session import SET_KEYS, ChatSession, ModelUnavailable, Pending, Reply
from chatbot.decode.settings import METHODS, RERANKS, DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.native_stderr import quiet_native_stderr
from chatbot.transcripts.store import RATINGS


class Action(Enum):
    """What the chat loop does after a line."""

    CONTINUE = "continue"
    QUIT = "quit"


Handler = Callable[["Frontend", str], "Action | None"]
Completions = Callable[[list[str]], list[str]]  # argument words so far -> the last's choices


@dataclass(frozen=True)
class Command:
    """A /command: its name, other names, what it does, and how it is called."""

    name: str
    help: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    usage: str = ""  # its arguments, e.g. "KEY VALUE"
    complete: Completions | None = None
    terminal_only: bool = False  # meaningless over a pipe (/multiline)

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class Registry:
    """The /commands in the order they are defined (the order /help lists them)."""

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._by_word: dict[str, Command] = {}

    def command(self, name: str, help: str, *, aliases: tuple[str, ...] = (),
                usage: str = "", complete: Completions | None = None,
                terminal_only: bool = False) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of /name."""

        def register(handler: Handler) -> Handler:
            command = Command(name, help, handler, aliases, usage, complete, terminal_only)
            for word in command.words:
                if word in self._by_word:
                    raise ValueError(f"/{word} is registered twice")
                self._by_word[word] = command
            self._commands.append(command)
            return handler

        return register

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands)

    def lookup(self, word: str) -> Command | None:
        """The command for "/word" or "word" (any case), or None."""
        return self._by_word.get(word.lstrip("/").lower())

    def dispatch(self, front: Frontend, line: str) -> Action:
        """Run the command a "/name args" line names."""
        word, _, args = line.strip().partition(" ")
        command = self.lookup(word)
        if command is None:
            raise ChatbotError(f"unknown command {word}; /help lists them (start a turn "
                               "with // to say something that begins with /)")
        if command.terminal_only and not front.interactive:
            raise ChatbotError(f"/{command.name} only works in a terminal")
        return command.handler(front, args.strip()) or Action.CONTINUE

    def help_lines(self, interactive: bool = True) -> list[str]:
        """One line per command: its names, arguments and help."""
        rows = []
        for c in self:
            if c.terminal_only and not interactive:
                continue
            names = ", ".join(f"/{w}" for w in c.words)
            rows.append((f"{names} {c.usage}".strip(), c.help))
        width = max(len(left) for left, _ in rows)
        return [f"  {left:<{width}}  {text}" for left, text in rows]


class Frontend:
    """What a command handler can do; repl.py and pipe.py implement the output side."""

    interactive = False  # a terminal (True) or a pipe

    def __init__(self, chat: ChatSession) -> None:
        self.chat = chat

    def show_reply(self, reply: Reply) -> None:
        raise NotImplementedError

    def notice(self, text: str) -> None:
        """A short status line (nothing a script reads)."""
        raise NotImplementedError

    def error(self, text: str) -> None:
        """A one-line problem; the chat goes on."""
        self.notice(text)

    def show(self, lines: list[str]) -> None:
        """A listing the user asked for (/help, /history, /settings)."""
        for line in lines:
            self.notice(line)

    def make_reply(self, pending: Pending) -> Reply | None:
        """Run a pending reply and commit it; None when it was stopped."""
        return self.chat.complete(pending, self.compute(pending))

    def compute(self, pending: Pending) -> Made:
        """The model's part of a reply, TensorFlow's native chatter kept off the screen
        (tracing a new search prints to the file descriptor directly)."""
        responder = self.chat.responder
        with quiet_native_stderr():
            return pending.run(responder)

    def toggle_multiline(self) -> bool:
        raise ChatbotError("multi-line input only works in a terminal")

    def handle(self, line: str) -> Action:
        """One line of input: a /command, or a turn to reply to ("//x" says "/x")."""
        text = line.strip()
        if not text:
            return Action.CONTINUE
        try:
            if text.startswith("/") and not text.startswith("//"):
                return COMMANDS.dispatch(self, text)
            reply = self.make_reply(self.chat.begin_reply(text[1:] if text[:2] == "//"
                                                          else text))
            if reply is not None:
                self.show_reply(reply)
        except ModelUnavailable:
            raise  # no model, no chat: the command line reports it and exits 1
        except ChatbotError as e:
            self.error(str(e))
        return Action.CONTINUE


COMMANDS = Registry()


def describe(settings: DecodeSettings) -> str:
    """The decode settings in a few words (the toolbar's and /set's summary)."""
    if settings.method == "beam":
        words = [f"beam {settings.beam_size}"]
    elif settings.method == "sample":
        words = [f"sample T={settings.temperature:g}"]
        if settings.top_k:
            words.append(f"top_k {settings.top_k}")
        if settings.top_p < 1:
            words.append(f"top_p {settings.top_p:g}")
        if settings.seed is not None:
            words.append(f"seed {settings.seed}")
    else:
        words = ["greedy"]
    if settings.antilm:
        words.append(f"antilm {settings.antilm:g}")
    if settings.rerank != "off":
        words.append(f"rerank {settings.rerank} of {settings.rerank_n} "
                     f"(lambda {settings.rerank_lambda:g})")
    return " ".join(words)


@COMMANDS.command("help", "list the commands and keys", aliases=("?",))
def _help(front: Frontend, args: str) -> None:
    lines = COMMANDS.help_lines(front.interactive)
    if front.interactive:
        lines += ["", "  Enter sends; Esc-Enter adds a new line (sends, in /multiline mode);",
                  "  Ctrl-C clears the line or stops a reply; Ctrl-D or /quit leaves;",
                  "  up/down or Ctrl-R search the input history; → takes a suggestion."]
    front.show(lines)


@COMMANDS.command("reset", "forget the context and start a new conversation",
                  aliases=("new",))
def _reset(front: Frontend, args: str) -> None:
    front.chat.reset()
    front.notice("new conversation: the context is forgotten")


@COMMANDS.command("history", "show this conversation's turns", aliases=("h",))
def _history(front: Frontend, args: str) -> None:
    rows = front.chat.history()
    if not rows:
        front.notice("no turns yet in this conversation")
        return
    lines = []
    for row in rows:
        speaker = "you" if row["role"] == "user" else "bot"
        extra = []
        if row["latency_ms"] is not None:
            extra.append(f"{row['latency_ms']} ms")
        if row["rating"]:
            extra.append(row["rating"])
        suffix = f"  ({', '.join(extra)})" if extra else ""
        text = row["text"].replace("\n", "\n     ")
        lines.append(f"{speaker}> {text}{suffix}")
    front.show(lines)


def _complete_set(words: list[str]) -> list[str]:
    if len(words) <= 1:
        return [*SET_KEYS, *(f.name for f in dataclasses.fields(DecodeSettings)
                             if f.name not in ("method", "beam_size", "temperature",
                                               "top_k", "top_p", "rerank"))]
    if words[0] in ("decode", "method") and len(words) == 2:
        return list(METHODS)
    if words[0] == "rerank" and len(words) == 2:
        return list(RERANKS)
    return []


@COMMANDS.command("set", "change a decode setting: decode greedy|beam|sample, beam N, "
                  "temperature X, top_k N, top_p X, rerank off|mmi|pmi", usage="KEY VALUE",
                  complete=_complete_set)
def _set(front: Frontend, args: str) -> None:
    key, _, value = args.partition(" ")
    if not key or not value.strip():
        raise ChatbotError(f"usage: /set KEY VALUE, KEY one of {', '.join(SET_KEYS)} "
                           "(/settings shows them all)")
    settings = front.chat.set(key, value)
    front.notice(f"decoding: {describe(settings)}")


@COMMANDS.command("settings", "show the decode settings")
def _settings(front: Frontend, args: str) -> None:
    settings = front.chat.settings
    default = DecodeSettings()
    width = max(len(f.name) for f in dataclasses.fields(settings))
    lines = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        changed = "" if value == getattr(default, f.name) else "  (changed)"
        lines.append(f"  {f.name:<{width}}  {'none' if value is None else value}{changed}")
    front.show(lines)


@COMMANDS.command("retry", "a different reply to your last turn (replaces the last reply)",
                  aliases=("r",))
def _retry(front: Frontend, args: str) -> None:
    reply = front.make_reply(front.chat.begin_retry())
    if reply is not None:
        front.show_reply(reply)


@COMMANDS.command("rate", "rate the last reply (stored with it)", usage="good|bad",
                  complete=lambda words: list(RATINGS) if len(words) <= 1 else [])
def _rate(front: Frontend, args: str) -> None:
    front.chat.rate(args)
    front.notice(f"rated the last reply {args.strip().lower()}")


@COMMANDS.command("multiline", "toggle multi-line input (Enter adds a line, Esc-Enter sends)",
                  aliases=("ml",), terminal_only=True)
def _multiline(front: Frontend, args: str) -> None:
    on = front.toggle_multiline()
    front.notice("multi-line input on: Enter adds a line, Esc-Enter sends" if on
                 else "multi-line input off: Enter sends")


@COMMANDS.command("quit", "leave the chat (Ctrl-D does too)", aliases=("exit", "q"))
def _quit(front: Frontend, args: str) -> Action:
    return Action.QUIT
