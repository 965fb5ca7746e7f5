"""`appliancectl talk`: talk to the agent from the box itself, through sipd like any call.

A local line (the sound card, a USB handset or an analog interface; or WAV files, so it works
and is tested without one) rings the running appliance's sipd over SIP on loopback, and the
conversation is printed as it happens from the bus. Ctrl-C hangs up (BYE). Exit 0 when the
call was answered and ended, 1 when it failed (with the reason), 2 for bad usage or config.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time

import click

from ..config import SERVICES
from .context import load_config

FILE_TAIL_S = 15.0  # with --in: how long to stay on the line after the file, to hear the answer


@click.command()
@click.option("--device", help="sound device: index or name fragment, or IN,OUT (see --list-devices)")
@click.option("--list-devices", is_flag=True, help="list the sound devices PortAudio sees and exit")
@click.option("--in", "mic", type=click.Path(dir_okay=False),
              help="a WAV file (16-bit, any rate) said instead of the microphone, then silence")
@click.option("--out", "record", type=click.Path(dir_okay=False),
              help="with --in: record what the line hears to this WAV (16 kHz, same timeline)")
@click.option("--seconds", type=click.FloatRange(min=0.1),
              help=f"hang up this long after the answer [default: with --in, its length + {FILE_TAIL_S:g} s; "
                   "else until Ctrl-C or the agent hangs up]")
@click.option("--codec", type=click.Choice(["g722", "pcmu"]), default="g722", show_default=True,
              help="codec offered first (the other is offered as a fallback)")
@click.option("--to", "target", help="SIP URI to ring [default: sip:agent@ the configured sip address and port]")
@click.pass_context
def talk(ctx: click.Context, device: str | None, list_devices: bool, mic: str | None, record: str | None,
         seconds: float | None, codec: str, target: str | None) -> None:
    """Talk to the agent through the box's sound card (or WAV files), as a phone call does."""
    from ..talk.line import LineError, SoundDeviceLine, WavLine
    from ..talk.line import list_devices as devices_text
    from ..talk.uac import CallFailed, Uac
    from ..telephony.sip.message import SipParseError

    def fail(code: int, text: str) -> None:
        click.echo(f"appliancectl talk: {text}", err=True)
        sys.exit(code)

    if list_devices:
        try:
            click.echo(devices_text())
        except LineError as exc:
            fail(2, str(exc))
        return
    if record and not mic:
        raise click.UsageError("--out records what a file line hears: it needs --in")
    if mic and device:
        raise click.UsageError("--device and --in are two different lines: give one")
    config = load_config(ctx)
    try:
        uac = Uac(target or default_target(config), credentials=credentials(config))
    except SipParseError as exc:
        raise click.UsageError(f"--to {target!r}: {exc}") from None
    try:
        line = WavLine(mic, record) if mic else SoundDeviceLine(device)
    except LineError as exc:
        fail(2, str(exc))
    if mic and seconds is None:
        seconds = line.mic_seconds + FILE_TAIL_S
    where = f"{mic} (then silence)" if mic else f"{line.input_name} / {line.output_name}"
    click.echo(f"== ringing {uac.target} from {where}; Ctrl-C hangs up")
    uac.on_progress = lambda status, reason: click.echo(f"   {status} {reason}")
    uac.on_notice = lambda text: click.echo(f"   ({text})")
    view = ConversationView(str(config.paths.run_dir), lambda: uac.call_id)
    view.start()
    failure = None
    try:
        result = asyncio.run(_talk(line, uac, codec, seconds))
    except CallFailed as exc:
        failure = str(exc)
    except KeyboardInterrupt:  # before the call's own Ctrl-C handling was in place
        failure = "interrupted"
    finally:
        view.finish()
        line.close()
    if failure is not None:
        fail(1, failure)
    s = result.stats
    click.echo(f"== hung up after {result.seconds:.1f} s ({result.reason}"
               f"{'' if result.bye_confirmed else '; our BYE went unanswered'}); {result.codec}, "
               f"RTP sent {s.sent}, received {s.received}, lost {s.lost}")
    if record:
        click.echo(f"   what the line heard: {record}")


async def _talk(line, uac, codec: str, seconds: float | None):
    from ..talk.session import talk as run

    await asyncio.sleep(0.3)  # let the view's bus subscription connect before the call starts
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)  # Ctrl-C: hang up properly, not a traceback
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    return await run(line, uac, codec=codec, seconds=seconds, stop=stop)


def default_target(config) -> str:
    """The appliance's own sipd, as its config says it listens (the way `up` starts it)."""
    s = config.sip
    host = s.advertised_host
    return f"sip:agent@{f'[{host}]' if ':' in host else host}:{s.port}"


def credentials(config):
    """sipd challenging callers (sip.auth_realm): the box's own config holds a user to answer with."""
    from ..telephony.sip.digest import Credentials

    s = config.sip
    if not s.auth_realm or not s.auth_users:
        return None
    user, password = next(iter(s.auth_users.items()))
    return Credentials(user, password)


class CallEvents:
    """An EventLog seen through one call: the one whose CallStarted carries our SIP Call-ID
    (a box taking real calls meanwhile must not mix theirs into this conversation)."""

    def __init__(self, log, sip_call_id):
        self.log = log
        self.sip_call_id = sip_call_id
        self.call_id: str | None = None

    @property
    def events(self) -> list:
        from ..bus.messages import CallStarted

        if self.call_id is None:
            self.call_id = next((e.call_id for e in self.log.events if isinstance(e, CallStarted)
                                 and e.headers.get("Call-ID") == self.sip_call_id()), None)
        return [e for e in self.log.events if self.call_id is not None and e.call_id == self.call_id]

    def collect(self, timeout: float = 0.2) -> None:
        self.log.collect(timeout=timeout)


class ConversationView(threading.Thread):
    """The LiveView of `demo` on its own thread (the bus socket lives and dies there), so the
    call's asyncio loop never waits on printing."""

    def __init__(self, run_dir: str, sip_call_id):
        super().__init__(name="talk-view", daemon=True)
        self.run_dir, self.sip_call_id = run_dir, sip_call_id
        self._done = threading.Event()

    def run(self) -> None:
        from ..bench.sipdrive import EventLog
        from .liveview import LiveView

        log = EventLog(self.run_dir, services=SERVICES)
        try:
            events = CallEvents(log, self.sip_call_id)
            view = LiveView(events)
            while not self._done.is_set():
                view.poll(0.2)
            deadline = time.monotonic() + 2.0  # sipd's "call ended" follows our hang-up
            while events.call_id is not None and not view.call_ended() and time.monotonic() < deadline:
                view.poll(0.2)
        finally:
            log.close()

    def finish(self) -> None:
        self._done.set()
        self.join(5)
