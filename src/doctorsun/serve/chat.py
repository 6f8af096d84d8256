"""``doctorsun chat``: talk to a model in the terminal, about images given by path.

One-shot (a question on the command line) prints the answer and nothing else on stdout. Without a
question it is a multi-turn chat that streams each answer; ``/image PATH`` attaches an image (PNG, JPEG,
DICOM, NIfTI) to the next question, ``/reset`` starts over, ``/exit`` (or end of input) leaves. Answers
go to stdout; prompts and notices go to stderr, so a transcript can be piped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from doctorsun.errors import DoctorSunError
from doctorsun.serve.streaming import stream

HELP = """commands:
  /image PATH [KEY=VALUE ...]
                attach an image (PNG, JPEG, DICOM, NIfTI) to the next question; options go to the
                image reader, e.g. window=lung, window=40,400, frame=3, plane=coronal, slice=60
  /reset        forget the conversation and any attached images
  /help         show this help
  /exit         leave (Ctrl-D too)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        help="image file (PNG, JPEG, DICOM, NIfTI) for the first question; repeatable",
    )
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--system", help="system prompt (default: none, as in training)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("question", nargs="?", help="one question; without it, an interactive chat")


@dataclass
class Conversation:
    """The turns so far and the images they refer to, in order."""

    system: str | None = None
    """System prompt, kept across ``reset``."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """User and assistant turns (chat-template messages)."""
    images: list[Any] = field(default_factory=list)
    """Images of the sent user turns, in placeholder order."""
    pending: list[Any] = field(default_factory=list)
    """Images attached to the next question."""

    def ask(self, question: str) -> tuple[list[dict[str, Any]], list[Any]]:
        """The conversation and images to generate from, with ``question`` as the new user turn."""
        from doctorsun.model.chat import user_message

        self.messages.append(user_message(question, len(self.pending)))
        self.images.extend(self.pending)
        self.pending = []
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages, list(self.images)

    def answered(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def reset(self) -> None:
        self.messages, self.images, self.pending = [], [], []


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from doctorsun.data.image import load_image
    from doctorsun.model.generate import Engine, GenerationSettings

    hf_logging.disable_progress_bar()  # stderr is for the conversation's notices
    images = [load_image(p) for p in args.image]  # fail on a bad image before loading the model
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    engine = Engine.load(args.model, dtype=args.dtype, device=args.device)
    conv = Conversation(system=args.system, pending=images)
    if args.question is not None:
        messages, imgs = conv.ask(args.question)
        if sys.stdout.isatty():  # a person is watching: show the answer as it is written
            for piece in stream(engine, messages, imgs, settings):
                print(piece, end="", flush=True)
            print()
        else:
            print(engine.generate([messages], [imgs], settings)[0])
        return 0
    return repl(engine, settings, conv, sys.stdin, sys.stdout, sys.stderr)


def repl(engine, settings, conv: Conversation, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Read questions and commands until ``/exit`` or end of input; stream each answer to ``stdout``."""
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    print(
        f"doctorsun chat with {engine.name}; /help for commands. Outputs are not medical advice.", file=stderr
    )
    while True:
        line = _read(stdin, stderr, interactive)
        if line is None:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if _command(line, conv, stderr) == "exit":
                return 0
            continue
        n_messages, n_images = len(conv.messages), len(conv.images)
        messages, imgs = conv.ask(line)
        pieces = []
        try:
            for piece in stream(engine, messages, imgs, settings):
                pieces.append(piece)
                stdout.write(piece)
                stdout.flush()
        except KeyboardInterrupt:
            print("\n[interrupted]", file=stderr)
        except DoctorSunError as exc:
            print(f"error: {exc}", file=stderr)
            # The question was not answered: forget it and its images.
            del conv.messages[n_messages:], conv.images[n_images:]
            continue
        stdout.write("\n")
        stdout.flush()
        conv.answered("".join(pieces))


def _read(stdin: TextIO, stderr: TextIO, interactive: bool) -> str | None:
    try:
        if interactive:
            return input("you> ")
        line = stdin.readline()
        return line if line else None
    except EOFError:
        return None
    except KeyboardInterrupt:
        print(file=stderr)
        return None


def _command(line: str, conv: Conversation, stderr: TextIO) -> str | None:
    from doctorsun.data.image import load_image

    name, _, arg = line.partition(" ")
    if name in ("/exit", "/quit"):
        return "exit"
    if name == "/reset":
        conv.reset()
        print("[conversation cleared]", file=stderr)
    elif name == "/image":
        try:
            path, options = _image_args(arg)
            image = load_image(path, **options)
        except DoctorSunError as exc:
            print(f"error: {exc}", file=stderr)
            return None
        conv.pending.append(image)
        print(f"[image {path} ({image.width}x{image.height}) attached to the next question]", file=stderr)
    elif name == "/help":
        print(HELP, file=stderr)
    else:
        print(f"unknown command {name}; /help lists them", file=stderr)
    return None


def _image_args(arg: str) -> tuple[str, dict[str, Any]]:
    """``PATH [KEY=VALUE ...]`` (shell quoting for paths with spaces); integer values become ints."""
    import shlex

    try:
        words = shlex.split(arg)
    except ValueError as exc:
        raise DoctorSunError(f"cannot parse /image arguments: {exc}") from None
    if not words:
        raise DoctorSunError("usage: /image PATH [KEY=VALUE ...]")
    options: dict[str, Any] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise DoctorSunError(f"image option {word!r} is not KEY=VALUE")
        options[key] = int(value) if value.lstrip("-").isdigit() else value
    return words[0], options
