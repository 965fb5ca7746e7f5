#!/usr/bin/python
"""Ansible module of role ``appliance``: models from a local bundle, checked against their
manifests, placed under paths.models_dir. Runs with the appliance venv's Python (the role sets
ansible_python_interpreter for this task) so that manifests are read by the appliance's own
parser (appliance.models.manifest)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: appliance_model_bundle
short_description: Place models from a local bundle after checking every file's sha256
description:
  - The bundle is a directory, or a tar archive (.tar, .tar.gz, .tar.xz, .tar.bz2), holding
    C(<model>/<file>) for every file of every model listed in I(models), laid out as the model's
    manifest names them (C(whisper-base-en/model.bin)). Nothing is downloaded.
  - Each model's manifest is C(<name>.toml) from the first of I(manifest_dirs) that has one (the
    manifests shipped in models/), else from the bundle itself (an admin's own model).
  - Every needed file is hashed and compared with the manifest's sha256 before anything is
    placed; one wrong or missing file fails the task and leaves models_dir as it was.
  - Files land in C(<models_dir>/<name>/) (hard links from a directory bundle when it is on the
    same filesystem, copies otherwise), and C(<models_dir>/<name>.toml) is written: the manifest
    with C(file:) sources, which the appliance reads before the shipped one, so the model is used
    from there.
options:
  bundle: {description: Directory or tar archive on the managed host., type: path, required: true}
  models: {description: Names of the models to place., type: list, elements: str, required: true}
  models_dir: {description: The appliance's paths.models_dir., type: path, required: true}
  manifest_dirs: {description: Directories searched for <name>.toml first., type: list, elements: path, default: []}
author: appliance
"""

RETURN = r"""
changed_models: {description: Models whose files or manifest were written., type: list, returned: always}
models: {description: Per model, the files verified and the manifest used., type: dict, returned: always}
"""

import hashlib
import os
import tarfile
import tempfile
import tomllib
from pathlib import Path, PurePosixPath

from ansible.module_utils.basic import AnsibleModule

_CHUNK = 1 << 20


def _sha256_stream(f) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return _sha256_stream(f)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


class Bundle:
    """Read access to ``<model>/<file>`` members of a directory or a tar archive."""

    def __init__(self, path: Path):
        self.path = path
        self.tar = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_file():
            self.tar = tarfile.open(path, "r:*")
            for m in self.tar.getmembers():
                name = str(PurePosixPath(m.name))
                self.members[name.removeprefix("./")] = m

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def where(self, rel: str) -> str:
        return f"{self.path}:{rel}" if self.tar is not None else str(self.path / rel)

    def read_text(self, rel: str) -> str | None:
        if self.tar is None:
            p = self.path / rel
            return p.read_text(encoding="utf-8") if p.is_file() else None
        m = self.members.get(rel)
        if m is None or not m.isfile():
            return None
        return self.tar.extractfile(m).read().decode("utf-8")

    def hash(self, rel: str) -> str | None:
        """sha256 of member ``rel``; None if the bundle has no such file."""
        if self.tar is None:
            return _sha256(self.path / rel) if (self.path / rel).is_file() else None
        m = self.members.get(rel)
        return _sha256_stream(self.tar.extractfile(m)) if m is not None and m.isfile() else None

    def stage(self, rel: str, tmp: Path) -> str | None:
        """Put member ``rel`` at ``tmp`` (a hard link when possible); its sha256, None if absent."""
        if self.tar is None:
            src = self.path / rel
            if not src.is_file():
                return None
            try:
                os.link(src, tmp)
                return _sha256(tmp)
            except OSError:  # another filesystem, or links not allowed: copy while hashing
                with open(src, "rb") as inp:
                    return self._copy(inp, tmp)
        m = self.members.get(rel)
        if m is None or not m.isfile():
            return None
        return self._copy(self.tar.extractfile(m), tmp)

    @staticmethod
    def _copy(inp, tmp: Path) -> str:
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            while chunk := inp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return h.hexdigest()


def _problem(m, f, rel: str, actual: str | None, bundle: Bundle, origin: str) -> str:
    if actual is None:
        return (f"model {m.name}: {rel} is not in the bundle {bundle.path} "
                f"(expected sha256 {f.sha256}, from {origin})")
    return (f"model {m.name}: {bundle.where(rel)} has sha256 {actual}, expected {f.sha256} "
            f"(from {origin}): the bundle is damaged or holds another version of the model")


def _toml_str(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in out) + '"'


