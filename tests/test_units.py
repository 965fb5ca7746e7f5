"""The systemd units start the same entry points `appliancectl up` does, speak sd_notify,
and are all part of appliance.target."""

from __future__ import annotations

import configparser
import tomllib

from testutil import REPO

from appliance.config.schema import SERVICES


def unit(name: str) -> configparser.ConfigParser:
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read(REPO / "systemd" / name)
    return p


def test_every_service_has_a_notify_unit_running_its_console_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name in SERVICES:
        u = unit(f"appliance-{name}.service")
        svc = u["Service"]
        exe = svc["ExecStart"].split()[0]
        assert exe == f"/opt/appliance/venv/bin/appliance-{name}"
        assert scripts[f"appliance-{name}"] == f"appliance.services.{name}:main"
        assert svc["Type"] == "notify" and "WatchdogSec" in svc and svc["Restart"] == "always"
        assert "--config /etc/appliance/appliance.toml" in svc["ExecStart"]
        assert u["Unit"]["PartOf"] == "appliance.target"
        # a call must outlive any process but sipd: no unit drags another down with it
        assert not any(k in u["Unit"] for k in ("BindsTo", "Requires"))
