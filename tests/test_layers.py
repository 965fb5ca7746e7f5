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


def test_every_part_of_the_package_is_in_a_layer():
    """A new top-level package outside the contract would be unchecked."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named = {m.strip() for layer in contract["contracts"][0]["layers"] for m in layer.split("|")}
    parts = {f"appliance.{p.stem if p.is_file() else p.name}" for p in (ROOT / "appliance").iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and not p.name.startswith("__"))}
    assert parts <= named, f"not in any layer: {sorted(parts - named)}"


def test_no_module_imports_itself_round_a_circle():
    """No import circle between modules, lazy imports included (a circle works only by luck of
    import order, and hides which module is the lower one)."""
    import grimp

    graph = grimp.build_graph("appliance")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in edges[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            part = []
            while True:
                n = stack.pop()
                part.append(n)
                if n == m:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    assert circles == []


def test_the_configs_codec_names_are_the_registrys():
    """config/ sits below telephony/, so it spells the codec names itself: they must agree."""
    from appliance.config.schema import SipConfig
    from appliance.telephony.codecs import CODECS

    meta = SipConfig.__dataclass_fields__["codecs"].metadata
    assert set(meta["each"]) == set(CODECS) and set(SipConfig().codecs) == set(CODECS)


def test_one_class_per_name_across_the_package():
    """One name per concept: no two modules define a class of the same name (a reader seeing
    ``Transfer`` must not have to ask which of three)."""
    import ast
    from collections import defaultdict

    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "appliance").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(ROOT)))
    assert {name: files for name, files in where.items() if len(files) > 1} == {}
