"""The units' system call filter (SystemCallFilter=@system-service, ~@privileged) does not
break the appliance: each service runs inside its own unit's filter, installed with libseccomp
exactly as the unit file says (tests/helpers/unit_seccomp.py), and a real softphone call still
gets its answer. A call outside the filter really is refused (so the filter is live)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.bench.calldrive import baresip_call
from appliance.bus.messages import AsrFinal, CallEnded, TtsFinished

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "helpers" / "unit_seccomp.py"
UNITS = ROOT / "systemd"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze's tables")


def _need_seccomp() -> None:
    try:
        import pyseccomp  # noqa: F401  (loads libseccomp)
    except (ImportError, OSError) as exc:
        pytest.skip(f"needs pyseccomp and libseccomp: {exc}")


def _under(unit: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER), str(UNITS / unit), "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)


def test_the_filter_is_live_a_privileged_call_is_refused_with_eperm():
    _need_seccomp()
    for unit in sorted(p.name for p in UNITS.glob("appliance-*.service")):
        out = _under(unit, "import os\ntry:\n    os.chroot('/')\nexcept PermissionError as e:\n    print('refused', e.errno)\n")
        assert out.returncode == 0 and out.stdout.strip() == "refused 1", (unit, out.stdout, out.stderr)
        assert _under(unit, "import os; print(os.getpid() > 0)").stdout.strip() == "True"  # the rest works


@pytest.fixture
def inside_the_units_filters(monkeypatch):
    _need_seccomp()
    monkeypatch.setenv("APPLIANCE_SERVICE_WRAP",
                       f"{sys.executable} {RUNNER} {UNITS}/appliance-{{service}}.service --")


def test_every_service_does_its_job_in_a_real_call_inside_its_units_filter(inside_the_units_filters, appliance,
                                                                            tmp_path):
    for svc in appliance.services.values():
        cmdline = Path(f"/proc/{svc.proc.pid}/status").read_text()
        assert "Seccomp:\t2" in cmdline, svc.name  # filter mode: each service runs filtered
    baresip_call(tmp_path / "phone", appliance.port, [(9.0, "What time are you open on Saturday?")], seconds=12)
    appliance.events.collect(until=lambda e: isinstance(e, CallEnded), timeout=20)
    appliance.events.collect(timeout=2)
    assert any("saturday" in e.text.lower() for e in appliance.events.of(AsrFinal))  # asrd recognised it
    assert any("Saturday" in e.spoken for e in appliance.events.of(TtsFinished))  # agentd answered, ttsd said it
    for svc in appliance.services.values():
        assert svc.proc.poll() is None, svc.name
        assert "Operation not permitted" not in svc.output(), svc.name
