"""The layers are a checked contract (pyproject.toml [tool.importlinter], README "Layout"):
no module imports from a layer above its own, so no arrow runs back up unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).parent / "lint-imports")


def _lint(config: Path | None = None) -> subprocess.CompletedProcess:
    args = [LINT, "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_package_keeps_its_layers():
    result = _lint()
    assert result.returncode == 0 and "1 kept, 0 broken" in result.stdout, result.stdout + result.stderr


def test_an_arrow_running_up_is_caught(tmp_path):
    """The same contract with agent below speech: agent imports speech, so it must break."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = contract["contracts"][0]["layers"]
    i, j = layers.index("appliance.agent | appliance.talk"), layers.index("appliance.telephony | appliance.speech")
    layers[i], layers[j] = layers[j], layers[i]
    lines = ["[importlinter]", "root_package = appliance", "", "[importlinter:contract:layers]", "name = layers",
             "type = layers", "layers ="] + [f"    {layer}" for layer in layers]
    config = tmp_path / "contract.ini"
    config.write_text("\n".join(lines) + "\n")
    result = _lint(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout and "appliance.agent" in result.stdout, result.stdout
