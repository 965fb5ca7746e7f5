"""Credentials in appliance.toml (SIP digest passwords): which keys hold them, how they are
shown (never: a mask), and the file mode a config that sets one must have.

A key is secret when the schema marks it (``key(..., secret=True)``). Its value never appears
in an error message, a dataclass repr, a log line or `appliancectl config check` (text or
JSON). A config file that sets one must be private: mode 0600 (or 0400), or 0640 (0440) when
root owns it and only its group may read, as Ansible installs it (root:appliance 0640).
Otherwise every service refuses to start (exit 78, like any config error) and `config check`
says so.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import typing
from dataclasses import fields, is_dataclass
from typing import Any

MASK = "********"


def secret_keys(cls=None, prefix: str = "") -> list[str]:
    """Dotted names of every secret key of the schema (``sip.password``, ...)."""
    from .schema import Config

    cls = cls or Config
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            found += secret_keys(hints[f.name], f"{prefix}{f.name}.")
        elif f.metadata.get("secret"):
            found.append(prefix + f.name)
    return found


def show_secret(value: Any) -> str:
    """A secret value in an error message: its shape, never its content."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = <hidden {type(v).__name__}>" for k, v in value.items()) + "}"
    return f"<hidden {type(value).__name__}>"


def mask(value: Any) -> Any:
    """What is shown in place of a secret's value: nothing set stays visibly empty."""
    if isinstance(value, dict):
        return {k: MASK for k in value}
    return MASK if value else value


def redacted(config) -> dict[str, Any]:
    """The whole config as plain data (for `config check --json`), every secret masked."""

    def walk(obj) -> Any:
        if is_dataclass(obj):
            out = {}
            for f in fields(obj):
                if f.metadata.get("internal"):
                    continue
                value = getattr(obj, f.name)
                out[f.name] = mask(value) if f.metadata.get("secret") else walk(value)
            return out
        if isinstance(obj, (list, tuple)):
            return [walk(v) for v in obj]
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        return obj

    return walk(config)


def set_in(data: dict) -> list[str]:
    """The secret keys that raw TOML ``data`` sets to something (an empty value holds nothing)."""
    found = []
    for dotted in secret_keys():
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node not in (None, "", {}):
            found.append(dotted)
    return found


def is_private(st: os.stat_result) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:  # 0600, 0400: the owner only
        return True
    return st.st_uid == 0 and not mode & 0o037  # 0640, 0440 root:<group>: root writes, the group reads


def _name(lookup, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def mode_problem(path: str, data: dict) -> str | None:
    """One line when the file at ``path`` sets a secret key but others may read it, else None."""
    keys = set_in(data)
    if not keys:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None  # it was just read; whatever happened since is the next read's error
    if is_private(st):
        return None
    owner = f"{_name(pwd.getpwuid, st.st_uid)}:{_name(grp.getgrgid, st.st_gid)}"
    return (f"{', '.join(keys)}: credentials in a file others can read (mode {stat.S_IMODE(st.st_mode):04o}, "
            f"{owner}); make it private: chmod 600 {path} (or chown root:appliance and chmod 640)")
