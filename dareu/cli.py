"""The `dareu` command line: one table of subcommands, each living in its own module.

A command module defines `add_arguments(parser)` and `run(args) -> int`, and imports heavy libraries
inside `run` so `dareu --help` stays fast. Every command takes `key=value` config overrides where it
has a config. Bad input stops with one line on stderr and exit code 2, before any expensive work.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from dareu.errors import DareUError

# name -> (module, one-line help). Read top to bottom: this is the whole command surface.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("dareu.commands.prepare", "build the offline world, its tokenizer and the base/target/retain models"),
    "world": ("dareu.commands.world", "write only the world's dataset (no models)"),
    "eval": ("dareu.commands.evaluate", "evaluate a model or run folder (TOFU/MUSE metrics, fact leakage, attribution)"),
    "unlearn": ("dareu.commands.unlearn", "unlearn a forget split with a loss-based method or RL de-attribution"),
    "train-attributor": ("dareu.commands.train_attributor", "train and validate an attribution model of data owners"),
    "attack": ("dareu.commands.attack", "attack an unlearned model (relearning, quantization, probes): what comes back"),
    "compare": ("dareu.commands.compare", "run and evaluate several methods, write a comparison report"),
    "demo": ("dareu.commands.demo", "the whole pipeline on the embedded world, ending in the comparison table"),
    "g-effect": ("dareu.commands.geffect", "G-effect of an objective on forget and retain risk"),
    "convert-gguf": ("dareu.commands.convert_gguf", "convert a GGUF model file into an HF model folder (no hub needed)"),
    "serve": ("dareu.commands.serve", "the de-attribution service: removal requests over HTTP, run as Ray jobs"),
    "submit": ("dareu.commands.jobs", "submit any dareu command as a Ray job"),
    "status": ("dareu.commands.jobs", "status of a submitted Ray job"),
    "logs": ("dareu.commands.jobs", "logs of a submitted Ray job"),
}


def command_module(name: str):
    return importlib.import_module(COMMANDS[name][0])


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Only the command named in `argv` gets its flags and config keys (its module imports its
    configs); the others are listed by name and help, so `dareu --help` imports nothing heavy."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="dareu", description="Unlearning by de-attribution, and its baselines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == chosen:
            module = command_module(name)
            add = getattr(module, f"add_{name.replace('-', '_')}_arguments", None) or module.add_arguments
            add(p)
            p.add_argument("--threads", type=int, default=None, metavar="N",
                           help="torch CPU threads (default: 1 for a model under 20M parameters, else the cores "
                                "other processes leave free; env DAREU_THREADS)")
    return parser


def unknown_command(argv: list[str]) -> str | None:
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is None or chosen in COMMANDS:
        return None
    close = difflib.get_close_matches(chosen, list(COMMANDS), n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else f"commands: {', '.join(COMMANDS)}"
    return f"dareu: error: unknown command {chosen!r}; {hint}"


def _environment() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # ray 2.60's token auth breaks the jobs CLI otherwise
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    _environment()
    argv = sys.argv[1:] if argv is None else list(argv)
    message = unknown_command(argv)
    if message:
        print(message, file=sys.stderr)
        return 2
    args = build_parser(argv).parse_args(argv)
    module = command_module(args.command)
    if args.threads is not None:
        if args.threads < 1:
            print(f"dareu {args.command}: error: --threads {args.threads}: give a number of threads >= 1", file=sys.stderr)
            return 2
        from dareu import threads

        threads.pin(args.threads, "--threads", user=True)
    run = getattr(module, f"run_{args.command.replace('-', '_')}", None) or module.run
    try:
        return int(run(args) or 0)
    except DareUError as err:
        print(f"dareu {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
