"""Jinja filters of role ``appliance``: TOML out of Ansible data, and agent files out of a
source agent file plus the site's variables.

``appliance_to_toml`` writes a dict as TOML: scalars and plain arrays first, then tables
(``[a.b]``) and arrays of tables (``[[a]]``), keys in the order given; tables deeper than two levels are
written inline (``prompts = { name = "..." }``). What it writes is read
back with tomllib and must equal the input, so a value TOML cannot hold stops the run here
instead of producing a file the appliance would refuse.

``appliance_agent_file`` reads an agent file (TOML, on the controller), sets ``[vars]`` entries
and transfer-target URIs by name, and writes it back as TOML (comments are not kept).
"""

from __future__ import annotations

import datetime
import json
import math
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11 on the controller
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

from ansible.errors import AnsibleFilterError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _need_tomllib() -> None:
    if tomllib is None:
        raise AnsibleFilterError("role appliance needs Python >= 3.11 (tomllib) or the tomli package "
                                 "on the Ansible controller")


def _key(k) -> str:
    if not isinstance(k, str):
        raise AnsibleFilterError(f"TOML keys must be strings, got {k!r}")
    return k if _BARE_KEY.match(k) else _string(k)


def _string(s: str) -> str:
    # JSON escapes every control character below 0x20, '"' and '\'; TOML also forbids DEL.
    return json.dumps(str(s), ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x, f'{where}.{k}')}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    if v is None:
        raise AnsibleFilterError(f"{where}: TOML has no null; leave the key out or give it a value")
    raise AnsibleFilterError(f"{where}: {type(v).__name__} {v!r} cannot be written as TOML")


def _is_table_array(v) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit(table: dict, path: list[str], out: list[str], header: str | None) -> None:
    # Two levels of headers ([flow.book], [tools.args_schema]); deeper tables are written inline.
    deep = len(path) >= 2
    nested = [(k, v) for k, v in table.items() if not deep and (isinstance(v, dict) or _is_table_array(v))]
    tables = {k for k, _ in nested}
    simple = [(k, v) for k, v in table.items() if k not in tables]
    if header is not None and (simple or not nested):
        out += ["", header]
    for k, v in simple:
        out.append(f"{_key(k)} = {_value(v, '.'.join([*path, str(k)]))}")
    for k, v in nested:
        sub = [*path, k]
        name = ".".join(_key(p) for p in sub)
        if isinstance(v, dict):
            _emit(v, sub, out, f"[{name}]")
        else:
            for item in v:
                out.append("")
                out.append(f"[[{name}]]")
                _emit(item, sub, out, None)


def to_toml(data) -> str:
    """``data`` (a dict) as a TOML document; checked by reading it back."""
    _need_tomllib()
    if not isinstance(data, dict):
        raise AnsibleFilterError(f"appliance_to_toml needs a dict, got {type(data).__name__}")
    data = _plain(data)
    out: list[str] = []
    _emit(data, [], out, None)
    text = "\n".join(out).lstrip("\n") + "\n"
    try:
        back = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AnsibleFilterError(f"appliance_to_toml wrote invalid TOML ({exc}):\n{text}") from None
    if back != data:
        raise AnsibleFilterError(f"appliance_to_toml: the TOML written does not read back as the data given:\n{text}")
    return text


def _plain(v):
    """Ansible's own str/dict/list subclasses as the built-in types (so comparisons are exact)."""
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def agent_file(text: str, source: str = "agent file", vars=None, transfer_targets=None, header: str = "") -> str:
    """The agent file ``text`` with ``[vars]`` entries set from ``vars`` and the ``uri`` of each
    ``[[transfer_targets]]`` named in ``transfer_targets`` (name -> URI) set; a name not in the
    file is added as a new target. Returned as TOML, after ``header`` (comment lines)."""
    _need_tomllib()
    try:
        data = tomllib.loads(str(text))
    except tomllib.TOMLDecodeError as exc:
        raise AnsibleFilterError(f"{source} is not valid TOML: {exc}") from None
    if vars:
        if not isinstance(vars, dict):
            raise AnsibleFilterError(f"{source}: vars must be a dict of NAME: value, got {vars!r}")
        table = data.setdefault("vars", {})
        if not isinstance(table, dict):
            raise AnsibleFilterError(f"{source}: [vars] is not a table")
        table.update(_plain(vars))
    if transfer_targets:
        if not isinstance(transfer_targets, dict):
            raise AnsibleFilterError(f"{source}: transfer_targets must be a dict of NAME: sip URI, got "
                                     f"{transfer_targets!r}")
        targets = data.setdefault("transfer_targets", [])
        if not isinstance(targets, list):
            raise AnsibleFilterError(f"{source}: transfer_targets is not an array of tables")
        for name, uri in transfer_targets.items():
            found = [t for t in targets if isinstance(t, dict) and t.get("name") == name]
            if found:
                for t in found:
                    t["uri"] = str(uri)
            else:
                targets.append({"name": str(name), "uri": str(uri)})
    lines = [f"# {line}".rstrip() for line in str(header).splitlines()] if header else []
    return ("\n".join(lines) + "\n\n" if lines else "") + to_toml(data)


def number(v):
    """A number given as text (``-e appliance_sip_max_calls=16``) as that number; anything else
    unchanged, so that ``appliancectl config check`` names the bad value as it was given."""
    if isinstance(v, str) and not isinstance(v, bool):
        text = v.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        if re.fullmatch(r"[+-]?([0-9]+[.][0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?", text):
            return float(text)
    return v


class FilterModule:
    def filters(self):
        return {"appliance_to_toml": to_toml, "appliance_agent_file": agent_file, "appliance_number": number}
