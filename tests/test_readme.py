"""Keep README.md honest: the CI test command, every `drq` command line, and the files it points to.

Each `drq <sub> ...` line in a README code block is parsed by that subcommand's own argument parser
(`<module>._parser()`, the parser its `main` uses), with abbreviations switched off, so an option that
does not exist, a misspelt choice or a missing required option fails here. Nothing is run: no model,
no torch import, under two seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from drq.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"
# Options the dispatcher itself answers (`drq --help`, `drq --version`).
DISPATCHER_OPTIONS = {"-h", "--help", "help", "--version"}


@dataclass(frozen=True)
class DrqLine:
    """One `drq ...` command found in a README code block."""

    line: int  # 1-based line of README.md where the (continued) command starts
    argv: tuple[str, ...]  # the words after `drq`


def _code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """Fenced code blocks as (first line number, lines), without the fences."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            if current is None:
                current, start = [], number + 1
            else:
                blocks.append((start, current))
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, "README.md: unclosed code block"
    return blocks


def _logical_lines(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """Join backslash continuations; returns (first line number, joined text)."""
    out: list[tuple[int, str]] = []
    buffer, first = "", start
    for offset, line in enumerate(lines):
        if not buffer:
            first = start + offset
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        out.append((first, buffer + line))
        buffer = ""
    if buffer:
        out.append((first, buffer))
    return out


def drq_lines(text: str) -> list[DrqLine]:
    """Every `drq` command in the code blocks of `text`, split at `&&`, `||`, `;` and `|`."""
    found: list[DrqLine] = []
    for start, lines in _code_blocks(text):
        for number, logical in _logical_lines(start, lines):
            lexer = shlex.shlex(logical, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words = list(lexer)
            command: list[str] = []
            for word in [*words, ";"]:
                if word and set(word) <= set(";&|"):
                    # Leading VAR=value assignments belong to the shell, not to drq.
                    while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
                        command.pop(0)
                    if command and command[0] == "drq":
                        found.append(DrqLine(number, tuple(command[1:])))
                    command = []
                else:
                    command.append(word)
    return found


def parse_error(argv: tuple[str, ...]) -> str | None:
    """Why `drq *argv` would be refused by its parser, or None when it parses."""
    if not argv:
        return "no subcommand"
    name, rest = argv[0], list(argv[1:])
    if name in DISPATCHER_OPTIONS:
        return None if not rest else f"unexpected words after {name}: {rest}"
    if name not in SUBCOMMANDS:
        return f"unknown subcommand {name!r}"
    module = importlib.import_module(SUBCOMMANDS[name].target.split(":")[0])
    parser = module._parser()
    # argparse accepts unique prefixes (--thread for --threads); the README must spell options out.
    parser.allow_abbrev = False
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(rest)
    except SystemExit as err:
        if err.code in (0, None) and ("-h" in rest or "--help" in rest):
            return None
        lines = stderr.getvalue().strip().splitlines()
        return lines[-1] if lines else f"exit {err.code}"
    except Exception as err:  # the _Parser subclasses raise their package's one-line error instead
        return f"{type(err).__name__}: {err}"
    return None


def _readme_text() -> str:
    if not README.is_file():
        pytest.fail(f"{README}: missing")
    return README.read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    marker = next(i for i, line in enumerate(ci_lines) if "README" in line and "verbatim" in line)
    command = ci_lines[marker + 1]
    assert command.startswith("pip install torch==") and command.endswith("python -m pytest -q"), command
    text = _readme_text()
    section = re.search(r"^##+ Run the tests\s*$(.*?)(?=^##+ |\Z)", text, re.M | re.S)
    assert section, "README.md: no 'Run the tests' heading"
    block_lines = [line.strip() for _, lines in _code_blocks(section.group(1)) for line in lines]
    assert command in block_lines, f"README.md 'Run the tests' lacks the .ci/run command {command!r}"


def test_every_drq_command_parses_with_its_own_parser() -> None:
    lines = drq_lines(_readme_text())
    assert len(lines) >= len(SUBCOMMANDS), f"only {len(lines)} drq command lines found"
    failures = [
        f"README.md:{d.line}: drq {' '.join(d.argv)}: {why}"
        for d in lines
        if (why := parse_error(d.argv)) is not None
    ]
    assert not failures, "\n".join(failures)


def test_every_subcommand_has_an_example() -> None:
    used = {d.argv[0] for d in drq_lines(_readme_text()) if d.argv}
    missing = sorted(set(SUBCOMMANDS) - used)
    assert not missing, f"README.md: no example for drq {', '.join(missing)}"


def test_the_checker_rejects_what_argparse_rejects() -> None:
    text = (
        "```\n"
        "pip install -e . && drq eval --onnx m.onnx --data d \\\n"
        "    --thread 2   # abbreviation of --threads\n"
        "TRITON_INTERPRET=1 drq kernels --out ptx --no-such-option\n"
        "drq export --lowering int3 -o m.onnx; drq quantize --arch imdn\n"
        "drq frobnicate\n"
        "drq zoo --weights-dir w --bench-dir b --sets Set5 Set14  # fine\n"
        "```\n"
    )
    found = drq_lines(text)
    assert [(d.line, d.argv[0]) for d in found] == [
        (2, "eval"),
        (4, "kernels"),
        (5, "export"),
        (5, "quantize"),
        (6, "frobnicate"),
        (7, "zoo"),
    ]
    assert found[0].argv[-2:] == ("--thread", "2")
    errors = [parse_error(d.argv) for d in found]
    assert "unrecognized arguments: --thread 2" in errors[0]
    assert "unrecognized arguments: --no-such-option" in errors[1]
    assert "invalid choice: 'int3'" in errors[2]
    assert "required" in errors[3] and "--weights" in errors[3]
    assert errors[4] == "unknown subcommand 'frobnicate'"
    assert errors[5] is None


def test_repository_paths_named_in_the_readme_exist() -> None:
    text = _readme_text()
    paths = set(
        re.findall(r"`((?:results|docs|tests|calib|engine_builder|plugins|serve|\.ci)/[^`\s*{}<>]+)`", text)
    )
    assert paths, "README.md names no repository files"
    missing = []
    for path in sorted(paths):
        file, _, test = path.partition("::")
        if not (REPO / file).exists():
            missing.append(path)
        elif test and f"def {test}(" not in (REPO / file).read_text(encoding="utf-8"):
            missing.append(path)
    assert not missing, f"README.md names missing files or tests: {missing}"
