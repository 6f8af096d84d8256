"""``doctorsun <verb>``: one thin entry point. Each verb lives in its own room and is imported only
when used, so ``doctorsun data check`` does not pay for the web UI's imports."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from doctorsun import __version__
from doctorsun.errors import DoctorSunError

# verb -> (module with add_arguments(parser) and run(args), one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "quickstart": ("doctorsun.quickstart", "run the embedded default pipeline end to end on this machine"),
    "build": ("doctorsun.model.commands", "assemble vision encoder + projector + LLM into a model dir"),
    "chat": ("doctorsun.serve.chat", "talk to a model in the terminal (images: PNG, JPEG, DICOM, NIfTI)"),
    "data": ("doctorsun.data.commands", "check, convert, mix data; build SunMed-VL-mini"),
    "train": ("doctorsun.train.commands", "run one training stage from a recipe YAML"),
    "eval": ("doctorsun.eval.commands", "score a model on a medical benchmark"),
    "serve": ("doctorsun.serve.commands", "OpenAI-compatible API (and web UI) for a model"),
    "import": ("doctorsun.model.interop", "import a checkpoint in the original LLaVA / XTuner layout"),
    "export": ("doctorsun.model.export", "export a model for transformers / vLLM (LoRA merged)"),
}
# Subcommands a verb's group gets from another room: verb -> {name: (module, one-line help)}. The data
# library knows nothing of the SunMed-VL-mini builder that sits on top of it; the CLI joins them.
SUBVERBS: dict[str, dict[str, tuple[str, str]]] = {
    "data": {"mini": ("doctorsun.mini.commands",
                      "build SunMed-VL-mini from images that installed packages ship"),
             "prepare": ("doctorsun.train.prepare_command",
                         "tokenise a stage's training data into its memory-mapped cache ahead of training")},
}
# Verbs of two words whose first word is also a verb of its own: (verb, word) -> (module, one-line help).
COMPOUND: dict[tuple[str, str], tuple[str, str]] = {
    ("eval", "compare"): ("doctorsun.eval.compare",
                          "compare two evaluation runs question by question (paired bootstrap CIs, McNemar)"),
}


def _parser(verb: str | None, word: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doctorsun", description="Bilingual medical multimodal LLMs.")
    parser.add_argument("--version", action="version", version=f"doctorsun {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in VERBS.items():
        compound = COMPOUND.get((name, word or "")) if name == verb else None
        p = sub.add_parser(name, help=help_text, description=compound[1] if compound else help_text)
        if compound:
            p.add_argument("compound", choices=[word], metavar=word)
            importlib.import_module(compound[0]).add_arguments(p)
            p.set_defaults(run_module=compound[0])
        elif name == verb:
            group = importlib.import_module(module).add_arguments(p)
            for sub_name, (sub_module, sub_help) in SUBVERBS.get(name, {}).items():
                q = group.add_parser(sub_name, help=sub_help, description=sub_help)
                importlib.import_module(sub_module).add_arguments(q)
                q.set_defaults(run_module=sub_module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if not a.startswith("-")]
    verb = words[0] if words else None
    word = words[1] if len(words) > 1 and (verb, words[1]) in COMPOUND else None
    try:
        args = _parser(verb if verb in VERBS else None, word).parse_args(argv)
        if args.verb is None:
            _parser(None).print_help()
            return 2
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s"
        )
        for noisy in ("httpx", "urllib3", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        module = getattr(args, "run_module", None) or VERBS[args.verb][0]
        result = importlib.import_module(module).run(args)
        return int(result or 0)
    except DoctorSunError as exc:
        print(f"doctorsun: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("doctorsun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
