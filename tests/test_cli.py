import subprocess
import sys

import pytest


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "doctorsun", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_chat_answers_about_a_dicom(chatty_model_dir, dicom_ct):
    res = _cli("chat", "--model", str(chatty_model_dir), "--image", str(dicom_ct), "--max-new-tokens", "4",
               "What modality?")
    assert res.returncode == 0, res.stderr
    from doctorsun.data.image import load_image
    from doctorsun.model.generate import Engine, GenerationSettings

    engine = Engine.load(chatty_model_dir)
    expected = engine.answer("What modality?", load_image(dicom_ct), GenerationSettings(4))
    assert expected and res.stdout.strip() == expected


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["chat", "--model", "/no/model", "hi"], "model not found: /no/model"),
        (["build", "--llm", "/no/llm", "--out", "/tmp/x"], "LLM not found: '/no/llm'"),
    ],
)
def test_errors_are_one_line_without_traceback(args, needle):
    res = _cli(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert needle in res.stderr


def test_unreadable_image_is_named(tiny_model_dir, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    res = _cli("chat", "--model", str(tiny_model_dir), "--image", str(bad), "hi")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"cannot read image {bad}" in res.stderr
