"""User errors of the Triton deployment (repository, server launcher, client)."""

from __future__ import annotations

from serve.errors import MissingDependency, ServeError

__all__ = ["ClientError", "MissingDependency", "RepositoryError", "ServerError", "ServerOverloaded"]


class RepositoryError(ServeError):
    """A model repository cannot be written from the given model, or an existing one is malformed."""


class ServerError(ServeError):
    """The Triton Inference Server cannot be found, started, or did not become ready."""


class ClientError(ServeError):
    """A request to a running server failed: refused, unreachable, timed out, or the server said no."""


class ServerOverloaded(ClientError):
    """The server rejected a request as unavailable (queue full or queue timeout: HTTP 503)."""
