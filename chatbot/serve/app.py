"""The HTTP face of the service: a Starlette app over `Service`.

Routes: the OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`, the
native conversations under `/api/conversations`, the web page at `/` (static files
shipped in the package), and `GET /health`. Every error a client sees is OpenAI's error
object with its status; a failure of ours is logged here with its traceback and answered
as a plain 500 (no traceback or path ever reaches a client).
"""

from __future__ import annotations

import hmac
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chatbot.serve import openai_api
from chatbot.serve.openai_api import ApiError
from chatbot.serve.service import Exchange, Service


@dataclass
class ServeOptions:
    """How the app answers: the served model's id, the key, the limits."""

    model_id: str
    api_key: str | None = None
    max_body: int = 1 << 20  # bytes
    max_messages: int = 256
    cors: tuple[str, ...] = ()


class Loading:
    """The service once the model is loaded; until then requests get 503."""

    def __init__(self) -> None:
        self.service: Service | None = None
        self.error: str | None = None
        self.created = 0

    def get(self) -> Service:
        if self.service is not None:
            return self.service
        if self.error is not None:  # the detail (a path) is in the server's log
            raise ApiError(503, "the model could not be loaded; the server is stopping",
                           kind="server_error", code="model_unavailable")
        raise ApiError(503, "the model is still loading; try again in a few seconds",
                       kind="server_error", code="model_loading", headers={"Retry-After": "2"})


def create_app(loading: Loading, options: ServeOptions,
               lifespan: Callable[[Starlette], Any] | None = None) -> Starlette:
    """The ASGI app; `loading.service` is set once the model is ready."""

    def authorized(request: Request) -> None:
        if options.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # Constant time: the comparison must not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), options.api_key.encode()):
            raise ApiError(401, "a valid API key is required: send Authorization: Bearer KEY",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def body_of(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > options.max_body:
            raise _too_large(options.max_body)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > options.max_body:
                raise _too_large(options.max_body)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}", code="invalid_json") from None

    def guarded(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        """Key check, then the handler; errors become OpenAI error objects."""

        async def endpoint(request: Request) -> Response:
            try:
                authorized(request)
                return await handler(request)
            except ApiError as e:
                return error_response(e)
            except Exception as e:
                return await internal_error(request, e)

        return endpoint

    # OpenAI-compatible

    async def chat_completions(request: Request) -> Response:
        body = await body_of(request)
        service = loading.get()
        parsed = openai_api.parse_completion(body, options.model_id, service.settings,
                                             options.max_messages)
        exchange = await service.complete(parsed)
        texts = [(c.text, c.truncated) for c in exchange.made.choices]
        ident = f"chatcmpl-{exchange.conversation_id}-{exchange.reply_turn_ids[0]}"
        usage = openai_api.usage(service.prompt_tokens(parsed.turns),
                                 sum(c.tokens for c in exchange.made.choices))
        if parsed.stream:
            events = openai_api.stream_events(ident, options.model_id, texts,
                                              usage if parsed.include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return JSONResponse(openai_api.completion(ident, options.model_id, texts,
                                                  usage["prompt_tokens"],
                                                  usage["completion_tokens"]))

    async def list_models(request: Request) -> Response:
        return JSONResponse(openai_api.models(options.model_id, loading.created))

    # Native conversations

    def conversation_id(request: Request) -> int:
        text = request.path_params["conversation_id"]
        if not text.isdigit():
            raise ApiError(404, f"no conversation {text}", code="conversation_not_found")
        return int(text)

    async def optional_body(request: Request) -> dict[str, Any]:
        raw = await body_of(request) if await _has_body(request) else {}
        if not isinstance(raw, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return raw

    async def create_conversation(request: Request) -> Response:
        body = await optional_body(request)
        return JSONResponse(await loading.get().create(body.get("origin", "api")),
                            status_code=201)

    async def get_conversation(request: Request) -> Response:
        return JSONResponse(await loading.get().get(conversation_id(request)))

    async def delete_conversation(request: Request) -> Response:
        await loading.get().delete(conversation_id(request))
        return Response(status_code=204)

    async def post_message(request: Request) -> Response:
        ident = conversation_id(request)
        body = await optional_body(request)
        text = body.get("text")
        if not isinstance(text, str):
            raise ApiError(400, "text is required: the user's message as a string", param="text")
        exchange = await loading.get().message(ident, text)
        return JSONResponse(await native_reply(exchange))

    async def native_reply(exchange: Exchange) -> dict[str, Any]:
        service = loading.get()
        return {"conversation_id": exchange.conversation_id,
                "user_turn": await service.turn(exchange.user_turn_id),
                "reply": await service.turn(exchange.reply_turn_ids[0])}

    async def reset_conversation(request: Request) -> Response:
        return JSONResponse(await loading.get().reset(conversation_id(request)))

    async def rate_conversation(request: Request) -> Response:
        ident = conversation_id(request)
        body = await optional_body(request)
        if "rating" not in body:
            raise ApiError(400, "rating is required: good, bad or null", param="rating")
        return JSONResponse(await loading.get().rate(ident, body["rating"],
                                                     body.get("turn_id")))

    # The page and health

    static = resources.files("chatbot.serve") / "static"

    async def page(request: Request) -> Response:
        return FileResponse(Path(str(static / "index.html")), media_type="text/html")

    async def health(request: Request) -> Response:
        service = loading.service
        state = "ready" if service else ("failed" if loading.error else "loading")
        body: dict[str, Any] = {"status": state, "model": options.model_id}
        if service is not None:  # counts only: what the batching and the cache achieve
            cache = service.engine.cache
            body.update(replies=service.replies,
                        batches=service.engine.batcher.stats.as_dict(),
                        cache={"states": len(cache), "hits": cache.hits,
                               "misses": cache.misses})
        return JSONResponse(body, status_code=200 if state == "ready" else 503)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"no such route: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}
        return error_response(ApiError(exc.status_code,
                                       message.get(exc.status_code, str(exc.detail)),
                                       code="not_found" if exc.status_code == 404 else None))

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Ours, not the client's: the traceback goes to the server's log only.
        print(f"error answering {request.method} {request.url.path}:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        return error_response(ApiError(500, "internal error: the server could not answer; "
                                       "its log says why", kind="server_error"))

    api = [
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/models", guarded(list_models), methods=["GET"]),
        Route("/api/conversations", guarded(create_conversation), methods=["POST"]),
        Route("/api/conversations/{conversation_id}", guarded(get_conversation),
              methods=["GET"]),
        Route("/api/conversations/{conversation_id}", guarded(delete_conversation),
              methods=["DELETE"]),
        Route("/api/conversations/{conversation_id}/messages", guarded(post_message),
              methods=["POST"]),
        Route("/api/conversations/{conversation_id}/reset", guarded(reset_conversation),
              methods=["POST"]),
        Route("/api/conversations/{conversation_id}/rate", guarded(rate_conversation),
              methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/", page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    middleware = []
    if options.cors:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(options.cors),
                                     allow_methods=["GET", "POST", "DELETE"],
                                     allow_headers=["Authorization", "Content-Type"]))
    return Starlette(routes=api, middleware=middleware, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: internal_error})


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is over this server's limit of {limit} bytes",
                    code="request_too_large")


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "")
