"""`appliancectl demo`: the appliance's main job, once, in front of you.

Starts the whole appliance on the CPU defaults in a temp dir (under the dev supervisor, as
`appliancectl up`), the example receptionist and its booking system, then rings it from a
real softphone (baresip) whose caller asks the opening hours and books an appointment by
voice, answering whatever the agent asks (bench/callers.py),
printing the conversation as it happens and a summary; keeps the recording and the call
record where it says.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from .context import load_config

@click.command()
@click.option("--keep", is_flag=True, help="leave the appliance running afterwards (Ctrl-C stops it)")
@click.pass_context
def demo(ctx: click.Context, keep: bool) -> None:
    """Run the whole appliance and call it from a real softphone: the conversation, live."""
    from ..agent.examples.clinic import BookingServerThread, install_example_agent
    from ..agent.records import CallRecords
    from ..bench.callers import BookingCaller
    from ..bench.softphone import Softphone, converse
    from ..bench.sipdrive import EventLog, Service, free_port
    from .liveview import LiveView

    from ..bench.preflight import require_models
    from ..models.errors import ModelError

    loaded = load_config(ctx)
    try:
        require_models(loaded)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    models_dir = loaded.paths.models_dir
    work = Path(tempfile.mkdtemp(prefix="appliance-demo-"))
    shm = tempfile.mkdtemp(prefix="appliance-demo-", dir="/dev/shm")
    port = free_port()
    config = work / "appliance.toml"
    config.write_text(f'[paths]\nstate_dir = "{work}/state"\nrun_dir = "{work}/run"\nshm_dir = "{shm}"\n'
                      f'agents_dir = "{work}/agents"\nmodels_dir = "{models_dir}"\n[log]\nlevel = "info"\n'
                      f'[sip]\nbind = "127.0.0.1"\nport = {port}\n')
    sandbox = {"root": work, "config": config, "run_dir": work / "run", "shm_dir": shm}
    services = ("sipd", "asrd", "ttsd", "agentd")
    with BookingServerThread(str(work / "bookings.db")) as booking:
        (work / "agents").mkdir()
        install_example_agent(work / "agents", booking.url)
        click.echo(f"== starting the appliance in {work} (SIP on 127.0.0.1:{port}; log {work}/up.log)")
        up = subprocess.Popen([sys.executable, "-m", "appliance", "--config", str(config), "up"],
                              stdout=subprocess.DEVNULL, stderr=open(work / "up.log", "w"))
        try:
            deadline = time.monotonic() + 120
            while not all(_ready(Service(sandbox, s)) for s in services):
                if up.poll() is not None or time.monotonic() > deadline:
                    click.echo((work / "up.log").read_text(), err=True)
                    raise click.ClickException("the appliance did not start (log above)")
                time.sleep(0.3)
            click.echo("   sipd, asrd, ttsd, agentd ready; the booking system listens on " + booking.url)
            click.echo("== a caller (baresip) rings sip:agent@127.0.0.1 and talks:\n")
            events = EventLog(str(work / "run"), services=services)
            view = LiveView(events)
            phone = Softphone(work / "phone")
            caller = BookingCaller(ask_hours=True)
            try:
                phone.dial(f"sip:agent@127.0.0.1:{port}")
                converse(phone, events, caller, timeout=240, on_tick=view.show_new)
                deadline = time.monotonic() + 15
                while not view.call_ended() and time.monotonic() < deadline:
                    view.poll()
                view.poll(timeout=1.0)
            finally:
                phone.close()
            events.close()
            records = CallRecords(work / "state" / "calls.db", readonly=True)
            calls = records.list_calls()
            click.echo("\n== summary")
            if calls:
                call = records.get_call(calls[0].id)
                settle = time.monotonic() + 5  # agentd closes the record just after the call ends
                while call.outcome == "in-progress" and time.monotonic() < settle:
                    time.sleep(0.2)
                    call = records.get_call(calls[0].id)
                totals = [t.latency.get("total") for t in call.turns if t.role == "agent" and t.latency
                          and t.latency.get("total")]
                booked = [t for t in call.tools if t.tool == "book_appointment" and t.status == "ok"]
                click.echo(f"   {len(call.turns)} turns, outcome {call.outcome}; end of speech to agent audio "
                           f"(appliance stamps) median {sorted(totals)[len(totals) // 2]:.0f} ms"
                           if totals else f"   {len(call.turns)} turns, outcome {call.outcome}")
                click.echo(f"   booking: {booked[0].result if booked else 'none made'}")
                click.echo(f"   call record: {work}/state/calls.db — "
                           f"appliancectl --config {config} call show {call.id}")
            dumps = sorted((work / "phone").glob("dump-*-dec.wav"))
            click.echo(f"   what the caller heard: {dumps[0] if dumps else '(no recording)'}")
            if keep:
                click.echo(f"== still running; call sip:agent@127.0.0.1:{port}. Ctrl-C stops it.")
                try:
                    up.wait()
                except KeyboardInterrupt:
                    pass
        finally:
            if up.poll() is None:
                up.send_signal(signal.SIGINT)
                try:
                    up.wait(30)
                except subprocess.TimeoutExpired:
                    up.kill()
            shutil.rmtree(shm, ignore_errors=True)


def _ready(service) -> bool:
    try:
        return service.status(timeout=0.3).state == "ready"
    except Exception:
        return False
