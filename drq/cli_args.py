"""The argument parser every `drq` subcommand uses: a usage error is one line, exit 2, no usage dump."""

from __future__ import annotations

import argparse
from typing import NoReturn

from drq.errors import DrqError


class UsageError(DrqError):
    """A command line that its subcommand's parser refuses."""


class CommandParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` instead of printing usage and exiting.

    The dispatcher prints `drq <command>: <message>` and exits 2, so the message carries no prefix.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
