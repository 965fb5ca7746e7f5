"""`bench soak`'s short CI version: two minutes of random callers (talking, barging in,
hanging up mid-sentence) through the whole appliance; the long run is `appliancectl bench
soak --minutes 60` (README "bench soak")."""

from __future__ import annotations

import shutil

import pytest

needs_baresip = pytest.mark.skipif(shutil.which("baresip") is None, reason="scripts/test installs baresip")


@pytest.mark.timeout(420)
@needs_baresip
def test_two_minutes_of_random_callers_fail_nothing_and_leak_no_descriptors(models_dir):
    from appliance.bench import soak
    from appliance.config.loader import parse

    config = parse(f'[paths]\nmodels_dir = "{models_dir}"\n')
    r = soak.run(config, minutes=2.0, calls=2, sample_s=5.0, window_min=1.0, warmup_min=0.75)
    assert r["calls"] >= 4 and r["failed_calls"] == 0, soak.render(r)
    assert all(r["alive"].values()), r["alive"]
    assert "error" not in r["outcomes"], r["outcomes"]
    # a softphone that died on a REFER sent no BYE: sipd closes that call after 30 s without media
    assert r["outcomes"].get("in-progress", 0) <= r["softphone_crashes_after_transfer"], r["outcomes"]
    for name, m in r["memory"].items():
        assert m["fds_max"] - m["fds_min"] <= 12, (name, m)  # calls come and go; descriptors do not pile up
    assert sum(w["n"] for w in r["turn_total_ms_by_window"]) >= r["calls"]  # every call got answers, recorded
