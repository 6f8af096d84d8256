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
from dataclasses import asdict
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from doctorsun.model.generate import Engine
from doctorsun.serve.batching import Batcher, Busy, Result
from doctorsun.serve.config import ServeConfig
from doctorsun.serve.fields import check_model, check_request_fields, prepare, read_json
from doctorsun.serve.messages import RequestError
from doctorsun.serve.openapi import chat_openapi, errors

log = logging.getLogger(__name__)

NOT_ADVICE = "Outputs of DoctorSun models are not medical advice."


def create_app(engine: Engine, config: ServeConfig, ui: bool = False):
    """The FastAPI app; with ``ui`` the Gradio web UI is mounted at ``/ui`` on the same server."""
    batcher = Batcher(engine, config.max_batch_size, config.batch_wait_ms, config.max_pending,
                      config.max_server_pixels)
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
        try:
            batcher.check_room()  # a full server decodes no images of a request it must refuse
            conversation, images, settings = await run_in_threadpool(prepare, body, engine, counter, config)
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
