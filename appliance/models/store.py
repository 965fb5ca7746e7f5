"""Where models are, whether they are intact, and putting together the ones made of parts.

Manifests are read from ``paths.models_dir`` first (the admin's own models and overrides),
then from the repository's ``models/``. A model whose files all sit in one place (one
installed package, or one directory under models_dir) is used where it is; any other
(files made of parts, files from several packages) is built by ``setup`` into
``<models_dir>/<name>/``.

``locate`` is what a service calls at start. Hashing every file each time would cost about
0.3 s per 150 MB, so a file's sha256 is stored in a stamp with the file's size, mtime and
inode; a later ``locate`` re-hashes only a file whose stat no longer matches its stamp.
``verify`` always hashes everything. Stamps live in ``<models_dir>/<name>/.verified.json`` for
a built model and in ``<models_dir>/.verified/<name>.json`` otherwise (site-packages may be
read-only). When models_dir cannot be written, nothing is cached and every ``locate`` hashes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

import appliance

from ..config import Config
from . import manifest as mf
from .errors import ManifestError, ModelError
from .manifest import Manifest, ModelFile, Part, Source

log = logging.getLogger("appliance.models")

STAMP_NAME = ".verified.json"
STAMP_DIR = ".verified"
_LOCK_NAME = ".setup.lock"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_CHUNK = 1 << 20


# ---------------------------------------------------------------- manifests


def models_dir(config: Config) -> Path:
    return Path(config.paths.models_dir)


def repo_manifest_dir() -> Path | None:
    """The repository's ``models/``: beside ``appliance/`` when the package runs from a source
    checkout, else in the directory pip installed it from (PEP 610 direct_url.json; the ansible
    role installs from /opt/appliance/src, which holds models/). None when neither has one."""
    roots = [Path(appliance.__file__).resolve().parents[1]]
    for dist in metadata.distributions(name="appliance"):  # a stray appliance.egg-info may come first
        try:
            url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(url, str) and url.startswith("file://"):
            roots.append(Path(unquote(urlparse(url).path)))
    for root in roots:
        if (root / "models").is_dir() and (root / "pyproject.toml").is_file():
            return root / "models"
    return None


def manifest_dirs(config: Config) -> list[Path]:
    """Where manifests are looked for, first match winning: models_dir, then the repo's models/."""
    dirs = [models_dir(config)]
    repo = repo_manifest_dir()
    if repo is not None and repo != dirs[0].resolve():
        dirs.append(repo)
    return dirs


def _manifest_paths(config: Config) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in manifest_dirs(config):
        try:
            entries = sorted(p for p in d.glob("*.toml") if p.is_file())
        except OSError:
            continue
        for p in entries:
            found.setdefault(p.stem, p)
    return found


def scan_manifests(config: Config) -> tuple[dict[str, Manifest], list[ManifestError]]:
    """Every manifest by name (models_dir overriding the repo), and the invalid ones apart."""
    good: dict[str, Manifest] = {}
    bad: list[ManifestError] = []
    for name, path in sorted(_manifest_paths(config).items()):
        try:
            good[name] = mf.load(path)
        except ManifestError as exc:
            bad.append(exc)
    return good, bad


def load_manifests(config: Config) -> dict[str, Manifest]:
    """Every manifest by name; ManifestError (naming the file and key) for the first invalid one."""
    good, bad = scan_manifests(config)
    if bad:
        raise bad[0]
    return good


def get_manifest(config: Config, name: str) -> Manifest:
    """The manifest of one model (only its own file is read); ModelError when there is none."""
    dirs = manifest_dirs(config)
    if _NAME_RE.match(name):
        for d in dirs:
            path = d / f"{name}.toml"
            if path.is_file():
                return mf.load(path)
    known = ", ".join(sorted(_manifest_paths(config))) or "none"
    raise ModelError(f'no model named "{name}": no {name}.toml in {" or ".join(map(str, dirs))} '
                     f"(known models: {known})")


# ---------------------------------------------------------------- where files are


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def _pip_hint(model: str, dists: list[str]) -> str:
    pkgs = " ".join(dists)
    noun = "package" if len(dists) == 1 else "packages"
    return (f"model {model} needs the Python {noun} {pkgs}: pip install {pkgs} "
            f"(or scripts/test / ansible installs it)")


