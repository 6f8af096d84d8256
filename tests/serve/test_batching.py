"""The batcher on its own: one bad request in a batch fails alone; streamed deltas join up per job."""

from __future__ import annotations

import asyncio

import pytest

from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import user_message
from doctorsun.model.generate import GenerationSettings
from doctorsun.serve.batching import Batcher, Result


def test_a_bad_request_fails_alone(engine):
    settings = GenerationSettings(max_new_tokens=6)

    async def scenario():
        batcher = Batcher(engine, max_batch_size=4, wait_ms=500)
        try:
            good = batcher.submit([user_message("Which organ is this?")], [], settings)
            bad = batcher.submit([user_message("And this?", 1)], [], settings)  # a placeholder, no image
            other = batcher.submit([user_message("Is it normal?")], [], settings)
            results = [await batcher.result(good), await batcher.result(other)]
            with pytest.raises(DoctorSunError, match="1 image placeholders but 0 images"):
                await batcher.result(bad)
            return results, batcher.stats
        finally:
            batcher.stop()

    (good, other), stats = asyncio.run(scenario())
    want = engine.generate(
        [[user_message("Which organ is this?")], [user_message("Is it normal?")]], [[], []], settings
    )
    assert [good.text, other.text] == want
    assert stats.failed == 1 and stats.requests == 3
    assert stats.batches == 4  # the batch of three, then each request on its own


def test_streamed_deltas_of_a_batch_go_to_their_own_jobs(engine):
    settings = GenerationSettings(max_new_tokens=10)
    questions = ["Describe the image.", "请描述这张图像。", "What is abnormal here?"]

    async def scenario():
        batcher = Batcher(engine, max_batch_size=8, wait_ms=500)
        try:
            jobs = [batcher.submit([user_message(q)], [], settings) for q in questions]

            async def collect(job):
                pieces, result = [], None
                async for item in batcher.stream(job):
                    if isinstance(item, Result):
                        result = item
                    else:
                        pieces.append(item)
                return pieces, result

            return await asyncio.gather(*(collect(j) for j in jobs)), batcher.stats
        finally:
            batcher.stop()

    outcomes, stats = asyncio.run(scenario())
    assert stats.batches == 1 and stats.largest_batch == 3
    for (pieces, result), q in zip(outcomes, questions, strict=True):
        assert "".join(pieces) == result.text == engine.generate([[user_message(q)]], [[]], settings)[0]
        assert len(pieces) > 1


def test_decoded_pixels_held_by_waiting_requests_are_bounded(engine):
    """Once waiting jobs hold ``max_pixels`` image pixels, the next job with images is refused; a job
    alone always fits, and a finished job frees its pixels."""
    from PIL import Image

    from doctorsun.serve.batching import Busy

    settings = GenerationSettings(max_new_tokens=2)
    square = Image.new("RGB", (20, 20))  # 400 pixels

    async def scenario():
        batcher = Batcher(engine, max_batch_size=4, wait_ms=200, max_pixels=1000)
        try:
            big = batcher.submit([user_message("Compare.", 2)], [square, square], settings)
            assert batcher.pixels == 800
            with pytest.raises(Busy, match="hold 800 image pixels"):
                batcher.submit([user_message("And this?", 1)], [square], settings)
            text_only = batcher.submit([user_message("Is it normal?")], [], settings)  # no pixels: fits
            await batcher.result(big)
            await batcher.result(text_only)
            assert batcher.pixels == 0 and batcher.pending == 0
            alone = batcher.submit([user_message("Three?", 3)], [square] * 3, settings)  # 1200 alone: fits
            await batcher.result(alone)
        finally:
            batcher.stop()

    asyncio.run(scenario())
