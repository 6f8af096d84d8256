"""The fields of an OpenAI chat completion request, checked before any work: the body is JSON of bounded
nesting, the model is this server's, every field has its type and range, and features the server does
not implement are refused by name instead of silently ignored."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import Request

from doctorsun.model.generate import MAX_STOP_CHARS, MAX_STOPS, GenerationSettings, valid_stops
from doctorsun.serve.config import ServeConfig
from doctorsun.serve.messages import RequestError, check_context, to_conversation

if TYPE_CHECKING:
    from doctorsun.model.generate import Engine


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
    if not isinstance(stop, list) or not valid_stops(stop):
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