def _dist_root(dist: str, model: str) -> metadata.Distribution:
    try:
        return metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise ModelError(_pip_hint(model, [dist])) from None


def source_path(config: Config, source: Source, model: str) -> Path:
    """The file a source names; ModelError (with the pip command) when its package is missing."""
    if source.scheme == "file":
        return models_dir(config) / source.path
    return Path(_dist_root(source.dist, model).locate_file(source.path))


def model_path(config: Config, m: Manifest) -> Path:
    """What a loader opens: the model's directory, or its one file for a one-file model."""
    if m.in_place:
        scheme, dist, root = m.root
        base = (models_dir(config) / root if scheme == "file"
                else Path(_dist_root(dist, m.name).locate_file(root or ".")))
    else:
        base = models_dir(config) / m.name
    return base / m.files[0].path if len(m.files) == 1 else base


def _targets(config: Config, m: Manifest) -> list[tuple[ModelFile, Path]]:
    """Each file of the model and where it is read from at run time."""
    if m.in_place:
        return [(f, source_path(config, f.parts[0].source, m.name)) for f in m.files]
    base = models_dir(config) / m.name
    return [(f, base / f.path) for f in m.files]


# ---------------------------------------------------------------- hashing and stamps


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _stamp_path(config: Config, m: Manifest) -> Path:
    if m.in_place:
        return models_dir(config) / STAMP_DIR / f"{m.name}.json"
    return models_dir(config) / m.name / STAMP_NAME


