"""Generation through vLLM, behind the same ``generate`` as the transformers ``Engine``.

vLLM runs in its own environment (``make vllm`` makes ``.venv-vllm``; its pins of torch and transformers
differ from DoctorSun's), as a separate process (``vllm_worker.py``) that stays up between batches.
DoctorSun renders each prompt with the checkpoint's own chat template and reads every image with its own
reader (DICOM and NIfTI included), hands the worker the prompt text and the images as PNG files, and cuts
the answers at the same stop strings; decoding is greedy unless the settings sample (evaluation never does).
The transformers model is loaded too, for what evaluation and the server read of it (the weights' fingerprint,
the config, the tokenizer); it neither generates nor scores (likelihoods come from vLLM's prompt
log-probabilities).

The vLLM interpreter: ``$DOCTORSUN_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` in the current directory or
beside the package's checkout, else this interpreter when it can import vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.model.generate import Engine, GenerationSettings, cut_at_stop, literal_messages

WORKER = Path(__file__).with_name("vllm_worker.py")
CPU_MEMORY_FRACTION = 0.2
"""On CPU, the share of RAM vLLM reserves for its KV cache unless told (its own 0.92 fails beside any other
process)."""
HOW = "run `make vllm` (a separate environment with vLLM), or set DOCTORSUN_VLLM_PYTHON to a Python that has vLLM"


def vllm_python() -> str | None:
    """The interpreter that runs vLLM, or ``None`` when there is none."""
    env = os.environ.get("DOCTORSUN_VLLM_PYTHON")
    if env:
        return env if Path(env).is_file() else None
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = root / ".venv-vllm" / "bin" / "python"
        if candidate.is_file():
            return str(candidate)
    return sys.executable if importlib.util.find_spec("vllm") is not None else None


class VLLMEngine(Engine):
    """``Engine`` whose ``generate`` goes through a vLLM worker process."""

    kind = "vllm"

    def __init__(self, model, processor, path: str | Path, name: str = "model", *, dtype: str = "float32",
                 max_model_len: int | None = None, memory_fraction: float | None = None, python: str | None = None,
                 max_images: int = 1):
        super().__init__(model, processor, name=name)
        self._lock = threading.Lock()  # one batch at a time on the worker's pipe
        self.python = python or vllm_python()
        if self.python is None:
            raise DoctorSunError(f"--engine vllm needs vLLM: {HOW}")
        self._tmp = tempfile.TemporaryDirectory(prefix="doctorsun-vllm-")
        self._n = 0
        import torch

        if memory_fraction is None and not torch.cuda.is_available():
            memory_fraction = CPU_MEMORY_FRACTION
        cmd = [self.python, str(WORKER), str(path), "--dtype", dtype]
        if max_model_len:
            cmd += ["--max-model-len", str(max_model_len)]
        if memory_fraction:
            cmd += ["--memory-fraction", str(memory_fraction)]
        if max_images != 1:
            cmd += ["--max-images", str(max_images)]
        self._log = open(Path(self._tmp.name) / "vllm.log", "w", encoding="utf-8")  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                      text=True, encoding="utf-8")
        self._read()  # @@ready

    @classmethod
    def load(cls, path: str | Path, dtype: str = "float32", device: str = "cpu", **kwargs) -> VLLMEngine:
        import torch

        from doctorsun.model.io import load_model

        model, processor = load_model(path, dtype=dtype, device="cpu")
        if kwargs.get("memory_fraction") is None and not torch.cuda.is_available():
            kwargs["memory_fraction"] = CPU_MEMORY_FRACTION
        return cls(model, processor, path, name=str(path), dtype=dtype, **kwargs)

    def _read(self) -> str:
        for line in self._proc.stdout:
            if line.startswith("@@"):
                return line[2:].rstrip("\n")
        self._log.flush()
        text = Path(self._log.name).read_text(encoding="utf-8", errors="replace")
        causes = [line.strip() for line in text.splitlines()
                  if re.search(r"\b\w*(Error|Exception): ", line) and "initialization failed" not in line]
        cause = f"\nfirst error: {causes[0]}" if causes else ""
        raise DoctorSunError(f"the vLLM worker stopped (exit {self._proc.wait()}){cause}\n{text[-3000:]}")

    def generate(self, conversations, images, settings: GenerationSettings | None = None,
                 streamer=None) -> list[str]:
        """Answers as ``Engine.generate`` gives them. A ``streamer`` (``doctorsun serve``) gets the prompt
        lengths and every row's tokens once vLLM has answered the batch, as transformers would have fed
        them, so token counts, finish reasons and the streamed text are the same; only their timing differs."""
        settings = settings or GenerationSettings()
        requests = []
        for conv, imgs in zip(conversations, images, strict=True):
            prompt = self.processor.apply_chat_template(literal_messages(conv), add_generation_prompt=True,
                                                        tokenize=False)
            requests.append({"prompt": prompt, "images": self._save_images(imgs),
                             "max_tokens": settings.max_new_tokens, "stop": list(settings.stop or []),
                             "temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed})
        outputs = self._ask(requests)
        if streamer is not None:
            self._replay(streamer, outputs)
        return [cut_at_stop(o["text"], settings.stop).strip() for o in outputs]

    def loglikelihood(self, conversations, images, replies) -> list[tuple[float, int]]:
        """``Engine.loglikelihood`` computed by vLLM: each prompt with its reply goes to the worker once
        (its prompt log-probabilities, one token generated and dropped); the reply's tokens are counted
        with this checkpoint's processor, as the transformers engine counts them."""
        texts, n_reply = self.reply_lengths(conversations, images, replies)
        requests = [{"prompt": text, "images": self._save_images(imgs), "score_last": n}
                    for text, imgs, n in zip(texts, images, n_reply, strict=True)]
        outputs = self._ask(requests)
        return [(float(o["logprob"]), int(o["tokens"])) for o in outputs]

    def _save_images(self, imgs) -> list[str]:
        paths = []
        for img in imgs:
            self._n += 1
            path = Path(self._tmp.name) / f"{self._n}.png"
            img.convert("RGB").save(path)
            paths.append(str(path))
        return paths

    def _ask(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One batch through the worker; its image files are removed afterwards."""
        try:
            with self._lock:
                self._proc.stdin.write(json.dumps({"requests": requests}, ensure_ascii=False) + "\n")
                self._proc.stdin.flush()
                return json.loads(self._read())["outputs"]
        finally:
            for p in (p for r in requests for p in r["images"]):
                Path(p).unlink(missing_ok=True)

    def _replay(self, streamer, outputs: list[dict[str, Any]]) -> None:
        """Feed ``streamer`` what transformers' ``generate`` would: the left-padded prompts, then one token
        per row per step, the end-of-turn token after a row that stopped."""
        import torch

        tokenizer = self.processor.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad
        width = max([o.get("prompt_tokens", 0) for o in outputs] + [1])
        prompts = torch.full((len(outputs), width), pad, dtype=torch.long)
        for row, o in enumerate(outputs):  # the prompt's own ids are not needed, only its length
            if o.get("prompt_tokens"):
                prompts[row, width - o["prompt_tokens"]:] = pad + 1
        streamer.put(prompts)
        rows = [list(o["token_ids"]) + ([eos] if o.get("finish_reason", "stop") == "stop" else [])
                for o in outputs]
        for t in range(max([len(r) for r in rows] + [0])):
            streamer.put(torch.tensor([r[t] if t < len(r) else eos for r in rows]))
        streamer.end()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write("\n")
                self._proc.stdin.close()
                self._proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def server_command(model_dir: str | Path, *, host: str, port: int, name: str, dtype: str | None = None,
                   api_key: str | None = None, trust_remote_code: bool = False,
                   memory_fraction: float | None = None) -> list[str]:
    """vLLM's OpenAI-compatible server on ``model_dir``, through its module entry point (the CPU build's
    ``vllm serve`` script looks for a distribution named ``vllm`` and fails), with an explicit ``--dtype``
    (float32 on CPU, where vLLM would otherwise serve a float32 checkpoint in bfloat16)."""
    import torch

    python = vllm_python()
    if python is None:
        raise DoctorSunError(f"--engine vllm needs vLLM: {HOW}")
    gpu = torch.cuda.is_available()
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--host", host,
               "--port", str(port), "--served-model-name", name, "--dtype", dtype or ("bfloat16" if gpu else "float32")]
    if memory_fraction or not gpu:
        command += ["--gpu-memory-utilization", str(memory_fraction or CPU_MEMORY_FRACTION)]
    if api_key:
        command += ["--api-key", api_key]
    if trust_remote_code:
        command.append("--trust-remote-code")
    return command
