"""Requests a careless or hostile client sends: each gets a 4xx naming the field, never a 500, and the
server stays small and answers the next request."""

from __future__ import annotations

import json
import resource

import httpx
import pytest

from doctorsun.model.chat import IMAGE_TOKEN, literal_messages, user_message
from doctorsun.model.generate import GenerationSettings

from .conftest import API_KEY
from .test_api import MODEL, data_url, png_bytes

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def post(server, body, raw: bytes | None = None, timeout: float = 60) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/chat/completions", content=content, headers=HEADERS, timeout=timeout)


def ask(**extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}


@pytest.mark.parametrize(("body", "param"), [
    (ask(seed=2**70, temperature=1.0), "seed"),
    (ask(seed=-1), "seed"),
    (ask(stream_options="yes"), "stream_options"),
    (ask(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (ask(stream="false"), "stream"),
    (ask(stop=["x" * 20_000] * 4), "stop"),
    (ask(stop=["a", "b", "c", "d", "e"]), "stop"),
    (ask(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
    (ask(logprobs=True), "logprobs"),
    (ask(response_format={"type": "json_object"}), "response_format"),
    (ask(n=3), "n"),
])
def test_bad_fields_get_a_400_naming_them(server, body, param):
    res = post(server, body)
    assert res.status_code == 400, res.text
    assert res.json()["error"]["param"] == param


def test_deeply_nested_json_is_a_400_not_a_crash(server):
    res = post(server, None, raw=b'{"model": "x", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_json"


def test_neutral_values_of_unsupported_fields_are_accepted(server):
    res = post(server, ask(logprobs=False, response_format={"type": "text"}, tools=None, presence_penalty=0))
    assert res.status_code == 200, res.text


def test_typed_placeholder_never_becomes_an_image(server, engine):
    """``<image>`` in user text is words: no image position, with or without a real image."""
    for stream in (False, True):
        res = post(server, ask(messages=[{"role": "user", "content": f"What does {IMAGE_TOKEN} mean?"}],
                               stream=stream))
        assert res.status_code == 200 and "error" not in res.text, res.text
    content = [{"type": "image_url", "image_url": {"url": data_url(png_bytes(), "image/png")}},
               {"type": "text", "text": f"{IMAGE_TOKEN}{IMAGE_TOKEN} Compare with this."}]
    assert post(server, ask(messages=[{"role": "user", "content": content}])).status_code == 200
    conv = [user_message(f"{IMAGE_TOKEN} twice {IMAGE_TOKEN}", 1)]
    from PIL import Image

    ids = engine.encode([conv], [[Image.new("RGB", (16, 16))]])["input_ids"][0]
    assert int((ids == engine.model.config.image_token_id).sum()) == engine.model.config.image_seq_length
    assert literal_messages([{"role": "user", "content": IMAGE_TOKEN}])[0]["content"] == "< image>"


def test_long_stop_strings_take_no_memory_and_still_stop(server, engine):
    """Four 128-character stop strings used to build a token table of hundreds of MiB per request."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stops = ["q" * 127 + str(i) for i in range(4)]
    assert post(server, ask(stop=stops)).status_code == 200
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: under 200 MiB
    full = engine.generate([[user_message("Tell me more.")]], [[]], GenerationSettings(max_new_tokens=12))[0]
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    cut = engine.generate([[user_message("Tell me more.")]], [[]], GenerationSettings(max_new_tokens=12, stop=[stop]))
    assert cut == [full[: full.find(stop)].strip()]


def test_the_images_of_one_request_are_bounded_together():
    from doctorsun.serve.messages import RequestError, to_conversation

    url = data_url(png_bytes(100), "image/png")
    parts = [{"type": "image_url", "image_url": {"url": url}}] * 2 + [{"type": "text", "text": "Compare."}]
    conv, images = to_conversation([{"role": "user", "content": parts}], 8, 100 * 100, 20_000)
    assert len(images) == 2
    with pytest.raises(RequestError, match="more than 15000 pixels together") as err:
        to_conversation([{"role": "user", "content": parts}], 8, 100 * 100, 15_000)
    assert err.value.param == "messages[0].content[1]"


def test_a_body_that_trickles_in_gets_a_408(engine):
    import socket

    from doctorsun.serve.api import create_app
    from doctorsun.serve.config import ServeConfig

    from .conftest import Server

    with Server(create_app(engine, ServeConfig(model_name="m", body_timeout_s=1.0))) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"model\": ")
            answer = b""
            while b"request_timeout" not in answer:  # headers and body may come in separate reads
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer
        assert httpx.post(f"{srv.url}/v1/chat/completions", json=ask(model="m"), timeout=60).status_code == 200
