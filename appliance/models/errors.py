"""Errors about model files: what is missing or wrong, and what to do about it."""

from __future__ import annotations

from ..config.typecheck import render_problems


class ModelError(RuntimeError):
    """A model is missing, corrupt or will not load. The message says which file and what to do;
    a service that gets it at start exits non-zero (systemd restarts it) instead of hanging."""


class ManifestError(ModelError):
    """A manifest (``models/<name>.toml``) that cannot be used. ``problems`` holds one line per
    bad key, each starting with the key (``files[1].sha256: ...``)."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"manifest {source} is invalid: " + "; ".join(problems))

    def render(self) -> str:
        return render_problems(f"manifest {self.source}", self.problems)
