"""Model manifests: ``<name>.toml`` files saying what a model is made of and the sha256 of
every file. The format is described in models/README.md.

A file comes from one source, or from ``parts`` concatenated at setup. A source is
``pypi:<distribution>:<path inside the installed distribution>`` or ``file:<path under
paths.models_dir>``; nothing is ever downloaded.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ManifestError

KINDS = ("asr", "tts", "llm", "vad", "turn")
# The loaders that exist for each kind (appliance/speech, the agent). A new backend is added here.
BACKENDS = {
    "asr": ("faster-whisper",),
    "tts": ("piper",),
    "llm": ("llama-cpp",),
    "vad": ("silero",),  # Silero's ONNX: vad.backend onnx or tensorrt
}
SCHEMES = ("pypi", "file")

_TOP_KEYS = ("name", "kind", "backend", "license", "description", "sample_rate", "files", "engine")
_ENGINE_KEYS = ("onnx", "precision", "shapes")
_SHAPE_KEYS = ("min", "opt", "max")
PRECISIONS = ("fp16", "fp32")
_FILE_KEYS = ("path", "sha256", "source", "parts")
_PART_KEYS = ("source", "sha256")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_DIST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SOURCE_FORMS = "pypi:<distribution>:<path in the package>, file:<path under paths.models_dir>"


@dataclass(frozen=True)
class Source:
    """Where bytes come from. ``dist`` is set for ``pypi:`` sources; ``path`` is inside the
    installed distribution (pypi) or relative to ``paths.models_dir`` (file)."""

    scheme: str
    path: str
    dist: str | None = None

    def __str__(self) -> str:
        return f"pypi:{self.dist}:{self.path}" if self.scheme == "pypi" else f"file:{self.path}"

    @property
    def origin(self) -> str:
        """Short form for listings: ``pypi:<dist>`` or ``file:<path>``."""
        return f"pypi:{self.dist}" if self.scheme == "pypi" else str(self)


@dataclass(frozen=True)
class Part:
    source: Source
    sha256: str


@dataclass(frozen=True)
class ModelFile:
    """One file of a model. ``path`` is its name inside the model directory; its bytes are
    ``parts`` concatenated, a single part being the file as it is."""

    path: str
    sha256: str
    parts: tuple[Part, ...]

    @property
    def assembled(self) -> bool:
        """True when the file is made from several parts (and so must be built by setup)."""
        return len(self.parts) > 1


@dataclass(frozen=True)
class EngineSpec:
    """How a GPU box turns one of the model's ONNX files into a TensorRT engine (the manifest's
    ``[engine]`` table): the precision, and one optimisation profile giving the min/opt/max
    shape of every input whose shape varies. An engine built from another spec is stale."""

    onnx: str  # a files[].path of this model
    precision: str = "fp16"
    shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...] = ()

    def as_dict(self) -> dict:
        return {"onnx": self.onnx, "precision": self.precision,
                "shapes": {n: {"min": list(a), "opt": list(b), "max": list(c)} for n, a, b, c in self.shapes}}


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    backend: str
    files: tuple[ModelFile, ...]
    license: str = ""
    description: str = ""
    sample_rate: int | None = None
    origin: Path | None = None  # the manifest file it was read from
    engine: EngineSpec | None = None  # GPU box: how to build its TensorRT engine

    @property
    def in_place(self) -> bool:
        """True when the model is used where its files already are: no file has several parts,
        and every file sits under one common root of one source (one distribution, or
        models_dir) under its own ``path``. Otherwise setup assembles it under
        ``<models_dir>/<name>/``."""
        return _in_place_root(self) is not None

    @property
    def root(self) -> tuple[str, str | None, str] | None:
        """``(scheme, dist, root)`` of an in-place model: its files are ``root + path``."""
        return _in_place_root(self)

    @property
    def sources(self) -> list[str]:
        """The distinct origins (``pypi:<dist>``, ``file:<path>``), in manifest order."""
        seen: list[str] = []
        for f in self.files:
            for p in f.parts:
                if p.source.origin not in seen:
                    seen.append(p.source.origin)
        return seen

    @property
    def distributions(self) -> list[str]:
        """The Python packages the model's files come from."""
        seen: list[str] = []
        for f in self.files:
            for p in f.parts:
                if p.source.dist and p.source.dist not in seen:
                    seen.append(p.source.dist)
        return seen


def _in_place_root(m: Manifest) -> tuple[str, str | None, str] | None:
    roots = set()
    for f in m.files:
        if len(f.parts) != 1:
            return None
        src = f.parts[0].source
        if src.path != f.path and not src.path.endswith("/" + f.path):
            return None
        roots.add((src.scheme, src.dist, src.path[: len(src.path) - len(f.path)]))
    return roots.pop() if len(roots) == 1 else None


