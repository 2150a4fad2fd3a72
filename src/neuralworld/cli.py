"""The `neuralworld` command: one subcommand per pipeline step, no logic of its own.

Each subcommand lives in a module with `add_arguments(parser)` and `run(args) -> int`.
Only the module of the chosen subcommand is imported, so `neuralworld --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from neuralworld import __version__
from neuralworld.errors import UserError, os_error_line

# name -> (module, one-line help)
COMMANDS = {
    "import": ("neuralworld.capture.importer", "make a capture from a video or image folder and its motion"),
    "info": ("neuralworld.capture.info", "describe a capture: size, motion statistics, contact sheet"),
    "synth": ("neuralworld.capture.synth", "render a capture of a procedural forest trail with known poses"),
    "record": ("neuralworld.record.server", "record a walk with a phone's browser (camera + motion sensors)"),
    "train": ("neuralworld.train", "train a world on captures"),
    "rollout": ("neuralworld.rollout", "drive a world with recorded or given controls and write an MP4"),
    "eval": ("neuralworld.evaluate", "measure a world on held-out captures: metrics.json + HTML report"),
    "ablate": ("neuralworld.ablate", "train and evaluate the reference's recipe ladder at equal compute"),
    "export": ("neuralworld.export", "export a world to ONNX and the files the browser player needs"),
    "play": ("neuralworld.play", "serve the browser player for a world on this machine"),
    "demo": ("neuralworld.demo", "the whole loop on a built-in scene: synth, short training, export, play"),
    "bench": ("neuralworld.bench", "speed figures: frames/s per runtime, training samples/s"),
}


DEBUG_HELP = "on an error other than bad input, show the full Python traceback"


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, like every other failure; the usage is one --help away
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="neuralworld",
        description="Turn a recording of a place into a playable neural world: "
        "import -> train -> eval -> export -> play. `neuralworld demo` runs it all on a built-in scene.",
    )
    parser.add_argument("--version", action="version", version=f"neuralworld {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        # also after the command; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure ends in one line on stderr: `neuralworld CMD: error: ...`
    with exit status 2 for bad input or a machine's trouble (a full disk), 1 for a bug."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    name = f"neuralworld {args.command}"
    try:
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        line = os_error_line(e) if isinstance(e, OSError) else None
        if line is not None:  # the machine's trouble, not the program's: a full disk, a permission
            print(f"{name}: error: {line}", file=sys.stderr)
            return 2
        # the last resort: a bug, in one line (the traceback is one --debug away)
        text = " ".join(str(e).split())
        text = text if len(text) <= 300 else text[:300] + "..."
        print(f"{name}: error: {type(e).__name__}: {text} (please report this bug to the neuralworld developers, "
              "with the output of the same command run with --debug)", file=sys.stderr)
        return 1
