"""The argument parser every `drq` subcommand uses: a usage error is one line, exit 2, no usage dump."""

from __future__ import annotations

import argparse
from typing import NoReturn

from drq.errors import DrqError


class UsageError(DrqError):
    """A command line that its subcommand's parser refuses."""


MAX_THREADS = 256
"""Upper bound of every --threads option: more threads than any CPU drq runs on has cores (onnxruntime
spends minutes creating 100000 of them; torch.set_num_threads refuses negatives with a traceback)."""


def thread_count(text: str) -> int:
    """argparse `type` of --threads: 0 (the library's default) to MAX_THREADS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_THREADS} (0: the library default), got {value}")
    return value


class CommandParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` instead of printing usage and exiting.

    The dispatcher prints `drq <command>: <message>` and exits 2, so the message carries no prefix.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
