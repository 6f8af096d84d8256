"""Serving fixtures: a tiny model that says something (not just newlines) and a real server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time

import pytest

API_KEY = "test-key-123"


@pytest.fixture(scope="session")
def engine(chatty_model_dir):
    from doctorsun.model.generate import Engine

    return Engine.load(chatty_model_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real uvicorn server in a thread, listening on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(engine):
    """The API with an API key and small limits, so that tests can cross them cheaply."""
    from doctorsun.serve.api import create_app
    from doctorsun.serve.config import ServeConfig

    config = ServeConfig(
        model_name="doctorsun-tiny",
        api_key=API_KEY,
        max_body_bytes=400_000,
        max_image_pixels=200 * 200,
        max_tokens_limit=64,
        default_max_tokens=8,
        max_batch_size=8,
        batch_wait_ms=50,
    )
    with Server(create_app(engine, config)) as srv:
        srv.config = config
        yield srv


@pytest.fixture()
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
