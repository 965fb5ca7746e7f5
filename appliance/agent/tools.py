"""The agent's tools: the site's own systems (bookings, CRM) called with a deadline.

A tool is a ``ToolSpec``: an HTTP endpoint on the site's network or a Python function, the
JSON-schema subset of its arguments (what the LLM is told and what its output is checked
against), a timeout, a retry policy and a circuit breaker. ``ToolRunner.call`` never raises
for a tool's problems: it returns a ``ToolResult`` whose ``status`` the flow acts on, because
a caller on the phone must hear *something* within the deadline whatever the backend does.

Rules, each against a way a phone agent goes wrong with a backend:
- Every call has an overall deadline (all attempts and backoffs together): the smaller of
  ``timeout_s * (retries + 1)`` and the caller's ``deadline_s``. No dead air on a hung system.
- Retries only where repeating cannot do a thing twice: connection refused and 503 (the request
  was not processed) for any method; connection reset, 502, 504 and timeouts only for
  idempotent requests (GET, or ``idempotent=True``). 4xx is never retried. Python tools are
  not retried.
- A circuit breaker per tool: after ``breaker_failures`` consecutive failures the tool is
  "open" and calls return ``circuit-open`` at once, without touching the dead system, for
  ``breaker_open_s``; then one probe is let through (half-open); its success closes the
  circuit, its failure opens it again. A 4xx answer shows the system is up: it is no failure
  for the breaker.

HTTP tools: arguments named in the URL as ``{name}`` are put into the path (URL-quoted);
the rest go as a JSON body for POST/PUT/PATCH and as the query string for GET/DELETE. A 2xx
answer must be a JSON object (204 is an empty one). The client is a small HTTP/1.1 client on
asyncio streams, so a timeout really abandons the connection.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Awaitable, Callable, Mapping, Sequence

log = logging.getLogger("appliance.tools")

KINDS = ("http", "python")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_METHODS = ("POST", "PUT", "PATCH")
ARG_TYPES = ("string", "integer", "number", "boolean")
MAX_RESPONSE_BYTES = 1 << 20
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")




class ToolStatus(StrEnum):
    """How a tool call ended: the one list the runner, the flow and the call record share."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CIRCUIT_OPEN = "circuit-open"
    INVALID_ARGS = "invalid-args"
    UNKNOWN_TOOL = "unknown-tool"


# -- specs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolSpec:
    """One tool, as written in an agent definition (``[[tools]]`` in agents/*.toml)."""

    name: str
    description: str = ""
    kind: str = "http"
    # http
    url: str = ""
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    # python: "package.module:function", sync or async, called with **args, returns a dict
    entry: str = ""
    args_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}},
                                           hash=False)
    timeout_s: float = 2.0
    retries: int = 1
    retry_backoff_s: float = 0.1
    idempotent: bool | None = None  # None: only GET is
    breaker_failures: int = 3
    breaker_open_s: float = 30.0

    @property
    def is_idempotent(self) -> bool:
        return self.method.upper() == "GET" if self.idempotent is None else bool(self.idempotent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ToolSpec":
        """A spec from a config table; raises ValueError listing every problem."""
        problems = check_spec(data)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**dict(data))

    def describe(self) -> dict[str, Any]:
        """What the LLM is told about this tool (the common function-calling shape)."""
        return {"name": self.name, "description": self.description, "parameters": dict(self.args_schema)}


SPEC_FIELDS = tuple(f.name for f in fields(ToolSpec))

