"""The Kamailio front node (ansible/roles/front), for real: its kamailio.cfg and dispatcher.list
rendered from the role's own templates, Kamailio started on loopback in front of real sipd
boxes, and SIPp as the PBX. What a site with several boxes relies on: a call reaches a box and
its ACK/BYE follow the Record-Route set both ways, a full or dead box is skipped for the next,
and a source that is not the PBX is refused."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest
from sipd_harness import EventLog, Sipd, free_port, held_call, sipp, sipp_counts

from appliance.bench.sipdrive import make_sandbox
from appliance.bus.messages import CallEnded, CallStarted

TEMPLATES = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "front" / "templates"
DEFAULTS = {  # the role's defaults (defaults/main.yml), but on loopback and quick
    "front_sip_listen": "127.0.0.1", "front_sip_advertise": "", "front_algorithm": 4,
    "front_allow_from": [], "front_probe_interval": 1, "front_invite_timeout_ms": 1000,
    "front_children": 1, "front_boxes": [],
}

pytestmark = [pytest.mark.skipif(shutil.which("kamailio") is None, reason="scripts/test installs kamailio"),
              pytest.mark.timeout(180)]


class Front:
    """kamailio -DD -E (foreground, log to stderr) with the role's config in a temp dir."""

    def __init__(self, root: Path, destinations: list[str], **overrides):
        self.root, self.port = root, free_port()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
        values = {**DEFAULTS, **overrides, "front_sip_port": self.port, "front_config_dir": str(root),
                  "front_destinations": destinations}
        for name in ("kamailio.cfg", "dispatcher.list"):
            (root / name).write_text(env.get_template(f"{name}.j2").render(**values))
        (root / "run").mkdir()
        check = subprocess.run(["kamailio", "-c", "-f", str(root / "kamailio.cfg")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr[-3000:]
        self.log = open(root / "kamailio.log", "w")
        self.proc = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(root / "kamailio.cfg"),
                                      "-Y", str(root / "run"), "-P", str(root / "run" / "kamailio.pid")],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while not self.answers_options():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("kamailio did not come up:\n" + self.output()[-3000:])

    def answers_options(self) -> bool:
        """Ready: an OPTIONS to the front itself gets an answer (200, or 403 where the test is
        not the PBX)."""
        return self.ask("OPTIONS", f"sip:127.0.0.1:{self.port}", timeout=0.2) is not None

    def ask(self, method: str, ruri: str, to_tag: str = "", route: str = "", timeout: float = 2.0) -> str | None:
        """One request straight from a socket; the status line of the answer, or None."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(timeout)
            port = s.getsockname()[1]
            s.sendto((f"{method} {ruri} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{time.monotonic_ns()}\r\n"
                      f"From: <sip:probe@127.0.0.1:{port}>;tag=1\r\n"
                      f"To: <{ruri}>{';tag=' + to_tag if to_tag else ''}\r\n"
                      f"{'Route: <' + route + '>' + chr(13) + chr(10) if route else ''}"
                      f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
                      "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", self.port))
            try:
                return s.recv(4096).split(b"\r\n", 1)[0].decode()
            except TimeoutError:
                return None

    def output(self) -> str:
        return (self.root / "kamailio.log").read_text(errors="replace")

    def stop(self) -> None:
        """Kamailio and every child it forked (its own process group)."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived the main process
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture
def site(tmp_path):
    """Start boxes (real sipd, each in a sandbox of its own) and a front over them."""
    made: list = []

    def box(**kw) -> Sipd:
        s = Sipd(make_sandbox(), **kw).start()
        made.append(s)
        return s

    def front(destinations: list[str], **overrides) -> Front:
        root = tmp_path / f"front{len(made)}"
        root.mkdir()
        f = Front(root, destinations, **overrides)
        made.append(f)
        return f

    yield box, front
    for thing in reversed(made):
        thing.stop()
        if isinstance(thing, Sipd):
            shutil.rmtree(thing.sandbox["root"], ignore_errors=True)
            shutil.rmtree(thing.sandbox["shm_dir"], ignore_errors=True)


def answered_by_one(first: Sipd, second: Sipd, f: Front, tmp_path: Path) -> str:
    """Which of two boxes took one call through the front."""
    watched = {"first": EventLog(first.run_dir), "second": EventLog(second.run_dir)}
    out = held_call(f.port, tmp_path, hold_ms=200, timeout=30)
    assert sipp_counts(out) == (1, 0), out.stdout[-2000:] + f.output()[-2000:]
    took = []
    for name, events in watched.items():
        events.collect(timeout=1)  # the call is over (SIPp has its 200 to BYE): its events are out
        if events.of(CallEnded):
            took.append(name)
        events.close()
    assert len(took) == 1, took
    return took[0]


def uri(box: Sipd) -> str:
    return f"sip:127.0.0.1:{box.port}"


def end_reason(events: EventLog) -> str:
    """How the one call a box took ended (``events`` subscribed before the call)."""
    try:
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        (ended,) = events.of(CallEnded)
        return ended.reason
    finally:
        events.close()


def test_a_call_goes_through_the_front_to_a_box_and_its_bye_follows_the_route_set(site, tmp_path):
    box, front = site
    a = box()
    f = front([uri(a)])
    events = EventLog(a.run_dir)
    out = held_call(f.port, tmp_path, hold_ms=1500, timeout=30)
    assert sipp_counts(out) == (1, 0), out.stdout[-2000:] + f.output()[-2000:]
    assert end_reason(events) == "caller-hangup"
    pbx = (tmp_path / "pbx.log").read_text()
    # the box echoed the front's Record-Route, so the PBX's ACK and BYE went to the front
    assert f"Record-Route: <sip:127.0.0.1:{f.port};lr" in pbx
    assert f"Route: <sip:127.0.0.1:{f.port};lr" in pbx


def test_a_box_that_hangs_up_reaches_the_pbx_through_the_front(site, tmp_path):
    """The box's own BYE (here: no AI pipeline, so sipd plays its message and hangs up) goes
    to the front along the route set and on to the PBX: loose_route alone carries it."""
    box, front = site
    a = box(extra_sip="pipeline_timeout_s = 1.0")
    f = front([uri(a)])
    events = EventLog(a.run_dir)
    out = sipp("uac_via_front_wait_bye.xml", f.port, cwd=str(tmp_path), timeout=40)
    assert sipp_counts(out) == (1, 0), out.stdout[-2000:] + f.output()[-2000:]
    assert end_reason(events) == "fallback-message"


def probed(box: Sipd, times: int = 2, timeout: float = 10) -> None:
    """Wait until the front's OPTIONS probe has reached ``box`` ``times`` more times."""
    seen = box.status().details["sip_received"]
    deadline = time.monotonic() + timeout
    while box.status().details["sip_received"] < seen + times:
        assert time.monotonic() < deadline, "the front did not probe the box"
        time.sleep(0.1)


@pytest.mark.parametrize("probe_s", [30, 1])
def test_a_full_box_is_skipped_for_the_next(site, tmp_path, probe_s):
    """Between probes a full box answers the INVITE 503 and the front tries the next box; once
    probed, its 503 to OPTIONS keeps it out and no INVITE is spent on it."""
    box, front = site
    full, spare = box(max_calls=1), box()
    events = EventLog(full.run_dir)
    (tmp_path / "direct").mkdir()  # straight to the first box: it is now at its max_calls
    holding = held_call(full.port, tmp_path / "direct", hold_ms=60000, timeout=90, background=True)
    try:
        events.collect(until=lambda e: isinstance(e, CallStarted), timeout=10)
        events.close()
        # 8: always the first box that is up
        f = front([uri(full), uri(spare)], front_algorithm=8, front_probe_interval=probe_s)
        if probe_s == 1:
            probed(full)
        assert full.status().details["active_calls"] == 1
        events = EventLog(spare.run_dir)
        out = held_call(f.port, tmp_path, hold_ms=500, timeout=30)
        assert sipp_counts(out) == (1, 0), out.stdout[-2000:] + f.output()[-2000:]
        assert end_reason(events) == "caller-hangup"
        busy = full.status().details["refused_busy"]
        if probe_s == 30:
            assert busy == 1 and "moved to the next box" in f.output()
        else:
            assert busy == 0 and "moved to the next box" not in f.output()
    finally:
        holding.kill()
        holding.communicate()


def test_a_dead_box_times_out_and_the_call_moves_to_the_next(site, tmp_path):
    box, front = site
    alive = box()
    dead = f"sip:127.0.0.1:{free_port()}"  # nothing listens there
    f = front([dead, uri(alive)], front_algorithm=8, front_probe_interval=30)
    events = EventLog(alive.run_dir)
    out = held_call(f.port, tmp_path, hold_ms=500, timeout=30)
    assert sipp_counts(out) == (1, 0), out.stdout[-2000:] + f.output()[-2000:]
    assert end_reason(events) == "caller-hangup"
    assert "moved to the next box" in f.output()


def test_only_the_pbx_may_call_through_the_front(site, tmp_path):
    box, front = site
    a = box()
    f = front([uri(a)], front_allow_from=["127.0.0.9"])  # the PBX is elsewhere; SIPp is not it
    out = held_call(f.port, tmp_path, hold_ms=500, timeout=10)
    assert sipp_counts(out) == (0, 1)
    assert "SIP/2.0 403 Forbidden" in (tmp_path / "pbx.log").read_text()
    assert a.status().details.get("calls_total", 0) == 0


def test_the_front_relays_no_in_dialog_request_it_did_not_route(site, tmp_path):
    """An in-dialog request (a To tag) that the front did not record-route, forged or stray, is
    answered here, not sent on to wherever its Request-URI or its Route points: the front is
    no open relay. Only a route set starting at the front itself goes on (to the box's 481)."""
    box, front = site
    a = box()
    f = front([uri(a)], front_probe_interval=30)  # no OPTIONS probe reaches the box meanwhile
    events = EventLog(a.run_dir)
    assert f.ask("BYE", f"sip:agent@127.0.0.1:{a.port}", to_tag="made-up") == "SIP/2.0 404 Not Here"
    assert f.ask("INFO", f"sip:agent@127.0.0.1:{a.port}", to_tag="made-up") == "SIP/2.0 404 Not Here"
    # a route set that does not start at the front: not relayed to its first hop either
    assert f.ask("BYE", "sip:agent@192.0.2.1", to_tag="made-up",
                 route=f"sip:127.0.0.1:{a.port};lr") == "SIP/2.0 403 Route Not Here"
    assert f.ask("BYE", f"sip:agent@127.0.0.1:{a.port}", to_tag="made-up",
                 route=f"sip:127.0.0.1:{f.port};lr") == "SIP/2.0 481 Call/Transaction Does Not Exist"
    assert f.ask("MESSAGE", f"sip:agent@127.0.0.1:{a.port}") == "SIP/2.0 405 Method Not Allowed"
    assert events.collect(timeout=1) == [] and a.status().details["sip_received"] == 1  # that one BYE
    events.close()


def test_a_drained_box_is_left_out_by_the_probe_until_the_drain_is_lifted(site, tmp_path):
    """`appliancectl drain` on a box before maintenance: its OPTIONS say 503, the front sends
    new calls to the next box, and takes the box back once the drain is lifted."""
    box, front = site
    first, second = box(), box()
    f = front([uri(first), uri(second)], front_algorithm=8)  # every call to the first box that is up

    def drain(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "appliance", "--config", str(first.config), "drain", *args],
                       check=True, capture_output=True, timeout=60)

    drain()
    probed(first)  # answered 503: out
    assert answered_by_one(first, second, f, tmp_path) == "second"
    drain("--off")
    probed(first)  # answered 200: back in
    assert answered_by_one(first, second, f, tmp_path) == "first"
    assert first.status().details["refused_draining"] == 0  # no INVITE was spent on the drained box
