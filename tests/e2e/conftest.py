"""End to end: the whole appliance as real processes called by a real softphone
(appliance/bench/calldrive.py, shared with `appliancectl bench latency`)."""

from __future__ import annotations

import shutil

import pytest

from appliance.agent.examples.clinic import BookingServerThread
from appliance.bench.calldrive import Appliance

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="scripts/test installs baresip")


@pytest.fixture
def appliance(sandbox, tmp_path):
    with BookingServerThread(str(tmp_path / "bookings.db")) as booking:
        app = Appliance(sandbox, booking.url)
        app.booking = booking
        yield app
        app.stop()
