"""An OpenAI-compatible HTTP API over one model (FastAPI): ``/v1/models``, ``/v1/chat/completions``
(streamed as server-sent events or not) and ``/health``.

Follows the OpenAI chat completions reference (https://platform.openai.com/docs/api-reference/chat):
request fields ``model, messages, max_tokens | max_completion_tokens, temperature, top_p, stop, seed,
stream, stream_options.include_usage``; errors as ``{"error": {"message", "type", "param", "code"}}``.
Decoding is greedy unless a temperature is given, so the same request gets the same answer.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from doctorsun.errors import DoctorSunError
from doctorsun.model.generate import MAX_STOP_CHARS, MAX_STOPS, Engine, GenerationSettings
from doctorsun.serve.batching import Batcher, Busy, Result
from doctorsun.serve.messages import RequestError, check_context, to_conversation
from doctorsun.serve.openapi import chat_openapi, errors

log = logging.getLogger(__name__)

NOT_ADVICE = "Outputs of DoctorSun models are not medical advice."


@dataclass
class ServeConfig:
    """What the server serves and the limits it enforces."""

    model_name: str = "doctorsun"
    """Model id clients send in ``model`` (``GET /v1/models`` lists it); other names get a 404."""
    api_key: str | None = None
    """When set, ``/v1/*`` requires ``Authorization: Bearer <api_key>`` (and the web UI asks for it)."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest accepted request body (images travel base64 inside it); larger gets a 413."""
    max_image_pixels: int = 25_000_000
    """Largest accepted image (width x height of one frame)."""
    max_images: int = 8
    """Most images in one request."""
    max_tokens_limit: int = 2048
    """Largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = 512
    """``max_tokens`` when a request gives none (and for the web UI)."""
    max_batch_size: int = 8
    """Most requests answered by one batched generation."""
    batch_wait_ms: float = 10.0
    """How long the batcher keeps collecting after the first request of a batch."""
    max_pending: int = 64
    """Most requests waiting or being answered at once; one more gets a 429 with ``Retry-After``."""
    max_request_pixels: int = 50_000_000
    """Most decoded pixels of all the images of one request together."""
    body_timeout_s: float = 60.0
    """A request body that has not arrived whole by then gets a 408 (a slow sender holds no worker)."""

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_image_pixels",
            "max_images",
            "max_tokens_limit",
            "default_max_tokens",
            "max_batch_size",
            "max_pending",
            "max_request_pixels",
        ):
            if getattr(self, name) < 1:
                raise DoctorSunError(f"serve {name} must be >= 1, not {getattr(self, name)}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise DoctorSunError(
                f"default_max_tokens {self.default_max_tokens} is over max_tokens_limit "
                f"{self.max_tokens_limit}"
            )
        if self.batch_wait_ms < 0:
            raise DoctorSunError(f"batch_wait_ms must be >= 0, not {self.batch_wait_ms}")
        if self.api_key is not None and not self.api_key.strip():
            raise DoctorSunError("api_key must not be empty")


def create_app(engine: Engine, config: ServeConfig, ui: bool = False):
    """The FastAPI app; with ``ui`` the Gradio web UI is mounted at ``/ui`` on the same server."""
    batcher = Batcher(engine, config.max_batch_size, config.batch_wait_ms, config.max_pending)
    # Prompt lengths are counted in request threads while the batcher's thread generates: a fast
    # tokenizer must not be used from two threads at once, so counting gets its own copy.
    counter = copy.deepcopy(engine.tokenizer)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="DoctorSun", description=f"OpenAI-compatible API. {NOT_ADVICE}", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.config = config
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)

    install_error_handlers(app)

    def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), config.api_key.encode()
        ):
            raise RequestError(
                "invalid or missing API key (send Authorization: Bearer KEY)",
                status=401,
                code="invalid_api_key",
            )

    def model_card() -> dict[str, Any]:
        return {
            "id": config.model_name,
            "object": "model",
            "created": int(app.state.started),
            "owned_by": "doctorsun",
        }

    app.state.started = time.time()

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, "batching": asdict(batcher.stats)}

    @app.get("/v1/models", dependencies=[Depends(authorize)], responses=errors("401"))
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(authorize)], responses=errors("400", "401", "404"))
    async def get_model(model_id: str):
        check_model(model_id, config)
        return model_card()

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)],
              **chat_openapi(config.max_tokens_limit, config.max_images))
    async def chat_completions(request: Request):
        body = await read_json(request)
        check_model(body.get("model"), config)
        stream, include_usage = check_request_fields(body)
        conversation, images, settings = await run_in_threadpool(prepare, body, engine, counter, config)
        try:
            job = batcher.submit(conversation, images, settings)
        except Busy as exc:
            raise RequestError(f"the server is busy ({exc}); retry shortly", code="server_busy", status=429,
                               headers={"Retry-After": "1"}) from None
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": config.model_name}
        if stream:
            return StreamingResponse(
                sse(batcher, job, meta, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        result = await result_unless_gone(batcher, job, request)
        return {
            **meta,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": usage(result),
        }

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/ui/" if ui else "/docs")

    if ui:
        from doctorsun.serve.ui import mount_ui

        mount_ui(app, batcher, config)
    return app


async def result_unless_gone(batcher: Batcher, job, request: Request, poll_s: float = 0.25) -> Result:
    """The job's result; when the client hangs up first, the job is given up (its batch stops at the next
    token once no one is waiting for any of it) and its slot freed."""
    task = asyncio.ensure_future(batcher.result(job))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise RequestError("the client closed the connection", code="client_closed", status=499)
    finally:
        if not task.done():
            task.cancel()
        job.cancelled = True
        batcher.release(job)


def install_error_handlers(app: FastAPI) -> None:
    """Every error answers in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    @app.exception_handler(RequestError)
    async def _request_error(_request, exc: RequestError):
        return error_response(exc.status, str(exc), param=exc.param, code=exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        return error_response(
            400,
            f"{param or 'request'}: {first.get('msg', 'invalid request')}",
            param=param,
            code="invalid_request",
        )

    @app.exception_handler(HTTPException)
    async def _http_error(_request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _server_error(_request, exc: Exception):
        log.error("request failed: %s", exc, exc_info=exc)
        return error_response(500, "the server failed to answer this request", type_="server_error")


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON ({exc})", code="invalid_json") from None
    except RecursionError:
        raise RequestError("the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    return body


def check_model(name: Any, config: ServeConfig) -> None:
    if not isinstance(name, str) or not name:
        raise RequestError("model is required", param="model")
    if name != config.model_name:
        raise RequestError(
            f"model {name!r} not found; this server serves {config.model_name!r}",
            param="model",
            code="model_not_found",
            status=404,
        )


def prepare(body: dict[str, Any], engine: Engine, tokenizer, config: ServeConfig):
    """Check a request's fields and read its images (in a worker thread: decoding is CPU work)."""
    settings = settings_from(body, config)
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RequestError("messages must be a list of message objects", param="messages")
    conversation, images = to_conversation(messages, config.max_images, config.max_image_pixels,
                                           config.max_request_pixels)
    check_context(engine, tokenizer, conversation, len(images), settings.max_new_tokens)
    return conversation, images, settings


UNSUPPORTED = {
    "tools": None, "tool_choice": None, "functions": None, "function_call": None, "parallel_tool_calls": None,
    "logprobs": False, "top_logprobs": None, "logit_bias": None, "response_format": {"type": "text"},
    "presence_penalty": 0, "frequency_penalty": 0, "audio": None, "modalities": ["text"], "prediction": None,
}
"""OpenAI request fields this server does not implement -> the one value (besides absent) that asks for
nothing; anything else gets a 400 naming the field instead of a silently different answer."""


def check_request_fields(body: dict[str, Any]) -> tuple[bool, bool]:
    """Refuse unsupported features and wrongly typed switches; returns ``(stream, include_usage)``."""
    for name, neutral in UNSUPPORTED.items():
        if name in body and body[name] is not None and body[name] != neutral:
            raise RequestError(f"{name} is not supported by this server", param=name, code="unsupported_parameter")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream must be true or false", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("stream_options must be an object", param="stream_options")
    include_usage = (options or {}).get("include_usage", False)
    if include_usage is not None and not isinstance(include_usage, bool):
        raise RequestError("stream_options.include_usage must be true or false", param="stream_options.include_usage")
    return bool(stream), bool(include_usage)


def settings_from(body: dict[str, Any], config: ServeConfig) -> GenerationSettings:
    n = body.get("n", 1)
    if n not in (1, None):
        raise RequestError("only n=1 is supported", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if max_tokens is None:
        max_tokens = config.default_max_tokens
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestError(f"{param} must be a positive integer", param=param)
    if max_tokens > config.max_tokens_limit:
        raise RequestError(
            f"{param} {max_tokens} is over this server's limit of {config.max_tokens_limit}",
            param=param,
            code="max_tokens_too_large",
        )
    temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise RequestError("top_p must be in (0, 1]", param="top_p")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if (not isinstance(stop, list) or len(stop) > MAX_STOPS
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stop)):
        raise RequestError(f"stop must be a string or a list of up to {MAX_STOPS} non-empty strings of at most "
                           f"{MAX_STOP_CHARS} characters", param="stop")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise RequestError("seed must be an integer in [0, 2^63)", param="seed")
    return GenerationSettings(
        max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop, seed=seed or 0
    )


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise RequestError(f"{name} must be a number in [{lo:g}, {hi:g}]", param=name)
    return float(value)


def usage(result: Result) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def sse(batcher: Batcher, job, meta: dict[str, Any], include_usage: bool):
    """Server-sent events as OpenAI streams them: role, content deltas, finish reason, [usage], [DONE]."""

    def event(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return event(
            {
                **meta,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for item in batcher.stream(job):
            if isinstance(item, Result):
                yield chunk({}, item.finish_reason)
                if include_usage:
                    yield event(
                        {**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage(item)}
                    )
            else:
                yield chunk({"content": item})
    except Exception as exc:  # headers are gone already: report in-band, as OpenAI does
        log.error("streamed generation failed: %s", exc, exc_info=exc)
        yield event(error_body("the server failed to answer this request", "server_error"))
    yield "data: [DONE]\n\n"


def error_body(
    message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
):
    if type_ is None:
        type_ = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error"}.get(
            status, "invalid_request_error" if status < 500 else "server_error"
        )
    if code is None:
        code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                413: "request_too_large"}.get(status)
    return JSONResponse(error_body(message, type_, param, code), status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` gets a 413 before it is read (by its Content-Length)
    or as soon as it crosses the limit (chunked uploads); a body still arriving after ``timeout_s``
    gets a 408."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 60.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body is over this server's limit of {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, message)
            return await response(scope, receive, send)
        seen = 0
        deadline = time.monotonic() + self.timeout_s

        async def limited_receive():
            nonlocal seen
            try:
                event = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.timeout_s:g} s") from None
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited_receive, send)