# The scalar keys of a spec, checked with the same validator as the LLM's arguments.
_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": _NAME_RE.pattern},
        "description": {"type": "string"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "url": {"type": "string"},
        "method": {"type": "string", "enum": list(METHODS)},
        "entry": {"type": "string"},
        "timeout_s": {"type": "number"},
        "retries": {"type": "integer"},
        "retry_backoff_s": {"type": "number"},
        "idempotent": {"type": "boolean"},
        "breaker_failures": {"type": "integer"},
        "breaker_open_s": {"type": "number"},
    },
    "required": ["name"],
}
_SCHEMA_KEYS = {"type", "properties", "required", "description", "additionalProperties", "title"}
_PROP_KEYS = {"type", "enum", "description", "pattern", "default", "title"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_type(value: Any, typ: str) -> bool:
    if typ == "string":
        return isinstance(value, str)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


def validate_args(schema: Mapping[str, Any], args: Any) -> list[str]:
    """Problems with ``args`` against a JSON-schema subset; empty when they are fine.

    The subset: ``{"type": "object", "properties": {name: {"type": string|integer|number|
    boolean, "enum": [...], "pattern": regex}}, "required": [...]}``. Unknown arguments are
    a problem unless ``additionalProperties`` is true.
    """
    if not isinstance(args, Mapping):
        return [f"arguments must be an object, got {_type_name(args)}"]
    props = schema.get("properties") or {}
    problems = []
    for name in schema.get("required") or ():
        if name not in args:
            problems.append(f"missing required argument '{name}'")
    for name, value in args.items():
        prop = props.get(name) if isinstance(props, Mapping) else None
        if not isinstance(prop, Mapping):
            if not schema.get("additionalProperties", False):
                known = ", ".join(sorted(props)) or "none"
                problems.append(f"unknown argument '{name}' (known: {known})")
            continue
        typ = prop.get("type")
        if typ is not None and not _is_type(value, typ):
            problems.append(f"argument '{name}': expected {typ}, got {_type_name(value)} {value!r}")
            continue
        enum = prop.get("enum")
        if enum is not None and value not in list(enum):
            problems.append(f"argument '{name}': {value!r} is not one of {list(enum)!r}")
            continue
        pattern = prop.get("pattern")
        if pattern and isinstance(value, str) and re.search(pattern, value) is None:
            problems.append(f"argument '{name}': {value!r} does not match {pattern!r}")
    return problems


def check_schema(schema: Any, where: str = "args_schema") -> list[str]:
    """Problems with an args schema itself (so a typo shows at config check, not mid-call)."""
    if not isinstance(schema, Mapping):
        return [f"{where}: must be a table/object, got {_type_name(schema)}"]
    problems = []
    for key in schema:
        if key not in _SCHEMA_KEYS:
            problems.append(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(_SCHEMA_KEYS))})")
    if schema.get("type", "object") != "object":
        problems.append(f"{where}: 'type' must be \"object\", got {schema.get('type')!r}")
    props = schema.get("properties", {})
    if not isinstance(props, Mapping):
        problems.append(f"{where}.properties: must be a table/object, got {_type_name(props)}")
        props = {}
    for pname, prop in props.items():
        here = f"{where}.properties.{pname}"
        if not isinstance(prop, Mapping):
            problems.append(f"{here}: must be a table/object, got {_type_name(prop)}")
            continue
        for key in prop:
            if key not in _PROP_KEYS:
                problems.append(f"{here}: unknown key '{key}' (allowed: {', '.join(sorted(_PROP_KEYS))})")
        typ = prop.get("type")
        enum = prop.get("enum")
        if typ is None and enum is None:
            problems.append(f"{here}: needs 'type' ({'/'.join(ARG_TYPES)}) or 'enum'")
        if typ is not None and typ not in ARG_TYPES:
            problems.append(f"{here}.type: {typ!r} is not one of {'/'.join(ARG_TYPES)}")
            typ = None
        if enum is not None:
            if not isinstance(enum, (list, tuple)) or not enum:
                problems.append(f"{here}.enum: must be a non-empty list")
            elif typ is not None:
                bad = [v for v in enum if not _is_type(v, typ)]
                if bad:
                    problems.append(f"{here}.enum: values {bad!r} are not of type {typ}")
        pattern = prop.get("pattern")
        if pattern is not None:
            if typ != "string":
                problems.append(f"{here}.pattern: only for type string")
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                problems.append(f"{here}.pattern: not a valid regex ({exc})")
    required = schema.get("required", [])
    if not isinstance(required, (list, tuple)) or not all(isinstance(r, str) for r in required):
        problems.append(f"{where}.required: must be a list of property names")
    else:
        for r in required:
            if r not in props:
                problems.append(f"{where}.required: '{r}' is not in properties")
    return problems


