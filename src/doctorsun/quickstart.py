"""``doctorsun quickstart``: the embedded default, end to end, on a laptop CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="where data, checkpoints and reports go")


def run(args: argparse.Namespace) -> int:
    from pydicom.data import get_testdata_file

    from doctorsun.data.image import load_image
    from doctorsun.model import BuildConfig, build_model, save_model
    from doctorsun.model.generate import Engine

    out = Path(args.out)
    t0 = time.time()
    cfg = BuildConfig()
    model, processor = build_model(cfg)
    save_model(model, processor, out / "model", meta={"stage": "build", "build": cfg.to_dict()})
    engine = Engine(model, processor, name=str(out / "model"))
    image = load_image(get_testdata_file("CT_small.dcm"))
    question = "What kind of medical image is this?"
    print(f"Q: {question} [pydicom CT_small.dcm]")
    print(f"A: {engine.answer(question, image)}")
    print(f"quickstart done in {time.time() - t0:.0f} s; model in {out / 'model'}")
    return 0
