"""The web UI in headless Chromium (Debian's ``chromium``, driven by Playwright): log in with the API key,
upload a DICOM, ask, read the streamed answer, switch to Chinese. The server is ``doctorsun serve --ui``
in a subprocess, so the command line is tested too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from doctorsun.data.image import load_image
from doctorsun.model.generate import GenerationSettings

from .conftest import API_KEY, free_port

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail("Debian's chromium is needed for the web UI test: run `make browser`")
    return path


@pytest.fixture(scope="module")
def ui_server(chatty_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "serve.log"
    uploads = log.parent / "uploads"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "doctorsun",
                "serve",
                "--model",
                str(chatty_model_dir),
                "--port",
                str(port),
                "--ui",
                "--default-max-tokens",
                "12",
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCTORSUN_API_KEY": API_KEY, "GRADIO_TEMP_DIR": str(uploads)},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"doctorsun serve did not start:\n{log.read_text()}")
            time.sleep(0.3)
        yield url, uploads
    finally:
        proc.terminate()
        proc.wait(30)


def test_upload_ask_and_switch_language(ui_server, engine, dicom_ct, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ui_server, uploads = ui_server

    question = "What modality is this image?"
    want = engine.answer(question, load_image(dicom_ct), GenerationSettings(max_new_tokens=12))
    words = re.findall(r"[A-Za-z]{3,}", want)
    assert words
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{ui_server}/ui/")
            page.get_by_label("username").fill("radiologist")  # the password is the API key
            page.get_by_label("password").fill(API_KEY)
            page.get_by_role("button", name="Login").click()
            expect(page.locator("#notice")).to_contain_text("Not medical advice", timeout=30_000)

            bad = tmp_path / "notes.txt"
            bad.write_text("not an image")
            page.locator("#upload input[type=file]").set_input_files(str(bad))
            expect(page.locator("#status")).to_contain_text("cannot read image notes.txt", timeout=20_000)

            page.locator("#upload button[aria-label='Clear']").first.click()
            page.locator("#upload input[type=file]").set_input_files(str(dicom_ct))
            expect(page.locator("#preview img")).to_be_visible(timeout=20_000)  # the windowed rendering
            # The uploaded DICOM (all its tags) is deleted once read: no copy of its bytes stays on disk.
            dicom = dicom_ct.read_bytes()
            kept = [p for p in uploads.rglob("*") if p.is_file() and p.read_bytes() == dicom]
            assert kept == []
            page.locator("#question textarea").fill(question)
            page.locator("#ask").click()
            bot = page.locator("#chat [data-testid=bot]").last
            for word in words:
                expect(bot).to_contain_text(word, timeout=30_000)
            expect(page.locator("#chat [data-testid=user]").last).to_contain_text(question)

            page.get_by_label("中文").check()
            expect(page.locator("#notice")).to_contain_text("不构成医疗建议")
            expect(page.locator("#ask")).to_have_text("提问")
            page.screenshot(path=str(tmp_path / "webui.png"))
            assert (tmp_path / "webui.png").stat().st_size > 10_000
        finally:
            browser.close()
