"""The request and answers of ``POST /v1/chat/completions`` as JSON Schema, for the OpenAPI document:
the limits a request must keep and every error answer the server gives, so clients and fuzzers
(schemathesis) know them. The handler enforces the same rules itself, field by field."""

from __future__ import annotations

from typing import Any

from doctorsun.model.generate import MAX_STOP_CHARS, MAX_STOPS

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
    }},
}
ERRORS = {
    "400": "a field is missing, of the wrong type or out of range; `param` names it",
    "401": "no or a wrong API key",
    "404": "the model is not the one this server serves",
    "408": "the request body did not arrive in time",
    "413": "the request body is over the server's limit",
    "429": "the server is busy; retry after `Retry-After` seconds",
}
_STOP = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["text", "image_url"]},
        "text": {"type": "string"},
        "image_url": {"type": "object", "required": ["url"], "properties": {"url": {
            "type": "string", "description": "a data: URL (base64 PNG, JPEG, WebP or application/dicom)"}}},
    },
}


def errors(*codes: str) -> dict[str, Any]:
    """``responses`` entries for the error answers a route gives."""
    return {code: {"description": ERRORS[code], "content": {"application/json": {"schema": ERROR}}} for code in codes}


def chat_request(max_tokens_limit: int, max_images: int) -> dict[str, Any]:
    """The body of a chat completion request, with this server's limits."""
    tokens = {"type": "integer", "minimum": 1, "maximum": max_tokens_limit}
    return {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                    "content": {"anyOf": [{"type": "string"}, {"type": "null"},
                                          {"type": "array", "items": _PART}]},
                },
            }, "description": f"at least one user message; at most {max_images} images in all"},
            "max_tokens": tokens,
            "max_completion_tokens": tokens,
            "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "0: greedy (default)"},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "stop": {"anyOf": [_STOP, {"type": "array", "maxItems": MAX_STOPS, "items": _STOP}, {"type": "null"}]},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            "n": {"type": "integer", "enum": [1]},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        },
    }


def chat_openapi(max_tokens_limit: int, max_images: int) -> dict[str, Any]:
    """``openapi_extra`` and ``responses`` for the chat completions route."""
    schema = chat_request(max_tokens_limit, max_images)
    responses = errors(*ERRORS)
    responses["200"] = {"description": "the answer (a chat.completion, or server-sent chunks with `stream`)",
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["id", "object", "choices", "usage"]}},
                            "text/event-stream": {"schema": {"type": "string"}}}}
    extra = {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
    return {"openapi_extra": extra, "responses": responses}
