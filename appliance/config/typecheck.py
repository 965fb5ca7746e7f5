"""Does a decoded value (from TOML or JSON) match a type annotation? Shared by the config
loader and the bus codec so both accept exactly the same shapes."""

from __future__ import annotations

import types
import typing


def conforms(value, hint) -> bool:
    """Scalars (bool/int/float/str, with bool never passing as a number), ``list[X]``,
    ``dict[str, X]``, ``X | Y`` and ``None``."""
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if origin is dict:
        k, v = typing.get_args(hint)
        return isinstance(value, dict) and all(conforms(a, k) and conforms(b, v) for a, b in value.items())
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return any(conforms(value, h) for h in typing.get_args(hint))
    raise TypeError(f"unsupported annotation {hint!r}")


def render_problems(what: str, problems: list[str]) -> str:
    """"<what> is invalid (N problems):" and one indented line each: how a config, a manifest
    and an agent file all report themselves to an admin."""
    n = len(problems)
    return "\n".join([f"{what} is invalid ({n} problem{'s' * (n != 1)}):", *(f"  - {p}" for p in problems)])


def describe(hint) -> str:
    """How to say the type to a human reading an error."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is list:
        return f"a list of {describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    if typing.get_origin(hint) is dict:
        return f"a table of {describe(typing.get_args(hint)[1]).removeprefix('a ').removeprefix('an ')}s"
    parts = [h for h in typing.get_args(hint) if h is not type(None)]
    if parts and all(p in names for p in parts):  # int | str
        return " or ".join(describe(p) for p in parts)
    return str(hint).replace("typing.", "")
