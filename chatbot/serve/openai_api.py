"""OpenAI's chat-completions format: requests checked into our terms, replies written in it.

Only what a seq2seq chatbot can honour is taken from a request: the conversation
(system and developer messages are accepted and left out: the model has no notion of
instructions), max_tokens, temperature, top_p, n, seed and stream. Any other field is
ignored, as OpenAI-compatible servers do, except tools, which this model cannot call.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chatbot.decode.settings import DecodeSettings
from chatbot.errors import ChatbotError

MAX_N = 16
MAX_TOKENS = 512
ROLES = {"user": "user", "assistant": "bot"}
IGNORED_ROLES = ("system", "developer")


class ApiError(Exception):
    """An error answered as OpenAI's error object with an HTTP status."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


@dataclass(frozen=True)
class CompletionRequest:
    """A chat-completions request in our terms."""

    turns: tuple[tuple[str, str], ...]  # (role "user"|"bot", text), the user's last
    settings: DecodeSettings
    n: int
    stream: bool
    include_usage: bool


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _number(body: Mapping[str, Any], name: str, low: float, high: float,
            integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad(f"{name} must be {'an integer' if integer else 'a number'}, not "
                   f"{json.dumps(value)[:40]}", name)
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}, not {value}", name)
    return value


def _content(message: Mapping[str, Any], index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: text only
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(
                    part.get("text"), str):
                raise _bad(f"messages[{index}].content: only text parts are supported",
                           f"messages[{index}].content")
            texts.append(part["text"])
        return "\n".join(texts)
    if content is None and message.get("role") == "assistant":
        raise _bad(f"messages[{index}]: an assistant message needs its text content",
                   f"messages[{index}].content")
    raise _bad(f"messages[{index}].content must be a string or a list of text parts",
               f"messages[{index}].content")


def parse_completion(body: Any, model_id: str, base: DecodeSettings,
                     max_messages: int) -> CompletionRequest:
    """Check a request body; ApiError (400 or 404) naming the first problem."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required: the id GET /v1/models lists", "model")
    if model != model_id:
        raise ApiError(404, f"the model {model!r} does not exist; this server has "
                       f"{model_id!r}", code="model_not_found", param="model")
    if body.get("tools") or body.get("functions"):
        raise _bad("this model cannot call tools or functions", "tools")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    if len(messages) > max_messages:
        raise _bad(f"too many messages: {len(messages)}, this server takes at most "
                   f"{max_messages}", "messages", "too_many_messages")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object", f"messages[{i}]")
        role = message.get("role")
        if role in IGNORED_ROLES:
            _content(message, i)
            continue
        if role not in ROLES:
            raise _bad(f"messages[{i}].role must be user, assistant or system, not "
                       f"{json.dumps(role)[:40]}", f"messages[{i}].role")
        turns.append((ROLES[role], _content(message, i).strip()))
    if not turns or turns[-1][0] != "user":
        raise _bad("the last message must be the user's: it is what the bot answers",
                   "messages", "no_user_message")
    if not turns[-1][1]:
        raise _bad("the last user message is empty", "messages")
    n = _number(body, "n", 1, MAX_N, integer=True) or 1
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("stream_options must be an object", "stream_options")
    return CompletionRequest(tuple(turns), settings_for(body, base), n, stream,
                             bool(options.get("include_usage")))


def settings_for(body: Mapping[str, Any], base: DecodeSettings) -> DecodeSettings:
    """The server's settings with the request's: a temperature above 0 or a top_p below 1
    samples, temperature 0 takes the likeliest reply."""
    changes: dict[str, Any] = {}
    limit = _number(body, "max_completion_tokens", 1, MAX_TOKENS, integer=True)
    limit = limit or _number(body, "max_tokens", 1, MAX_TOKENS, integer=True)
    if limit is not None:
        changes["max_len"] = limit
        changes["min_len"] = min(base.min_len, limit)
    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 0, 1)
    if top_p is not None and top_p <= 0:
        raise _bad("top_p must be above 0", "top_p")
    seed = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    if temperature == 0:
        changes["method"] = "greedy" if base.method == "sample" else base.method
    elif temperature is not None or (top_p is not None and top_p < 1):
        changes["method"] = "sample"
        if temperature is not None:
            changes["temperature"] = float(temperature)
        if top_p is not None:
            changes["top_p"] = float(top_p)
    if seed is not None:
        changes["seed"] = seed % 2**63
    try:
        return base.replace(**changes)
    except ChatbotError as e:
        raise _bad(str(e)) from None


# Replies


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(ident: str, model_id: str, texts: list[tuple[str, bool]],
               prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The response body: one choice per (text, truncated)."""
    return {
        "id": ident, "object": "chat.completion", "created": int(time.time()),
        "model": model_id, "system_fingerprint": None,
        "choices": [{"index": i, "message": {"role": "assistant", "content": text,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": "length" if cut else "stop"}
                    for i, (text, cut) in enumerate(texts)],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def pieces(text: str) -> list[str]:
    """A reply cut into the word-sized pieces a stream sends (they join to the text)."""
    return re.findall(r"\s*\S+", text) or [text]


def stream_events(ident: str, model_id: str, texts: list[tuple[str, bool]],
                  usage_of: dict[str, int] | None) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created,
                "model": model_id, "system_fingerprint": None, "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    for i, (text, cut) in enumerate(texts):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                      "logprobs": None, "finish_reason": None}])
        for piece in pieces(text):
            yield chunk([{"index": i, "delta": {"content": piece}, "logprobs": None,
                          "finish_reason": None}])
        yield chunk([{"index": i, "delta": {}, "logprobs": None,
                      "finish_reason": "length" if cut else "stop"}])
    if usage_of is not None:
        yield chunk([], usage=usage_of)
    yield "data: [DONE]\n\n"


def models(model_id: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                        "owned_by": "chatbot"}]}