def load(path: str | Path) -> Manifest:
    """Read and check one manifest; ManifestError lists every problem, naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), [f"is not valid TOML: {exc}"]) from None
    return parse(data, path)


def parse(data: dict, path: str | Path) -> Manifest:
    path = Path(path)
    problems: list[str] = []

    def text(key: str, required: bool = True) -> str:
        value = data.get(key)
        if value is None:
            if required:
                problems.append(f"{key}: missing (a string)")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            problems.append(f"{key}: {value!r} must be a {'non-empty ' * required}string")
            return ""
        return value

    _unknown(data, _TOP_KEYS, "", problems)
    name = text("name")
    if name and not _NAME_RE.match(name):
        problems.append(f'name: "{name}" must be lowercase letters, digits, ".", "_" or "-"')
    elif name and name != path.stem:
        problems.append(f'name: "{name}" must match the file name ({path.stem}.toml holds the model '
                        f'"{path.stem}"); rename the file or the model')
    kind = text("kind")
    if kind and kind not in KINDS:
        problems.append(f'kind: "{kind}" is not one of {", ".join(KINDS)}')
    backend = text("backend")
    if kind in BACKENDS and backend and backend not in BACKENDS[kind]:
        problems.append(f'backend: "{backend}" is not a {kind} backend (known: {", ".join(BACKENDS[kind])})')
    license_ = text("license", required=False)  # an admin's own model may not say
    description = text("description", required=False)
    sample_rate = data.get("sample_rate")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int)
                                    or not 1000 <= sample_rate <= 384000):
        problems.append(f"sample_rate: {sample_rate!r} must be an integer number of Hz (1000 to 384000)")
        sample_rate = None

    files: list[ModelFile] = []
    raw_files = data.get("files")
    if raw_files is None:
        problems.append("files: missing (at least one [[files]] table)")
    elif not isinstance(raw_files, list) or not raw_files or not all(isinstance(f, dict) for f in raw_files):
        problems.append("files: must be one or more [[files]] tables")
    else:
        seen: set[str] = set()
        for i, raw in enumerate(raw_files):
            f = _parse_file(raw, f"files[{i}]", problems)
            if f is None:
                continue
            if f.path in seen:
                problems.append(f'files[{i}].path: "{f.path}" is listed twice')
            seen.add(f.path)
            files.append(f)

    engine = None
    if "engine" in data:
        engine = _parse_engine(data["engine"], {f.path for f in files}, problems)

    if problems:
        raise ManifestError(str(path), problems)
    return Manifest(name=name, kind=kind, backend=backend, files=tuple(files), license=license_,
                    description=description, sample_rate=sample_rate, origin=path, engine=engine)


def _parse_engine(raw, file_paths: set[str], problems: list[str]) -> EngineSpec | None:
    if not isinstance(raw, dict):
        problems.append("engine: must be a table [engine]")
        return None
    before = len(problems)
    _unknown(raw, _ENGINE_KEYS, "engine.", problems)
    onnx = raw.get("onnx")
    if not isinstance(onnx, str) or not onnx.endswith(".onnx"):
        problems.append(f"engine.onnx: {onnx!r} must name this model's .onnx file")
    elif file_paths and onnx not in file_paths:
        problems.append(f'engine.onnx: "{onnx}" is not one of this model\'s files ({", ".join(sorted(file_paths))})')
    precision = raw.get("precision", "fp16")
    if precision not in PRECISIONS:
        problems.append(f"engine.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    shapes = []
    raw_shapes = raw.get("shapes", {})
    if not isinstance(raw_shapes, dict):
        problems.append("engine.shapes: must be a table of input name = { min = [...], opt = [...], max = [...] }")
        raw_shapes = {}
    for name, dims in raw_shapes.items():
        where = f"engine.shapes.{name}"
        if not isinstance(dims, dict):
            problems.append(f"{where}: must be {{ min = [...], opt = [...], max = [...] }}")
            continue
        _unknown(dims, _SHAPE_KEYS, f"{where}.", problems)
        got = []
        for k in _SHAPE_KEYS:
            v = dims.get(k)
            if not isinstance(v, list) or not v or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                           for d in v):
                problems.append(f"{where}.{k}: {v!r} must be a list of positive integers (one per dimension)")
                break
            got.append(tuple(v))
        else:
            lo, opt, hi = got
            if not len(lo) == len(opt) == len(hi):
                problems.append(f"{where}: min, opt and max must have the same number of dimensions")
            elif not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                problems.append(f"{where}: each dimension must satisfy min <= opt <= max, got {list(lo)}, "
                                f"{list(opt)}, {list(hi)}")
            else:
                shapes.append((name, lo, opt, hi))
    if len(problems) > before:
        return None
    return EngineSpec(onnx=onnx, precision=precision, shapes=tuple(shapes))


def _unknown(table: dict, allowed: tuple[str, ...], prefix: str, problems: list[str]) -> None:
    for key in table:
        if key not in allowed:
            problems.append(f"{prefix}{key}: unknown key (allowed: {', '.join(allowed)})")


def _sha(value, where: str, problems: list[str]) -> str | None:
    if value is None:
        problems.append(f"{where}: missing (the file's sha256, 64 hex digits: sha256sum FILE)")
        return None
    if not isinstance(value, str) or not _SHA_RE.match(value.strip().lower()):
        problems.append(f"{where}: {value!r} is not a sha256 (64 hex digits)")
        return None
    return value.strip().lower()


def _relative(value: str, where: str, problems: list[str], what: str) -> str | None:
    p = PurePosixPath(value)
    if not value or value.startswith("/") or "\\" in value or any(c in ("", "..") for c in value.split("/")):
        problems.append(f'{where}: "{value}" must be a relative path ({what}) without ".." or empty parts')
        return None
    if any(c.startswith(".") for c in p.parts):
        problems.append(f'{where}: "{value}" must not have parts starting with "." (reserved for setup)')
        return None
    return str(p)


def parse_source(value, where: str, problems: list[str]) -> Source | None:
    """``pypi:<dist>:<path>`` or ``file:<path>``; anything else (a URL) is refused."""
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: {value!r} must be a string ({_SOURCE_FORMS})")
        return None
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in SCHEMES:
        problems.append(f'{where}: "{value}" has an unknown scheme "{scheme if sep else ""}" '
                        f"(allowed: {_SOURCE_FORMS}); models are never downloaded")
        return None
    if scheme == "pypi":
        dist, sep, inner = rest.partition(":")
        if not sep or not _DIST_RE.match(dist):
            problems.append(f'{where}: "{value}" must be pypi:<distribution>:<path in the package>')
            return None
        inner = _relative(inner, where, problems, "inside the installed package")
        return None if inner is None else Source("pypi", inner, dist)
    inner = _relative(rest, where, problems, "under paths.models_dir")
    return None if inner is None else Source("file", inner)


def _parse_file(raw: dict, where: str, problems: list[str]) -> ModelFile | None:
    before = len(problems)
    _unknown(raw, _FILE_KEYS, f"{where}.", problems)
    path = raw.get("path")
    if path is None:
        problems.append(f"{where}.path: missing (the file's name inside the model directory)")
    elif not isinstance(path, str):
        problems.append(f"{where}.path: {path!r} must be a string")
        path = None
    else:
        path = _relative(path, f"{where}.path", problems, "inside the model directory")
    sha = _sha(raw.get("sha256"), f"{where}.sha256", problems)
    parts: list[Part] = []
    if ("source" in raw) == ("parts" in raw):
        problems.append(f"{where}: needs either source = \"...\" or parts = [...] (one of them)")
    elif "source" in raw:
        src = parse_source(raw["source"], f"{where}.source", problems)
        if src is not None and sha is not None:
            parts.append(Part(src, sha))
    else:
        raw_parts = raw["parts"]
        if not isinstance(raw_parts, list) or len(raw_parts) < 2:
            problems.append(f"{where}.parts: must list two or more {{ source = \"...\", sha256 = \"...\" }} "
                            "tables (one part is source = \"...\")")
        else:
            for j, rp in enumerate(raw_parts):
                pw = f"{where}.parts[{j}]"
                if not isinstance(rp, dict):
                    problems.append(f"{pw}: must be a table {{ source = \"...\", sha256 = \"...\" }}")
                    continue
                _unknown(rp, _PART_KEYS, f"{pw}.", problems)
                src = parse_source(rp.get("source"), f"{pw}.source", problems) if "source" in rp else None
                if "source" not in rp:
                    problems.append(f"{pw}.source: missing ({_SOURCE_FORMS})")
                psha = _sha(rp.get("sha256"), f"{pw}.sha256", problems)
                if src is not None and psha is not None:
                    parts.append(Part(src, psha))
    if len(problems) > before or path is None or sha is None:
        return None
    return ModelFile(path=path, sha256=sha, parts=tuple(parts))
