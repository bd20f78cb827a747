"""The one parser of version strings and of GPU compute capabilities (torch- and TensorRT-free).

Used by the calibration cache header (`engine_builder.calib_cache.version_code`), the runtime's engine
checks (`serve.runtime.trt`, `serve.runtime.tensorrt_module`), the builder's compute-capability targets
(`engine_builder.backends.trt`), the plugin registration's TensorRT version gate and `drq kernels --arch`.
"""

from __future__ import annotations

import re
from types import ModuleType

from drq.errors import DrqError

_VERSION = re.compile(r"\d+(?:\.\d+)*")
_CAPABILITY = re.compile(r"(?:SM_?)?(?:(\d{1,2})\.(\d)|(\d{1,2})(\d))A?")


class VersionError(DrqError):
    """A version or compute capability given by the user cannot be parsed."""


def parse_version(text: str, what: str = "version", min_parts: int = 2) -> tuple[int, ...]:
    """A user-given version, strictly: "10.8.0" -> (10, 8, 0); needs `min_parts` non-negative numbers.

    Raises:
        VersionError: `<what> '<text>': expected major.minor[.patch], e.g. 10.8.0` ("-1.-2", "ten", "10").
    """
    cleaned = str(text).strip()
    parts = cleaned.split(".")
    if not _VERSION.fullmatch(cleaned) or len(parts) < min_parts:
        raise VersionError(f"{what} {text!r}: expected major.minor[.patch], e.g. 10.8.0")
    return tuple(int(p) for p in parts)


def version_numbers(text: str) -> tuple[int, ...]:
    """The leading numeric parts of a reported version ("10.13.0.35" -> (10, 13, 0, 35),
    "1.7.1.post2" -> (1, 7, 1), "unknown" -> ()): for versions a package or manifest reports."""
    out = []
    for part in str(text).strip().split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def module_version(module: ModuleType) -> tuple[int, int]:
    """(major, minor) of an imported module's `__version__`; (0, 0) when it does not say."""
    numbers = version_numbers(str(getattr(module, "__version__", ""))) + (0, 0)
    return numbers[0], numbers[1]


def parse_compute_capability(text: str) -> tuple[int, int]:
    """ "8.6", "86", "SM86", "sm_86", "sm_90a", "12.0", "120" -> (8, 6) / (9, 0) / (12, 0).

    Raises:
        VersionError: not a compute capability.
    """
    match = _CAPABILITY.fullmatch(str(text).strip().upper())
    if match is None:
        raise VersionError(f"compute capability {text!r}: expected e.g. 8.6, 86 or sm_86")
    major, minor = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return int(major), int(minor)