def derived_manifest(m, origin: str) -> str:
    """The manifest ``m`` with every file read from ``<models_dir>/<name>/<path>``."""
    lines = [
        "# Written by Ansible (role appliance) from the model bundle; do not edit, the next run",
        f"# rewrites it. Checked against: {origin}",
        f"name = {_toml_str(m.name)}",
        f"kind = {_toml_str(m.kind)}",
        f"backend = {_toml_str(m.backend)}",
    ]
    if m.license:
        lines.append(f"license = {_toml_str(m.license)}")
    if m.description:
        lines.append(f"description = {_toml_str(m.description)}")
    if m.sample_rate is not None:
        lines.append(f"sample_rate = {int(m.sample_rate)}")
    for f in m.files:
        lines += ["", "[[files]]", f"path = {_toml_str(f.path)}",
                  f"source = {_toml_str(f'file:{m.name}/{f.path}')}", f"sha256 = {_toml_str(f.sha256)}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bundle": {"type": "path", "required": True},
            "models": {"type": "list", "elements": "str", "required": True},
            "models_dir": {"type": "path", "required": True},
            "manifest_dirs": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        from appliance.models import manifest as mf
        from appliance.models.errors import ManifestError
    except ImportError as exc:
        module.fail_json(msg=f"cannot import the appliance ({exc}): this module runs with the appliance venv's "
                             f"Python (ansible_python_interpreter=<venv>/bin/python)")
    bundle_path = Path(module.params["bundle"])
    models_dir = Path(module.params["models_dir"])
    if not bundle_path.exists():
        module.fail_json(msg=f"the model bundle {bundle_path} does not exist")
    try:
        bundle = Bundle(bundle_path)
    except (OSError, tarfile.TarError) as exc:
        module.fail_json(msg=f"the model bundle {bundle_path} cannot be read: {exc}")

    problems: list[str] = []
    plans = []  # (manifest, origin, [(file, dest)])
    for name in module.params["models"]:
        origin, text = None, None
        for d in module.params["manifest_dirs"]:
            p = Path(d) / f"{name}.toml"
            if p.is_file():
                origin, text = str(p), p.read_text(encoding="utf-8")
                break
        if text is None:
            text = bundle.read_text(f"{name}.toml")
            origin = bundle.where(f"{name}.toml")
        if text is None:
            problems.append(f"model {name}: no manifest {name}.toml in {', '.join(module.params['manifest_dirs'])} "
                            f"or in the bundle {bundle_path}")
            continue
        try:
            m = mf.parse(tomllib.loads(text), Path(f"{name}.toml"))
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"model {name}: manifest {origin} is not valid TOML: {exc}")
            continue
        except ManifestError as exc:
            problems.append(f"model {name}: manifest {origin} is invalid: {'; '.join(exc.problems)}")
            continue
        plans.append((m, origin, [(f, models_dir / m.name / f.path) for f in m.files]))

    # Stage every file that is not already in place, checking each against its sha256.
    staged: list[tuple[Path, Path]] = []
    changed_models: list[str] = []
    report = {}
    try:
        for m, origin, files in plans:
            todo = [(f, dest) for f, dest in files if _sha256(dest) != f.sha256]
            manifest_path = models_dir / f"{m.name}.toml"
            manifest_text = derived_manifest(m, origin)
            try:
                manifest_same = manifest_path.read_text(encoding="utf-8") == manifest_text
            except OSError:
                manifest_same = False
            report[m.name] = {"manifest": origin, "files": [f.path for f, _ in files],
                              "placed": [str(d) for _, d in todo]}
            if todo or not manifest_same:
                changed_models.append(m.name)
            for f, dest in todo:
                rel = f"{m.name}/{f.path}"
                if module.check_mode:
                    actual = bundle.hash(rel)
                    if actual != f.sha256:
                        problems.append(_problem(m, f, rel, actual, bundle, origin))
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(models_dir / m.name, 0o755)
                fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
                os.close(fd)
                os.unlink(tmp)
                tmp = Path(tmp)
                actual = bundle.stage(rel, tmp)
                if actual is not None:
                    staged.append((tmp, dest))
                if actual != f.sha256:
                    problems.append(_problem(m, f, rel, actual, bundle, origin))
        if problems:
            module.fail_json(msg="the model bundle cannot be used: " + "; ".join(problems), problems=problems)
        if not module.check_mode:
            for tmp, dest in staged:
                os.chmod(tmp, 0o644)  # a hard link shares the bundle file's mode: readable by the services
                os.replace(tmp, dest)
            staged.clear()
            for m, origin, _ in plans:
                if m.name in changed_models:
                    path = models_dir / f"{m.name}.toml"
                    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=f".{m.name}.", suffix=".tmp")
                    with os.fdopen(fd, "w", encoding="utf-8") as out:
                        out.write(derived_manifest(m, origin))
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, path)
    except OSError as exc:
        module.fail_json(msg=f"cannot place the models under {models_dir}: {exc}")
    finally:
        for tmp, _ in staged:
            try:
                tmp.unlink()
            except OSError:
                pass
        bundle.close()
    module.exit_json(changed=bool(changed_models), changed_models=changed_models, models=report)


if __name__ == "__main__":
    main()
