"""The vLLM engine feeds DoctorSun's streamer what transformers' ``generate`` would: given the tokens that
transformers generated (as vLLM's worker returns them), the streamed deltas, token counts and finish reasons
come out the same. The worker itself is exercised in tests/model/test_vllm_roundtrip.py."""

from __future__ import annotations

from doctorsun.data.image import load_image
from doctorsun.model.chat import user_message
from doctorsun.model.generate import GenerationSettings
from doctorsun.model.vllm_engine import VLLMEngine
from doctorsun.serve.streaming import streamer_for


def replay(engine, settings, outputs):
    deltas: dict[int, list[str]] = {}
    streamer = streamer_for(engine, settings, on_delta=lambda r, t: deltas.setdefault(r, []).append(t))
    fake = object.__new__(VLLMEngine)  # no worker: only the replay is under test
    fake.processor = engine.processor
    fake._replay(streamer, outputs)
    return streamer, deltas


def test_replayed_tokens_stream_as_transformers_did(engine, dicom_ct):
    image = load_image(dicom_ct)
    convs = [[user_message("Describe the image.", 1)], [user_message("What is shown?", 1)],
             [user_message("Hi", 0)]]
    images = [[image], [image], []]
    first = engine.generate(convs[:1], images[:1], GenerationSettings(max_new_tokens=12))[0]
    stop = first.split()[-1][:3]  # a stop string the first answer reaches
    for settings in (GenerationSettings(max_new_tokens=6), GenerationSettings(max_new_tokens=40, stop=[stop])):
        own = streamer_for(engine, settings)
        texts = engine.generate(convs, images, settings, streamer=own)
        reasons = [own.finish_reason(r) for r in range(len(convs))]
        assert reasons[0] == ("length" if settings.max_new_tokens == 6 else "stop")
        outputs = [{"token_ids": own.tokens[r], "prompt_tokens": own.prompt_tokens[r], "finish_reason": reasons[r]}
                   for r in range(len(convs))]
        theirs, deltas = replay(engine, settings, outputs)
        for r, text in enumerate(texts):
            assert "".join(deltas.get(r, [])) + theirs.finish(r, text) == text
            assert theirs.prompt_tokens[r] == own.prompt_tokens[r]
            assert theirs.completion_tokens(r) == own.completion_tokens(r)
            assert theirs.finish_reason(r) == reasons[r]
    # An answer that ended at the end-of-turn token, listed by vLLM or not, counts it neither as text nor as a token.
    tokens = own.tokens[2][:5]
    eos = engine.tokenizer.eos_token_id
    for ids in (tokens, [*tokens, eos]):
        theirs, _ = replay(engine, settings, [{"token_ids": ids, "prompt_tokens": 9, "finish_reason": "stop"}])
        assert (theirs.finish_reason(0), theirs.completion_tokens(0), theirs.prompt_tokens) == ("stop", 5, [9])
    theirs, _ = replay(engine, settings, [{"token_ids": tokens, "prompt_tokens": 9, "finish_reason": "length"}])
    assert theirs.finish_reason(0) == "length"
