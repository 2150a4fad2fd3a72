"""Option types shared by several subcommands: each turns a command-line string into a value
or says in one line what is wrong with it."""

from __future__ import annotations

import argparse

from neuralworld.errors import UserError


def size_type(text: str) -> tuple[int, int]:
    """argparse type of the --size options: 'WIDTHxHEIGHT' -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 256x192") from None
    if not (0 < w <= 8192 and 0 < h <= 8192):
        raise argparse.ArgumentTypeError(f"{text}: each side must be within 1..8192 pixels")
    return w, h


def parse_horizons(text: str) -> tuple[int, ...]:
    """The --horizons option: comma-separated whole numbers, each 1 or more."""
    try:
        horizons = tuple(int(h) for h in text.split(","))
    except ValueError:
        raise UserError(f"--horizons {text}: give whole numbers separated by commas") from None
    if not horizons or min(horizons) < 1:
        raise UserError(f"--horizons {text}: horizons must be 1 or more")
    return horizons


def port_type(text: str) -> int:
    """argparse type of the --port options: a TCP port, 0 for any free one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number, 0..65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: must be within 0..65535, or 0 for any free port")
    return port
