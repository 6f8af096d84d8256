"""``doctorsun chat``: the multi-turn REPL driven through stdin, and the streaming it relies on."""

from __future__ import annotations

import os
import subprocess
import sys

from doctorsun.data.image import load_image
from doctorsun.model.chat import user_message
from doctorsun.model.generate import GenerationSettings
from doctorsun.serve.streaming import stream


def nifti_file() -> str:
    import nibabel.testing

    return os.path.join(nibabel.testing.data_path, "example4d.nii.gz")


def test_repl_keeps_the_conversation_and_images(chatty_model_dir, engine, dicom_ct):
    script = (
        "\n".join(
            [
                "What modality?",
                f"/image {dicom_ct} window=lung",
                f"/image {dicom_ct} colour=red",
                f"/image {nifti_file()}",
                "/image /no/such/scan.png",
                "/bogus",
                "And these two?",
                "/reset",
                "What modality?",
                "/exit",
                "never read",
            ]
        )
        + "\n"
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "doctorsun",
            "chat",
            "--model",
            str(chatty_model_dir),
            "--max-new-tokens",
            "8",
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr

    settings = GenerationSettings(max_new_tokens=8)
    first = engine.generate([[user_message("What modality?")]], [[]], settings)[0]
    images = [load_image(dicom_ct, window="lung"), load_image(nifti_file())]
    history = [
        user_message("What modality?"),
        {"role": "assistant", "content": first},
        user_message("And these two?", 2),
    ]
    second = engine.generate([history], [images], settings)[0]
    assert first and second and first != second
    # After /reset the first question gets the first answer again; answers are all stdout holds.
    assert res.stdout == f"{first}\n{second}\n{first}\n"
    assert "image not found: /no/such/scan.png" in res.stderr
    assert "unknown command /bogus" in res.stderr
    assert "unknown image option(s) ['colour']" in res.stderr
    assert "not medical advice" in res.stderr


def test_stream_pieces_join_up_to_generate(engine, dicom_ct):
    image = load_image(dicom_ct)
    for question, stop in (("Describe it.", []), ("请描述这张图像。", []), ("Describe it.", ["e"])):
        settings = GenerationSettings(max_new_tokens=12, stop=stop)
        conv = [user_message(question, 1)]
        pieces = list(stream(engine, conv, [image], settings))
        assert len(pieces) > 1 or stop  # a stop string may end the answer within its first word
        assert "".join(pieces) == engine.generate([conv], [[image]], settings)[0]


def test_closing_a_stream_stops_generation(engine):
    import time

    pieces = stream(engine, [user_message("Tell me everything.")], [], GenerationSettings(max_new_tokens=400))
    next(pieces)
    start = time.monotonic()
    pieces.close()  # must not wait for the other ~400 tokens
    assert time.monotonic() - start < 2.0
