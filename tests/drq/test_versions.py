"""drq.versions: the one version parser and the one compute-capability parser."""

from __future__ import annotations

import types

import pytest

from drq.versions import (
    VersionError,
    module_version,
    parse_compute_capability,
    parse_version,
    version_numbers,
)


@pytest.mark.parametrize(
    ("text", "parsed"), [("10.8.0", (10, 8, 0)), ("8.6", (8, 6)), (" 10.13.0.35 ", (10, 13, 0, 35))]
)
def test_parse_version(text: str, parsed: tuple[int, ...]) -> None:
    assert parse_version(text) == parsed


@pytest.mark.parametrize("text", ["-1.-2", "ten", "10", "10.", "10..1", "1.2.x", "", "1e3.2"])
def test_parse_version_refuses(text: str) -> None:
    with pytest.raises(VersionError, match=r"^--tensorrt-version .*: expected major.minor\[.patch\]"):
        parse_version(text, "--tensorrt-version")


def test_reported_versions_are_read_leniently() -> None:
    assert version_numbers("1.7.1.post2") == (1, 7, 1)
    assert version_numbers("unknown") == ()
    assert module_version(types.SimpleNamespace(__version__="11.0.0b3")) == (11, 0)
    assert module_version(types.SimpleNamespace(__version__="10")) == (10, 0)
    assert module_version(types.SimpleNamespace()) == (0, 0)


@pytest.mark.parametrize(
    ("text", "cc"),
    [
        ("8.6", (8, 6)),
        ("86", (8, 6)),
        ("SM86", (8, 6)),
        ("sm_86", (8, 6)),
        ("sm_90a", (9, 0)),
        ("12.0", (12, 0)),
        ("120", (12, 0)),
        ("sm_100", (10, 0)),
    ],
)
def test_parse_compute_capability(text: str, cc: tuple[int, int]) -> None:
    assert parse_compute_capability(text) == cc


@pytest.mark.parametrize("text", ["hopper", "8", "8.", "8.66", "-8.6", "sm_", "1234", ""])
def test_parse_compute_capability_refuses(text: str) -> None:
    with pytest.raises(VersionError, match="expected e.g. 8.6, 86 or sm_86"):
        parse_compute_capability(text)
