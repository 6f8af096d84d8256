"""``doctorsun serve``: the OpenAI-compatible API (and with ``--ui`` the web UI) for one model."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from doctorsun.errors import DoctorSunError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        default=os.environ.get("DOCTORSUN_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $DOCTORSUN_API_KEY; none: open)",
    )
    p.add_argument("--served-model-name", help="model id for clients (default: the model dir's name)")
    p.add_argument("--ui", action="store_true", help="also serve the web UI at /ui")
    p.add_argument("--engine", choices=["transformers", "vllm", "vllm-openai"], default="transformers",
                   help="vllm: DoctorSun's server (its limits, web UI, DICOM / NIfTI reading) generating "
                        "through vLLM in its own environment (`make vllm`); vllm-openai: vLLM's own "
                        "OpenAI-compatible server on the model dir instead (images it cannot decode, such "
                        "as DICOM, are refused there; DoctorSun's limits and web UI do not apply)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="default: bfloat16 on GPU, float32 on CPU",
    )
    p.add_argument("--max-batch-size", type=int, default=8, help="requests answered together")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long to gather a batch")
    p.add_argument("--max-tokens-limit", type=int, default=2048, help="largest max_tokens a request may ask")
    p.add_argument("--default-max-tokens", type=int, default=512, help="max_tokens when a request gives none")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body in MiB")
    p.add_argument("--max-image-pixels", type=int, default=25_000_000, help="largest image (width x height)")
    p.add_argument("--max-images", type=int, default=8, help="most images in one request")
    p.add_argument("--max-pending", type=int, default=64,
                   help="most requests waiting or being answered; more get 429 with Retry-After")
    p.add_argument("--max-request-pixels", type=int, default=50_000_000,
                   help="most decoded pixels of one request's images together")
    p.add_argument("--max-server-pixels", type=int, default=200_000_000,
                   help="most decoded pixels held by all waiting and running requests; more get 429")


def config_from_args(args: argparse.Namespace):
    from doctorsun.serve.config import ServeConfig

    if not 0 < args.port < 65536:
        raise DoctorSunError(f"port must be in 1..65535, not {args.port}")
    return ServeConfig(
        model_name=args.served_model_name or Path(args.model).resolve().name,
        api_key=args.api_key or None,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_image_pixels=args.max_image_pixels,
        max_images=args.max_images,
        max_tokens_limit=args.max_tokens_limit,
        default_max_tokens=min(args.default_max_tokens, args.max_tokens_limit),
        max_batch_size=args.max_batch_size,
        max_pending=args.max_pending,
        max_request_pixels=args.max_request_pixels,
        max_server_pixels=args.max_server_pixels,
        batch_wait_ms=args.batch_wait_ms,
    )


def _serve_vllm(args: argparse.Namespace) -> int:
    from doctorsun.errors import DoctorSunError
    from doctorsun.model.export import engine_problems
    from doctorsun.model.io import check_model_dir
    from doctorsun.model.vllm_engine import server_command

    if args.ui:
        raise DoctorSunError("--ui needs --engine transformers or vllm (the web UI runs in DoctorSun's server)")
    model = check_model_dir(args.model)
    problems = engine_problems(model, "vllm")
    if problems:
        raise DoctorSunError(f"{model} is not ready for vLLM: " + "; ".join(problems) + " (doctorsun export fixes it)")
    command = server_command(model, host=args.host, port=args.port,
                             name=args.served_model_name or Path(args.model).resolve().name, dtype=args.dtype,
                             api_key=args.api_key)
    log.info("serving %s through vLLM: %s", model, " ".join("***" if c == args.api_key else c for c in command))
    # vLLM takes this process's place, so a signal to it (Ctrl-C, SIGTERM) reaches vLLM and its workers
    os.execv(command[0], command)


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn
    from transformers.utils import logging as hf_logging

    from doctorsun.model.generate import Engine
    from doctorsun.serve.api import create_app

    if args.engine == "vllm-openai":
        return _serve_vllm(args)
    config = config_from_args(args)
    upload_dir = None
    if args.ui and "GRADIO_TEMP_DIR" not in os.environ:
        # The web UI's uploads (DICOM files with all their tags) live in a private folder of this server.
        upload_dir = tempfile.mkdtemp(prefix="doctorsun-ui-")
        os.environ["GRADIO_TEMP_DIR"] = upload_dir
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    hf_logging.disable_progress_bar()
    if args.engine == "vllm":
        from doctorsun.model.vllm_engine import VLLMEngine

        engine = VLLMEngine.load(args.model, dtype=dtype, max_images=config.max_images)
        atexit.register(engine.close)
    else:
        engine = Engine.load(args.model, dtype=dtype, device=device)
    app = create_app(engine, config, ui=args.ui)
    if args.host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        log.warning("listening on %s without --api-key: anyone who can reach it can use the model", args.host)
    where = f"http://{args.host}:{args.port}"
    log.info(
        "serving %s as %r at %s/v1%s",
        args.model,
        config.model_name,
        where,
        f" and {where}/ui" if args.ui else "",
    )
    sock = listen(args.host, args.port)  # fail with a clear message before serving, e.g. on a busy port
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5)
    )
    try:
        server.run(sockets=[sock])
    finally:
        if upload_dir is not None:  # anything the web UI still held goes with the server
            shutil.rmtree(upload_dir, ignore_errors=True)
    return 0


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise DoctorSunError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
