"""Errors a speech backend raises, so a service can tell 'cannot start' from 'this one failed'."""

from ..models.errors import ModelError

__all__ = ["BackendError", "ModelError"]


class BackendError(RuntimeError):
    """One recognition or synthesis failed (a server down, a timeout); the service goes on."""