def check_spec(spec: ToolSpec | Mapping[str, Any]) -> list[str]:
    """Every problem with a tool definition, each naming the tool and the key."""
    if isinstance(spec, ToolSpec):
        data = {f: getattr(spec, f) for f in SPEC_FIELDS}
        data = {k: v for k, v in data.items() if not (k == "idempotent" and v is None)}
    elif isinstance(spec, Mapping):
        data = dict(spec)
    else:
        return [f"tool definition must be a table/object, got {_type_name(spec)}"]
    name = data.get("name")
    label = f"tool {name!r}" if isinstance(name, str) and name else "tool (unnamed)"
    problems = []
    for key in data:
        if key not in SPEC_FIELDS:
            problems.append(f"{label}: unknown key '{key}' (allowed: {', '.join(SPEC_FIELDS)})")
    scalars = {k: v for k, v in data.items() if k in _SPEC_SCHEMA["properties"]}
    if isinstance(scalars.get("method"), str):
        scalars["method"] = scalars["method"].upper()
    for p in validate_args(_SPEC_SCHEMA, scalars):
        p = p.replace("missing required argument", "missing required key").replace("argument '", "key '")
        problems.append(f"{label}: {p}")
    kind = data.get("kind", "http")
    if kind == "http":
        url = data.get("url", "")
        if not url:
            problems.append(f"{label}: key 'url' is required for an http tool")
        elif isinstance(url, str):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"{label}: key 'url': {url!r} is not an http:// or https:// URL")
        if data.get("entry"):
            problems.append(f"{label}: key 'entry' is only for python tools")
        headers = data.get("headers", {})
        if not isinstance(headers, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            problems.append(f"{label}: key 'headers' must map header names to string values")
        elif any(("\r" in k + v or "\n" in k + v) for k, v in headers.items()):
            problems.append(f"{label}: key 'headers': values must not contain line breaks")
    elif kind == "python":
        entry = data.get("entry", "")
        if not entry:
            problems.append(f"{label}: key 'entry' (\"package.module:function\") is required for a python tool")
        elif isinstance(entry, str) and not _ENTRY_RE.match(entry):
            problems.append(f"{label}: key 'entry': {entry!r} is not \"package.module:function\"")
        if data.get("url"):
            problems.append(f"{label}: key 'url' is only for http tools")
    for key, low in (("timeout_s", 0.0), ("breaker_open_s", 0.0)):
        v = data.get(key)
        if _is_type(v, "number") and v <= low and key == "timeout_s":
            problems.append(f"{label}: key '{key}' must be > 0, got {v}")
        elif _is_type(v, "number") and v < low:
            problems.append(f"{label}: key '{key}' must be >= 0, got {v}")
    for key, low in (("retries", 0), ("breaker_failures", 1)):
        v = data.get(key)
        if _is_type(v, "integer") and v < low:
            problems.append(f"{label}: key '{key}' must be >= {low}, got {v}")
    v = data.get("retry_backoff_s")
    if _is_type(v, "number") and v < 0:
        problems.append(f"{label}: key 'retry_backoff_s' must be >= 0, got {v}")
    schema = data.get("args_schema", {"type": "object", "properties": {}})
    schema_problems = check_schema(schema)
    problems.extend(f"{label}: {p}" for p in schema_problems)
    if kind == "http" and isinstance(data.get("url"), str) and not schema_problems:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        for ph in _PLACEHOLDER_RE.findall(urllib.parse.urlsplit(data["url"]).path):
            if ph not in props or ph not in required:
                problems.append(f"{label}: key 'url': placeholder {{{ph}}} must be a required property "
                                f"in args_schema")
    return problems


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolResult:
    status: ToolStatus
    data: dict | None = None  # on ok
    error: str = ""  # human-readable, on anything but ok
    duration_ms: float = 0.0
    attempts: int = 0
    tool: str = ""
    http_status: int | None = None  # last HTTP status seen, if any (409: slot taken)

    @property
    def ok(self) -> bool:
        return self.status == ToolStatus.OK


class _Failure(Exception):
    """One failed attempt: ``retryable`` under the tool's policy, ``breaker`` counts against it."""

    def __init__(self, message: str, *, status: ToolStatus = ToolStatus.ERROR, retryable: bool = False, breaker: bool = True,
                 http_status: int | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.breaker = breaker
        self.http_status = http_status
        self.attempts = 1


# -- a small HTTP/1.1 client -------------------------------------------------------------------
async def read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    """HTTP/1.1 header lines up to the blank line, names lower-cased (the example booking
    server reads its requests with it too)."""
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return headers
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            line = await reader.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > MAX_RESPONSE_BYTES:
                raise _Failure("bad response: body larger than 1 MiB")
            out += await reader.readexactly(size)
            await reader.readline()
    if "content-length" in headers:
        n = int(headers["content-length"])
        if n > MAX_RESPONSE_BYTES:
            raise _Failure("bad response: body larger than 1 MiB")
        return await reader.readexactly(n)
    data = await reader.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise _Failure("bad response: body larger than 1 MiB")
    return data


async def http_request(method: str, url: str, *, headers: Mapping[str, str] | None = None,
                       body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on its own connection; (status, lower-cased headers, body).

    Raises OSError for connection problems and ValueError for a malformed answer; time limits
    are the caller's (``asyncio.wait_for``), and cancelling closes the connection.
    """
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl.create_default_context() if secure else None)
    try:
        hostport = host if parts.port is None else f"{host}:{port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {hostport}", "Connection: close",
                 "Accept: application/json", "User-Agent: appliance-agent"]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before an answer")
        try:
            version, code, *_ = status_line.decode("latin-1").split(" ", 2)
            status = int(code)
            if not version.startswith("HTTP/"):
                raise ValueError
        except ValueError:
            raise ValueError(f"not an HTTP answer: {status_line[:60]!r}") from None
        resp_headers = await read_headers(reader)
        data = b"" if method == "HEAD" or status in (204, 304) else await _read_body(reader, resp_headers)
        return status, resp_headers, data
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("connection closed in the middle of the answer") from None
    finally:
        writer.close()  # not awaited: a timed-out call must not wait on a hung peer's goodbye


def _short(data: bytes, n: int = 80) -> str:
    text = data[:n].decode("utf-8", "replace")
    return repr(text + ("…" if len(data) > n else ""))


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Failure(f"bad response: not JSON: {_short(body)}" if body else "bad response: empty body") from None
    if not isinstance(value, dict):
        raise _Failure(f"bad response: expected a JSON object, got {_type_name(value)}")
    return value


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# -- circuit breaker ---------------------------------------------------------------------------
@dataclass
class _Breaker:
    failures_to_open: int
    open_s: float
    state: str = "closed"  # closed | open | half-open
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    probe_in_flight: bool = False
    calls: int = 0
    ok: int = 0
    errors: int = 0
    rejected: int = 0
    opened: int = 0
    last_error: str = ""
    last_status: str = ""

    def admit(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.open_s:
            self.state = "half-open"
        if self.state == "half-open":
            if self.probe_in_flight:
                return False
            self.probe_in_flight = True
            return True
        return self.state == "closed"

    def record(self, healthy: bool, now: float) -> None:
        self.probe_in_flight = False
        if healthy:
            self.state, self.failures = "closed", 0
            return
        self.failures += 1
        if self.state == "half-open" or self.failures >= self.failures_to_open:
            if self.state != "open":
                self.opened += 1
            self.state, self.opened_at = "open", now

    def release(self) -> None:
        """A probe that ended without a verdict (cancelled, bad arguments): let another through."""
        self.probe_in_flight = False


# -- the runner --------------------------------------------------------------------------------
class ToolRunner:
    """Calls the tools of one agent; shared by every call of that agent (breakers are shared)."""

    def __init__(self, specs: Sequence[ToolSpec] | Mapping[str, ToolSpec] = (), *,
                 clock: Callable[[], float] = time.monotonic):
        items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
        problems = []
        self.specs: dict[str, ToolSpec] = {}
        for spec in items:
            if isinstance(spec, Mapping):
                spec_problems = check_spec(spec)
                if not spec_problems:
                    spec = ToolSpec(**dict(spec))
            else:
                spec_problems = check_spec(spec)
            problems += spec_problems
            if spec_problems:
                continue
            if spec.name in self.specs:
                problems.append(f"tool {spec.name!r}: defined twice")
            self.specs[spec.name] = spec
        if problems:
            raise ValueError("bad tool definitions: " + "; ".join(problems))
        self._clock = clock
        self._breakers = {n: _Breaker(s.breaker_failures, s.breaker_open_s) for n, s in self.specs.items()}
        self._entries: dict[str, Callable[..., Any]] = {}

    def describe(self) -> list[dict[str, Any]]:
        """The tool list for the LLM prompt."""
        return [s.describe() for s in self.specs.values()]

    def status(self) -> dict[str, dict[str, Any]]:
        """Per tool, for ``appliancectl status``."""
        now = self._clock()
        out = {}
        for name, b in self._breakers.items():
            state = b.state
            if state == "open" and now - b.opened_at >= b.open_s:
                state = "half-open"  # the next call will be the probe
            out[name] = {
                "state": state, "failures": b.failures, "calls": b.calls, "ok": b.ok, "errors": b.errors,
                "rejected": b.rejected, "opened": b.opened, "last_status": b.last_status,
                "last_error": b.last_error,
                "open_for_s": round(max(0.0, b.open_s - (now - b.opened_at)), 3) if state == "open" else 0.0,
            }
        return out

    def reset(self, name: str | None = None) -> None:
        """Close the breaker(s) by hand (after the operator fixed the backend)."""
        for n in ([name] if name else list(self._breakers)):
            s = self.specs[n]
            self._breakers[n] = _Breaker(s.breaker_failures, s.breaker_open_s)

    async def call(self, name: str, args: Mapping[str, Any] | None = None, *,
                   deadline_s: float | None = None) -> ToolResult:
        t0 = time.monotonic()
        args = {} if args is None else args

        def result(status: ToolStatus, *, data=None, error="", attempts=0, http_status=None) -> ToolResult:
            return ToolResult(status=status, data=data, error=error, duration_ms=(time.monotonic() - t0) * 1000.0,
                              attempts=attempts, tool=name, http_status=http_status)

        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(self.specs) or "none"
            return result(ToolStatus.UNKNOWN_TOOL, error=f"unknown tool {name!r} (known: {known})")
        problems = validate_args(spec.args_schema, args)
        if problems:
            return result(ToolStatus.INVALID_ARGS, error=f"{name}: " + "; ".join(problems))
        breaker = self._breakers[name]
        breaker.calls += 1
        if not breaker.admit(self._clock()):
            breaker.rejected += 1
            left = max(0.0, breaker.open_s - (self._clock() - breaker.opened_at))
            why = "a probe is in flight" if breaker.state == "half-open" else f"retrying in {left:.1f} s"
            return result(ToolStatus.CIRCUIT_OPEN, error=f"{name} is unavailable after {breaker.failures} failures "
                                                f"({why}); last error: {breaker.last_error}")
        budget = spec.timeout_s * ((spec.retries + 1) if spec.kind == "http" else 1)
        if deadline_s is not None:
            budget = min(budget, max(0.0, deadline_s))
        end = t0 + budget
        attempts = 0
        verdict: bool | None = None
        try:
            if spec.kind == "python":
                attempts = 1
                data, code = await self._call_python(spec, args, end), None
            else:
                data, attempts, code = await self._call_http(spec, args, end)
            verdict = True
            breaker.ok += 1
            breaker.last_status = ToolStatus.OK
            return result(ToolStatus.OK, data=data, attempts=attempts, http_status=code)
        except _Failure as f:
            verdict = not f.breaker
            breaker.errors += 1
            breaker.last_status, breaker.last_error = f.status, str(f)
            log.warning("tool %s: %s (%d attempt(s))", name, f, f.attempts)
            return result(f.status, error=str(f), attempts=f.attempts, http_status=f.http_status)
        finally:
            if verdict is None:
                breaker.release()
            else:
                breaker.record(verdict, self._clock())

    # -- python --------------------------------------------------------------------------------
    def _resolve(self, spec: ToolSpec) -> Callable[..., Any]:
        fn = self._entries.get(spec.name)
        if fn is not None:
            return fn
        module_name, _, attr = spec.entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import-time error is the tool's problem
            raise _Failure(f"{spec.name}: cannot import {module_name!r} for entry {spec.entry!r}: "
                           f"{type(exc).__name__}: {exc}") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise _Failure(f"{spec.name}: {module_name!r} has no callable {attr!r} (entry {spec.entry!r})")
        self._entries[spec.name] = fn
        return fn

    async def _call_python(self, spec: ToolSpec, args: Mapping[str, Any], end: float) -> dict:
        fn = self._resolve(spec)
        left = end - time.monotonic()
        if left <= 0:
            raise _Failure(f"{spec.name}: no time left before the deadline", status=ToolStatus.TIMEOUT)
        try:
            if inspect.iscoroutinefunction(fn):
                value = await asyncio.wait_for(fn(**args), left)
            else:
                # A thread cannot be stopped: on timeout it is abandoned and finishes on its own.
                value = await asyncio.wait_for(asyncio.to_thread(fn, **args), left)
                if inspect.isawaitable(value):
                    value = await asyncio.wait_for(value, max(0.0, end - time.monotonic()))
        except asyncio.TimeoutError:
            raise _Failure(f"{spec.name}: no answer within {left:.2f} s", status=ToolStatus.TIMEOUT) from None
        except _Failure:
            raise
        except Exception as exc:  # noqa: BLE001 - the tool's exception is its result
            raise _Failure(f"{spec.name} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict):
            raise _Failure(f"bad response: {spec.name} returned {type(value).__name__}, not a dict")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise _Failure(f"bad response: {spec.name} returned a dict that is not JSON-able ({exc})") from None
        return value

    # -- http ----------------------------------------------------------------------------------
    def _build_request(self, spec: ToolSpec, args: Mapping[str, Any]) -> tuple[str, str, bytes | None]:
        method = spec.method.upper()
        rest = dict(args)
        parts = urllib.parse.urlsplit(spec.url)

        def fill(m: re.Match) -> str:
            return urllib.parse.quote(_query_value(rest.pop(m.group(1))), safe="")

        path = _PLACEHOLDER_RE.sub(fill, parts.path)
        query = parts.query
        body = None
        if method in BODY_METHODS:
            body = json.dumps(rest, separators=(",", ":")).encode()
        elif rest:
            extra = urllib.parse.urlencode({k: _query_value(v) for k, v in rest.items()})
            query = f"{query}&{extra}" if query else extra
        return method, urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, "")), body

    async def _call_http(self, spec: ToolSpec, args: Mapping[str, Any], end: float) -> tuple[dict, int, int]:
        method, url, body = self._build_request(spec, args)
        idempotent = spec.is_idempotent
        attempts = 0
        while True:
            attempts += 1
            left = end - time.monotonic()
            try:
                if left <= 0.001:
                    raise _Failure(f"{spec.name}: no time left before the deadline", status=ToolStatus.TIMEOUT,
                                   retryable=False)
                limit = min(spec.timeout_s, left)
                try:
                    status, _headers, data = await asyncio.wait_for(
                        http_request(method, url, headers=spec.headers, body=body), limit)
                except asyncio.TimeoutError:
                    raise _Failure(f"{spec.name}: no answer within {limit:.2f} s", status=ToolStatus.TIMEOUT,
                                   retryable=idempotent) from None
                except ConnectionRefusedError:
                    raise _Failure(f"{spec.name}: cannot connect to {urllib.parse.urlsplit(url).netloc}: "
                                   f"connection refused", retryable=True) from None
                except ConnectionResetError as exc:
                    raise _Failure(f"{spec.name}: connection reset ({exc})", retryable=idempotent) from None
                except ValueError as exc:
                    raise _Failure(f"bad response: {exc}") from None
                except OSError as exc:
                    raise _Failure(f"{spec.name}: cannot reach {urllib.parse.urlsplit(url).netloc}: "
                                   f"{exc.strerror or exc}", retryable=False) from None
                if 200 <= status < 300:
                    if status == 204 and not data:
                        return {}, attempts, status
                    try:
                        return _json_object(data), attempts, status
                    except _Failure as f:
                        f.http_status = status
                        raise
                detail = ""
                try:
                    obj = json.loads(data.decode("utf-8")) if data else None
                    if isinstance(obj, dict):
                        detail = str(obj.get("error") or obj.get("message") or obj.get("detail") or "")
                except (UnicodeDecodeError, json.JSONDecodeError):
                    pass
                if not detail and data:
                    detail = _short(data, 120)
                msg = f"{spec.name}: HTTP {status}" + (f": {detail}" if detail else "")
                if 400 <= status < 500:
                    # The system is up and said no: no retry, and no mark against the breaker.
                    raise _Failure(msg, retryable=False, breaker=False, http_status=status)
                retryable = status == 503 or (status in (502, 504) and idempotent)
                raise _Failure(msg, retryable=retryable, http_status=status)
            except _Failure as f:
                f.attempts = attempts
                if not f.retryable or attempts > spec.retries:
                    raise
                pause = spec.retry_backoff_s * (2 ** (attempts - 1))
                if time.monotonic() + pause + 0.005 >= end:
                    raise
                log.info("tool %s: attempt %d failed (%s); retrying in %.2f s", spec.name, attempts, f, pause)
                await asyncio.sleep(pause)


async def call_with_filler(runner: ToolRunner | None, name: str, args: Mapping[str, Any] | None = None, *,
                           filler_after_s: float = 0.7,
                           on_filler: Callable[[], Awaitable[None] | None] | None = None,
                           deadline_s: float | None = None) -> ToolResult:
    """``runner.call`` that invokes ``on_filler()`` once if the answer takes longer than
    ``filler_after_s`` ("One moment while I check that."). Cancelling this cancels the call."""
    if runner is None:
        return ToolResult(ToolStatus.UNKNOWN_TOOL, error=f"no tools are configured for this agent (asked for {name!r})",
                          tool=name)
    task = asyncio.ensure_future(runner.call(name, args, deadline_s=deadline_s))
    try:
        done, _ = await asyncio.wait({task}, timeout=filler_after_s)
        if not done and on_filler is not None:
            try:
                maybe = on_filler()
                if inspect.isawaitable(maybe):
                    await maybe
            except Exception:  # noqa: BLE001 - a failed filler must not lose the tool's answer
                log.exception("tool %s: filler failed", name)
        return await task
    finally:
        if not task.done():
            task.cancel()
