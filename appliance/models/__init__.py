"""Model manifests and files: where each model is, whether it is intact, and setup of the
models made of parts. Nothing here downloads: models come from installed Python packages or
from files the admin places under ``paths.models_dir`` (see models/README.md)."""

from .errors import ManifestError, ModelError
from .manifest import Manifest, ModelFile, Part, Source
from .store import (Check, SetupResult, get_manifest, load_manifests, locate, manifest_dirs, model_path,
                    scan_manifests, setup, status, verify)

__all__ = ["Check", "ManifestError", "Manifest", "ModelError", "ModelFile", "Part", "SetupResult", "Source",
           "get_manifest", "load_manifests", "locate", "manifest_dirs", "model_path", "scan_manifests", "setup",
           "status", "verify"]
