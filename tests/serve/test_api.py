"""The OpenAI-compatible API, through a real uvicorn server and the official ``openai`` client."""

from __future__ import annotations

import base64
import io
import threading

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from doctorsun.data.image import load_image
from doctorsun.model.chat import user_message
from doctorsun.model.generate import GenerationSettings

from .conftest import API_KEY

MODEL = "doctorsun-tiny"


def png_bytes(size: int = 24) -> bytes:
    ramp = np.linspace(0, 255, size * size * 3).reshape(size, size, 3).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(url: str, question: str) -> dict:
    return {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}],
    }


def expected(engine, question: str, images=(), **settings) -> str:
    conv = [user_message(question, len(images))]
    return engine.generate([conv], [list(images)], GenerationSettings(**settings))[0]


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    health = httpx.get(f"{server.url}/health").json()  # open: load balancers probe it without a key
    assert health["status"] == "ok" and health["model"] == MODEL


def test_api_key_is_required(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    res = httpx.post(f"{server.url}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"


def test_text_answer_is_the_engines_greedy_answer(client, engine):
    res = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Which organ?"}], max_tokens=8
    )
    want = expected(engine, "Which organ?", max_new_tokens=8)
    assert want and res.choices[0].message.content == want
    prompt = engine.encode([[user_message("Which organ?")]], [[]])["input_ids"].shape[1]
    assert res.usage.prompt_tokens == prompt
    assert 0 < res.usage.completion_tokens <= 8
    assert (res.choices[0].finish_reason == "length") == (res.usage.completion_tokens == 8)


def test_png_and_dicom_data_urls(client, engine, dicom_ct, tmp_path):
    png = tmp_path / "ramp.png"
    png.write_bytes(png_bytes())
    for path, mime in ((png, "image/png"), (dicom_ct, "application/dicom")):
        msg = image_message(data_url(path.read_bytes(), mime), "What modality is this?")
        res = client.chat.completions.create(model=MODEL, messages=[msg], max_tokens=6)
        # Same reader, same windowing: the answer is the one for the file read from disk.
        assert res.choices[0].message.content == expected(
            engine, "What modality is this?", [load_image(path)], max_new_tokens=6
        ), mime
        assert res.usage.prompt_tokens > 4  # the image's 4 visual tokens are counted


def test_streaming_joins_up_to_the_plain_answer(client, dicom_ct):
    msg = image_message(data_url(dicom_ct.read_bytes(), "application/dicom"), "Describe the image.")
    plain = client.chat.completions.create(model=MODEL, messages=[msg], max_tokens=10)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[msg], max_tokens=10, stream=True, stream_options={"include_usage": True}
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert sum(1 for p in pieces if p) > 1, "the answer came in one piece: not streamed"
    assert "".join(pieces) == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_stop_strings_cut_the_answer(client, engine):
    full = expected(engine, "Tell me more.", max_new_tokens=12)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    want = full[: full.find(stop)].strip()
    msgs = [{"role": "user", "content": "Tell me more."}]
    res = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, stop=stop)
    assert res.choices[0].message.content == want
    assert res.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model=MODEL, messages=msgs, max_tokens=12, stop=[stop], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == want


def test_sampling_repeats_with_a_seed(client):
    ask = dict(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=1.2, seed=7
    )
    assert (
        client.chat.completions.create(**ask).choices[0].message.content
        == client.chat.completions.create(**ask).choices[0].message.content
    )


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"max_tokens": 65}, 400, "max_tokens_too_large"),
        ({"model": "gpt-4o"}, 404, "model_not_found"),
        ({"image": png_bytes(210)}, 400, "image_too_large"),  # 44,100 pixels > 40,000
        ({"image_url": "https://example.org/scan.png"}, 400, "invalid_image_url"),
        ({"image_url": "data:image/gif;base64,R0lGOD"}, 400, "unsupported_image_type"),
        ({"image": b"\x89PNG\r\n\x1a\n not a png"}, 400, "invalid_image"),
        ({"text": "word " * 600}, 400, "context_length_exceeded"),
        ({"image": png_bytes(24) + b"\0" * 400_000}, 413, "request_too_large"),
    ],
)
def test_limits_answer_4xx_with_an_openai_error(client, change, status, code):
    url = change.get("image_url") or data_url(change.get("image", png_bytes()), "image/png")
    msg = image_message(url, change.get("text", "What is it?"))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(
            model=change.get("model", MODEL), messages=[msg], max_tokens=change.get("max_tokens", 4)
        )
    assert err.value.status_code == status
    assert err.value.body["code"] == code, err.value.body
    assert err.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (
            b'{"model": "doctorsun-tiny", "messages": [{"role": "robot", "content": "hi"}]}',
            "messages[0].role",
        ),
        (
            b'{"model": "doctorsun-tiny", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}',
            "messages[0].content[0]",
        ),
        (
            b'{"model": "doctorsun-tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}',
            "temperature",
        ),
    ],
)
def test_malformed_requests_name_the_field(server, body, param):
    res = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert res.status_code == 400
    assert res.json()["error"]["param"] == param


def test_concurrent_requests_share_batches(client, server, engine):
    questions = [f"Question number {i}: what is shown?" for i in range(6)]
    want = {q: expected(engine, q, max_new_tokens=8) for q in questions}
    before = httpx.get(f"{server.url}/health").json()["batching"]
    got: dict[str, str] = {}

    def ask(q: str) -> None:
        res = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}], max_tokens=8
        )
        got[q] = res.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = httpx.get(f"{server.url}/health").json()["batching"]
    assert got == want  # each client gets its own answer, identical to an unbatched one
    assert after["requests"] - before["requests"] == len(questions)
    assert after["batches"] - before["batches"] < len(questions)
    assert after["largest_batch"] > 1
