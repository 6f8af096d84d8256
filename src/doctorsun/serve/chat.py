"""``doctorsun chat``: ask a model about an image from the terminal."""

from __future__ import annotations

import argparse

from doctorsun.errors import DoctorSunError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir")
    p.add_argument("--image", action="append", default=[], help="image file (PNG, JPEG, DICOM); repeatable")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("question", nargs="?", help="one question; without it, an interactive chat")


def run(args: argparse.Namespace) -> int:
    from doctorsun.data.image import load_image
    from doctorsun.model.generate import Engine, GenerationSettings, user_message

    images = [load_image(p) for p in args.image]  # fail on a bad image before loading the model
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    engine = Engine.load(args.model)
    if args.question is None:
        raise DoctorSunError("give a question (interactive chat is not available in this build)")
    print(engine.generate([[user_message(args.question, len(images))]], [images], settings)[0])
    return 0