class _Stamps:
    """sha256 of files as last hashed, keyed by path, valid while size/mtime/inode match."""

    def __init__(self, path: Path, root: Path):
        self.path = path
        self.root = root  # models_dir: nothing is written unless it exists
        self.dirty = False
        try:
            data = json.loads(path.read_text())
            self.entries = data["files"] if isinstance(data.get("files"), dict) else {}
        except (OSError, ValueError, AttributeError, KeyError):
            self.entries = {}

    @staticmethod
    def _key(st: os.stat_result) -> dict:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}

    def get(self, path: Path, st: os.stat_result) -> str | None:
        entry = self.entries.get(str(path))
        if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in self._key(st).items()):
            return None
        sha = entry.get("sha256")
        return sha if isinstance(sha, str) else None

    def put(self, path: Path, st: os.stat_result, sha: str) -> None:
        entry = {"path": str(path), **self._key(st), "sha256": sha}
        if self.entries.get(str(path)) != entry:
            self.entries[str(path)] = entry
            self.dirty = True

    def save(self) -> None:
        if not self.dirty or not self.root.is_dir():
            return
        tmp = None
        try:
            self.path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".stamp.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "files": self.entries}, f, indent=1)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError as exc:
            log.debug("cannot write the stamp %s (%s): files will be hashed at every start", self.path, exc)
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _hash(path: Path, stamps: _Stamps, full: bool) -> tuple[str, str]:
    """``(state, sha256 or reason)``; state is ok-to-compare ("hashed"), "missing" or "unreadable"."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", ""
    except OSError as exc:
        return "unreadable", exc.strerror or str(exc)
    if not stat.S_ISREG(st.st_mode):
        return "unreadable", "not a regular file"
    cached = None if full else stamps.get(path, st)
    if cached is not None:
        return "hashed", cached
    try:
        actual = sha256_file(path)
    except OSError as exc:
        return "unreadable", exc.strerror or str(exc)
    stamps.put(path, st, actual)
    return "hashed", actual


# ---------------------------------------------------------------- checking


@dataclass(frozen=True)
class Check:
    """One finding of ``verify``: a file that is fine, or a problem with what to do about it.
    ``status``: ok, missing package, not set up, missing, corrupt, unreadable, invalid manifest."""

    model: str
    status: str
    message: str
    file: str = ""
    path: Path | None = None
    expected: str = ""
    actual: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        return f"{self.model}: {self.message}"

    def error(self) -> str:
        """The message of the ModelError ``locate`` raises for this problem."""
        sep = " " if self.status == "missing package" else ": "
        return f"model {self.model}{sep}{self.message}"


def _file_fix(m: Manifest, f: ModelFile, path: Path, status: str) -> str:
    if not m.in_place:
        return f"run: appliancectl models setup {m.name}"
    src = f.parts[0].source
    if src.scheme == "pypi":
        return (f"reinstall the package: pip install --force-reinstall {src.dist} "
                f"(or, if the package was meant to change, update sha256 in {m.origin})")
    if status == "missing":
        return f"place the file at {path} (see models/README.md, \"Adding a model\")"
    return f"replace {path} with the right file, or correct files.sha256 in {m.origin}"


def _inspect(config: Config, m: Manifest, full: bool) -> list[Check]:
    """One Check per file (or one for the whole model when it cannot be looked at)."""
    missing = [d for d in m.distributions if not _installed(d)]
    if m.in_place and missing:
        hint = _pip_hint(m.name, missing)
        return [Check(m.name, "missing package", hint.removeprefix(f"model {m.name} "),
                      fix=hint.partition(": ")[2])]
    stamps = _Stamps(_stamp_path(config, m), models_dir(config))
    found = [(f, path, *_hash(path, stamps, full)) for f, path in _targets(config, m)]
    stamps.save()
    if not m.in_place and all(state == "missing" for *_, state, _ in found):
        base = models_dir(config) / m.name
        fix = (f"pip install {' '.join(missing)}, then " if missing else "") + f"run: appliancectl models setup {m.name}"
        return [Check(m.name, "not set up", f"not set up ({base}/ has no {m.files[0].path}); {fix}",
                      path=base, fix=fix)]
    checks = []
    for f, path, state, value in found:
        fix = _file_fix(m, f, path, state)
        if state == "missing" and not m.in_place:
            checks.append(Check(m.name, "not set up", f"{f.path} is not set up ({path} does not exist); {fix}",
                                f.path, path, f.sha256, fix=fix))
        elif state == "missing":
            checks.append(Check(m.name, "missing", f"{f.path} is missing: {path} does not exist; {fix}",
                                f.path, path, f.sha256, fix=fix))
        elif state == "unreadable":
            checks.append(Check(m.name, "unreadable", f"{f.path} cannot be read: {path}: {value}",
                                f.path, path, f.sha256, fix=f"check the permissions of {path}"))
        elif value != f.sha256:
            checks.append(Check(m.name, "corrupt", f"{f.path} is corrupt: {path} has sha256 {value}, "
                                f"expected {f.sha256}; {fix}", f.path, path, f.sha256, value, fix))
        else:
            checks.append(Check(m.name, "ok", f"{f.path} ok ({path})", f.path, path, f.sha256, value))
    return checks


def _invalid(exc: ManifestError) -> str:
    return "; ".join([f"manifest {exc.source} is invalid", *exc.problems])


def verify(config: Config, name: str | None = None) -> list[Check]:
    """Hash every file of one model (or of all, invalid manifests included as problems)."""
    if name is not None:
        try:
            manifests = [get_manifest(config, name)]
        except ManifestError as exc:
            return [Check(name, "invalid manifest", _invalid(exc), path=Path(exc.source))]
        errors: list[ManifestError] = []
    else:
        good, errors = scan_manifests(config)
        manifests = list(good.values())
    checks = [Check(Path(e.source).stem, "invalid manifest", _invalid(e), path=Path(e.source)) for e in errors]
    for m in manifests:
        checks += _inspect(config, m, full=True)
    return checks


def status(config: Config, m: Manifest) -> str:
    """One word for listings, from the stamps (as fast as ``locate``): ok, missing package,
    not set up, missing, corrupt or unreadable."""
    for c in _inspect(config, m, full=False):
        if not c.ok:
            return c.status
    return "ok"


def locate(config: Config, name: str) -> Path:
    """The directory (or, for a one-file model, the file) a loader opens, after checking every
    file against its sha256 (through the stamps). ModelError says what is wrong and what to run."""
    m = get_manifest(config, name)
    for c in _inspect(config, m, full=False):
        if not c.ok:
            raise ModelError(c.error())
    return model_path(config, m)


# ---------------------------------------------------------------- setup


@dataclass(frozen=True)
class SetupResult:
    """``status``: built, already set up, in place (nothing to build) or failed."""

    model: str
    status: str
    message: str
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def line(self) -> str:
        return f"{self.model}: {self.message}"


def setup(config: Config, name: str | None = None) -> list[SetupResult]:
    """Build the models made of parts into ``<models_dir>/<name>/`` (atomically, checked against
    their sha256), and fully check the others, recording stamps so services start fast. A model
    already built is only checked. ModelError only for an unknown NAME."""
    if name is not None:
        try:
            manifests = [get_manifest(config, name)]
        except ManifestError as exc:
            return [SetupResult(name, "failed", _invalid(exc))]
        errors: list[ManifestError] = []
    else:
        good, errors = scan_manifests(config)
        manifests = list(good.values())
    results = [SetupResult(Path(e.source).stem, "failed", _invalid(e)) for e in errors]
    for m in manifests:
        results.append(_setup_one(config, m))
    return results


def _setup_one(config: Config, m: Manifest) -> SetupResult:
    if m.in_place:
        bad = [c for c in _inspect(config, m, full=True) if not c.ok]
        if bad:
            return SetupResult(m.name, "failed", "; ".join(c.message for c in bad))
        path = model_path(config, m)
        return SetupResult(m.name, "in place", f"in place, nothing to build ({len(m.files)} file(s) verified "
                                               f"at {path})", path)
    base = models_dir(config) / m.name
    try:
        base.mkdir(parents=True, exist_ok=True)
        lock = open(base / _LOCK_NAME, "w")
    except OSError as exc:
        return SetupResult(m.name, "failed", f"cannot write {base}: {exc.strerror or exc}; run setup as a user "
                                             f"who can write paths.models_dir ({models_dir(config)})", base)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in base.glob(".*.tmp"):  # left by a setup that died; we hold the lock
            stale.unlink(missing_ok=True)
        stamps = _Stamps(base / STAMP_NAME, models_dir(config))
        built = []
        for f in m.files:
            target = base / f.path
            state, value = _hash(target, stamps, full=True)
            if state == "hashed" and value == f.sha256:
                continue
            sources = [(p, source_path(config, p.source, m.name)) for p in f.parts]
            _assemble(m, f, target, sources)
            stamps.put(target, os.stat(target), f.sha256)
            n = target.stat().st_size
            size = f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
            built.append(f"joined {f.path} from {len(f.parts)} parts ({size})" if f.assembled
                         else f"copied {f.path} ({size})")
        stamps.save()
    except ModelError as exc:
        return SetupResult(m.name, "failed", str(exc), base)
    except OSError as exc:
        return SetupResult(m.name, "failed", f"cannot write {exc.filename or base}: {exc.strerror or exc}", base)
    finally:
        lock.close()
    path = model_path(config, m)
    if not built:
        return SetupResult(m.name, "already set up", f"already set up at {path} ({len(m.files)} file(s) verified)",
                           path)
    return SetupResult(m.name, "built", f"set up in {base}: {', '.join(built)}", path)


def _assemble(m: Manifest, f: ModelFile, target: Path, sources: list[tuple[Part, Path]]) -> None:
    """Write the concatenated parts to a temp file beside ``target``, check every part and the
    whole against their sha256, then rename it into place (a reader never sees half a file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        whole = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part, src in sources:
                h = hashlib.sha256()
                try:
                    inp = open(src, "rb")
                except FileNotFoundError:
                    raise ModelError(f"{f.path}: the part {src} does not exist; "
                                     f"{_part_fix(m, part, 'missing')}") from None
                with inp:
                    while chunk := inp.read(_CHUNK):
                        h.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != part.sha256:
                    raise ModelError(f"{f.path}: the part {src} is corrupt: sha256 {h.hexdigest()}, expected "
                                     f"{part.sha256}; {_part_fix(m, part, 'corrupt')}")
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != f.sha256:
            raise ModelError(f"{f.path}: the parts put together have sha256 {whole.hexdigest()}, expected "
                             f"{f.sha256}; the parts or the order in {m.origin} are wrong")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _part_fix(m: Manifest, part: Part, status: str) -> str:
    if part.source.scheme == "pypi":
        return f"reinstall the package: pip install --force-reinstall {part.source.dist}"
    if status == "missing":
        return "place the file there (see models/README.md)"
    return f"replace it with the right file, or correct the part's sha256 in {m.origin}"
