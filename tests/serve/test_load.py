"""Bounded work: a full server answers 429 with Retry-After, and a client that hangs up frees its slot
and stops its generation within a few tokens."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from doctorsun.model.generate import Engine
from doctorsun.serve.api import create_app
from doctorsun.serve.config import ServeConfig

from .conftest import Server


class SlowEngine(Engine):
    """The tiny model at 20 tokens a second, never stopping early, counting what it generates."""

    generated = 0

    def generate(self, conversations, images, settings=None, streamer=None):
        inner = streamer
        owner = self

        class Slow:
            def put(self, value):
                time.sleep(0.05)
                owner.generated += 1
                if inner is not None:
                    inner.put(value)

            def end(self):
                if inner is not None:
                    inner.end()

        return super().generate(conversations, images, settings, streamer=Slow())


@pytest.fixture(scope="module")
def slow_server(chatty_model_dir):
    engine = SlowEngine.load(chatty_model_dir)
    never = engine.tokenizer.convert_tokens_to_ids("<image>")  # a token it never emits: answers run full length
    engine.model.generation_config.eos_token_id = [never]
    config = ServeConfig(model_name="slow", max_pending=1, max_batch_size=1, batch_wait_ms=0, max_tokens_limit=64,
                         default_max_tokens=8)
    with Server(create_app(engine, config)) as srv:
        srv.engine = engine
        yield srv


def body(max_tokens: int) -> dict:
    return {"model": "slow", "messages": [{"role": "user", "content": "Tell me everything."}],
            "max_tokens": max_tokens}


def test_a_full_server_says_429_with_retry_after(slow_server):
    url = f"{slow_server.url}/v1/chat/completions"
    first = {}
    worker = threading.Thread(target=lambda: first.update(res=httpx.post(url, json=body(30), timeout=60)))
    worker.start()
    time.sleep(0.5)  # the first request is being answered
    busy = httpx.post(url, json=body(4), timeout=60)
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
    assert busy.json()["error"]["code"] == "server_busy"
    worker.join(60)
    assert first["res"].status_code == 200
    assert httpx.post(url, json=body(2), timeout=60).status_code == 200  # the slot is free again


def test_a_client_that_hangs_up_stops_its_generation(slow_server):
    url = f"{slow_server.url}/v1/chat/completions"
    before = slow_server.engine.generated
    with pytest.raises(httpx.TimeoutException):
        httpx.post(url, json=body(64), timeout=1.0)  # 64 tokens take over 3 s
    time.sleep(1.5)  # the server notices within a poll and the batch stops at its next token
    spent = slow_server.engine.generated - before
    assert spent < 50, spent
    start = time.monotonic()
    assert httpx.post(url, json=body(2), timeout=60).status_code == 200  # not queued behind the ghost
    assert time.monotonic() - start < 3
    assert slow_server.engine.generated - before == spent + 3  # nothing more of the abandoned answer
