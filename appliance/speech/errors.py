"""Errors a speech backend raises, so a service can tell 'cannot start' from 'this one failed'."""


class ModelError(RuntimeError):
    """A model is missing, corrupt or will not load. The message says which file and what to do;
    a service that gets it at start exits non-zero (systemd restarts it) instead of hanging."""


class BackendError(RuntimeError):
    """One recognition or synthesis failed (a server down, a timeout); the service goes on."""
