"""User errors of the torch-free contracts, and the base every drq user error derives from.

Messages are one line, `<file or object>: <what is wrong>[; <what to do>]`. The `drq` dispatcher prints
any `DrqError` that way with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DrqError(Exception):
    """Base of every user error raised anywhere in drq (contracts, calib, plugins, builder, serve)."""


class ImageError(DrqError):
    """An image or dataset folder cannot be used."""


class RecipeError(DrqError):
    """A recipe file is malformed, of an unknown schema version, or does not match the model."""


class ManifestError(DrqError):
    """An engine manifest is missing, malformed or of an unknown schema version."""


class ArtifactError(DrqError):
    """An output artifact cannot be written where the user asked."""


class MissingDependency(DrqError, ImportError):
    """An optional package needed by the requested feature is not installed."""
