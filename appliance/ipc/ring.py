"""Shared-memory audio ring: one per call and direction, one writer, any number of readers.

Layout of ``<shm_dir>/appliance-<call>-<in|out>`` (little-endian int64 unless noted)::

    header   HEADER_WORDS int64   magic, version, rate, frame samples, slots, owner pid/start,
                                  writer pid/start, created ns, write_seq, closed
    meta     slots x 2 int64      per slot: sequence number, monotonic capture time (ns)
    pcm      slots x 320 int16    per slot: one 20 ms frame of 16 kHz mono PCM16

The writer fills a slot's samples, then its capture time, then its sequence number, then
advances ``write_seq``: a reader that sees ``write_seq`` past a slot sees the whole slot. The
slot's sequence number is set to -1 while it is being rewritten, so a reader lapped by the
writer notices (``Frame.valid()``) instead of trusting torn samples. Readers hold only their
own cursor, so any number can attach, detach and restart without telling the writer.

Frames are handed out as numpy views into the mapping (no copy). A view stays intact until
the writer laps it, ``slots - GUARD`` frames later (10 s by default): consume or copy before.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ..audio import FRAME_NS, FRAME_SAMPLES, SAMPLE_RATE
from . import procid

log = logging.getLogger("appliance.ipc")

MAGIC = 0x41504C52494E4731  # "APLRING1"
VERSION = 1
HEADER_WORDS = 16
GUARD = 2  # slots kept between the writer and the oldest frame a reader may take

# header word indexes
_MAGIC, _VERSION, _RATE, _FRAME, _SLOTS = 0, 1, 2, 3, 4
_OWNER_PID, _OWNER_START, _WRITER_PID, _WRITER_START = 5, 6, 7, 8
_CREATED_NS, _WRITE_SEQ, _CLOSED = 9, 10, 11

DIRECTIONS = ("in", "out")
_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RING_NAME = re.compile(r"^appliance-(?P<call>.+)-(?P<dir>in|out)$")


class RingError(Exception):
    """A ring that cannot be used: missing, corrupt, or owned by a live writer."""


def ring_path(shm_dir: str | os.PathLike, call_id: str, direction: str) -> Path:
    if not _CALL_ID.match(call_id):
        raise RingError(f"call id {call_id!r} is not allowed: 1-64 of [A-Za-z0-9_.-], not starting with . - _")
    if direction not in DIRECTIONS:
        raise RingError(f"direction {direction!r} is not one of {DIRECTIONS}")
    return Path(shm_dir) / f"appliance-{call_id}-{direction}"


def _size(slots: int) -> int:
    return 8 * HEADER_WORDS + slots * 16 + slots * FRAME_SAMPLES * 2


def create_ring(shm_dir: str | os.PathLike, call_id: str, direction: str, *, seconds: float = 10.0) -> Path:
    """Create a ring file owned by this process, with no writer yet (sipd, per call and direction).

    Atomic: the file appears under its name fully initialised, and never replaces an
    existing ring (a live call's audio is never clobbered).
    """
    path = ring_path(shm_dir, call_id, direction)
    slots = max(int(seconds * 1e9 // FRAME_NS), 2 * GUARD + 2)
    size = _size(slots)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o660)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as mm:
            buf = memoryview(mm)
            hdr = buf[: 8 * HEADER_WORDS].cast("q")
            meta = buf[8 * HEADER_WORDS : 8 * HEADER_WORDS + slots * 16].cast("q")
            np.frombuffer(meta, dtype="<i8").reshape(slots, 2)[:, 0] = -1  # no slot holds a frame yet
            hdr[_VERSION], hdr[_RATE], hdr[_FRAME], hdr[_SLOTS] = VERSION, SAMPLE_RATE, FRAME_SAMPLES, slots
            hdr[_OWNER_PID], hdr[_OWNER_START] = procid.self_identity()
            hdr[_CREATED_NS] = time.monotonic_ns()
            hdr[_MAGIC] = MAGIC
            meta.release()
            hdr.release()
            buf.release()
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise RingError(f"ring {path} already exists") from None
    finally:
        os.unlink(tmp)
    return path


class Frame(NamedTuple):
    """One 20 ms frame. ``pcm`` is a read-only view into shared memory, not a copy.

    A tuple rather than a dataclass: a reader builds 10 000 of these a second at 200 calls.
    """

    seq: int
    capture_ns: int
    pcm: np.ndarray
    slot_meta: memoryview
    slot: int

    def valid(self) -> bool:
        """Still the frame that was read (the writer has not lapped it since, and the reader
        that produced it is still open)."""
        try:
            return self.slot_meta[2 * self.slot] == self.seq
        except ValueError:  # the reader was closed: its views are released
            return False


class _Mapping:
    """An mmap of a ring file with typed views over its three regions."""

    def __init__(self, path: Path, writable: bool):
        self.path = path
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise RingError(f"ring {path} does not exist") from None
        try:
            size = os.fstat(fd).st_size
            if size < 8 * HEADER_WORDS:
                raise RingError(f"ring {path} is truncated ({size} bytes)")
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self.mm = mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)
        buf = memoryview(self.mm)
        self.header = buf[: 8 * HEADER_WORDS].cast("q")
        if self.header[_MAGIC] != MAGIC:
            self.close()
            raise RingError(f"ring {path} has a bad magic number (not an appliance ring)")
        if self.header[_VERSION] != VERSION:
            found = self.header[_VERSION]
            self.close()
            raise RingError(f"ring {path} has layout version {found}, this build reads {VERSION}")
        self.slots = self.header[_SLOTS]
        if size != _size(self.slots) or self.header[_FRAME] != FRAME_SAMPLES:
            self.close()
            raise RingError(f"ring {path} size {size} does not match its header")
        meta_end = 8 * HEADER_WORDS + self.slots * 16
        self.meta = buf[8 * HEADER_WORDS : meta_end].cast("q")
        self.pcm = np.frombuffer(self.mm, dtype="<i2", offset=meta_end).reshape(self.slots, FRAME_SAMPLES)
        if not writable:
            self.pcm.flags.writeable = False

    def close(self) -> None:
        # Views must go before the mmap can close; a caller still holding a Frame keeps it open.
        for name in ("header", "meta"):
            view = self.__dict__.pop(name, None)
            if view is not None:
                view.release()
        self.__dict__.pop("pcm", None)
        try:
            self.mm.close()
        except BufferError:
            pass  # a Frame view still references it; the OS unmaps when that is collected


class RingWriter:
    """The single writer of a ring. Create it (sipd, per call) or take over a dead writer's."""

    def __init__(self, mapping: _Mapping, lock_fd: int):
        self._m = mapping
        self._lock_fd = lock_fd
        self.path = mapping.path
        self.slots = mapping.slots
        self._seq = mapping.header[_WRITE_SEQ]
        pid, started = procid.self_identity()
        mapping.header[_WRITER_PID] = pid
        mapping.header[_WRITER_START] = started

    @classmethod
    def create(cls, shm_dir: str | os.PathLike, call_id: str, direction: str, *, seconds: float = 10.0) -> "RingWriter":
        """Create a ring and become its writer (sipd for the caller's audio)."""
        create_ring(shm_dir, call_id, direction, seconds=seconds)
        return cls.attach(shm_dir, call_id, direction)

    @classmethod
    def attach(cls, shm_dir: str | os.PathLike, call_id: str, direction: str) -> "RingWriter":
        """Become the writer of an existing ring (ttsd on a call's out ring, or a restarted
        ttsd re-attaching to a live call). Refuses while another writer is alive: two writers
        would corrupt the ring. Numbering continues where the dead writer stopped."""
        path = ring_path(shm_dir, call_id, direction)
        # The writer holds an exclusive flock on the ring file while attached: the kernel drops
        # it when the writer dies, so "is there a live writer" has no race and no PID reuse.
        try:
            lock_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingError(f"ring {path} does not exist") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            m = _Mapping(path, writable=False)
            wpid = m.header[_WRITER_PID]
            m.close()
            raise RingError(f"ring {path} already has a live writer (pid {wpid})") from None
        try:
            m = _Mapping(path, writable=True)
        except RingError:
            os.close(lock_fd)
            raise
        if m.header[_CLOSED] == 1:
            m.close()
            os.close(lock_fd)
            raise RingError(f"ring {path} was closed by its writer: the call has ended")
        return cls(m, lock_fd)

    @property
    def seq(self) -> int:
        """Sequence number the next frame will get (= frames written so far)."""
        return self._seq

    def next_slot(self) -> np.ndarray:
        """The writable samples of the next slot, to decode straight into (then ``commit``)."""
        i = self._seq % self.slots
        self._m.meta[2 * i] = -1  # readers that still hold this slot now see it as lapped
        return self._m.pcm[i]

    def commit(self, capture_ns: int | None = None) -> int:
        """Publish the slot filled via ``next_slot``; returns its sequence number."""
        seq = self._seq
        i = seq % self.slots
        meta = self._m.meta
        meta[2 * i + 1] = time.monotonic_ns() if capture_ns is None else capture_ns
        meta[2 * i] = seq
        self._seq = seq + 1
        self._m.header[_WRITE_SEQ] = self._seq
        return seq

    def write(self, pcm: np.ndarray, capture_ns: int | None = None) -> int:
        """Copy one frame (320 int16 samples) into the ring and publish it."""
        if pcm.shape != (FRAME_SAMPLES,):
            raise ValueError(f"a frame is {FRAME_SAMPLES} samples, got shape {pcm.shape}")
        self.next_slot()[:] = pcm
        return self.commit(capture_ns)

    def close(self, *, end_of_stream: bool = True) -> None:
        """Detach. ``end_of_stream`` tells readers no more frames will come (the call ended)."""
        if end_of_stream:
            self._m.header[_CLOSED] = 1
        self._m.header[_WRITER_PID] = 0
        self._m.close()
        os.close(self._lock_fd)

    def unlink(self) -> None:
        """Remove the ring file (the owner, when the call is over). Readers' maps stay valid."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RingWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # Leaving on an exception detaches without ending the call: a successor may take over.
        self.close(end_of_stream=exc_type is None)


class RingReader:
    """A reader with its own cursor. Starts at the oldest frame still in the ring or, with
    ``from_now``, at the next frame to be written."""

    def __init__(self, shm_dir: str | os.PathLike, call_id: str, direction: str, *, from_now: bool = False):
        self._m = _Mapping(ring_path(shm_dir, call_id, direction), writable=False)
        self.path = self._m.path
        self.slots = self._m.slots
        self._header = self._m.header
        self._meta = self._m.meta
        self._pcm = self._m.pcm
        self._window = self.slots - GUARD
        head = self._header[_WRITE_SEQ]
        self.cursor = head if from_now else max(0, head - self._window)
        self.lost = 0  # frames overwritten before this reader got to them

    @property
    def head(self) -> int:
        return self._header[_WRITE_SEQ]

    def available(self) -> int:
        return self._header[_WRITE_SEQ] - self.cursor

    def read(self) -> Frame | None:
        """The next frame, or None if the reader has caught up. Counts overrun in ``lost``."""
        head = self._header[_WRITE_SEQ]
        cursor = self.cursor
        if cursor >= head:
            return None
        if head - cursor > self._window:  # overrun: skip to the oldest frame that is safe
            skip = head - self._window - cursor
            self.lost += skip
            cursor += skip
        i = cursor % self.slots
        meta = self._meta
        capture_ns = meta[2 * i + 1]
        if meta[2 * i] != cursor:  # lapped between reading head and here (reader stalled)
            self.cursor = cursor
            return self._resync()
        self.cursor = cursor + 1
        return Frame(cursor, capture_ns, self._pcm[i], meta, i)

    def _resync(self) -> Frame | None:
        head = self._header[_WRITE_SEQ]
        target = max(self.cursor, head - self._window)
        self.lost += target - self.cursor
        self.cursor = target
        return self.read()

    def skip_to_head(self) -> int:
        """Drop every frame not yet read (a barge-in's flush); returns how many were dropped."""
        head = self._header[_WRITE_SEQ]
        dropped = max(0, head - self.cursor)
        self.cursor = max(self.cursor, head)
        return dropped

    def frames(self) -> Iterator[Frame]:
        """Every frame available now, in order."""
        while (frame := self.read()) is not None:
            yield frame

    def writer_closed(self) -> bool:
        """The writer ended the stream (call over): nothing more will arrive."""
        return self._header[_CLOSED] == 1

    def writer_alive(self) -> bool:
        return procid.alive(self._header[_WRITER_PID], self._header[_WRITER_START])

    def writer_state(self) -> str:
        """"closed" (stream ended), "alive", "dead" (crashed mid-call: a successor may take
        over), or "none" (no writer attached yet, or one detached without ending the stream)."""
        if self._header[_CLOSED] == 1:
            return "closed"
        if self._header[_WRITER_PID] == 0:
            return "none"
        return "alive" if self.writer_alive() else "dead"

    def close(self) -> None:
        self._header = self._meta = self._pcm = None  # type: ignore[assignment]
        self._m.close()

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class RingInfo:
    path: Path
    call_id: str
    direction: str
    frames_written: int
    owner_pid: int
    owner_alive: bool
    writer_pid: int
    writer_alive: bool
    closed: bool
    error: str = ""

    @property
    def stale(self) -> bool:
        """Left by a crashed run: unreadable, or nobody who made or feeds it is alive."""
        return bool(self.error) or not (self.owner_alive or self.writer_alive)


def inspect(shm_dir: str | os.PathLike) -> list[RingInfo]:
    """Every appliance ring in ``shm_dir`` with the liveness of its owner and writer."""
    out = []
    for path in sorted(Path(shm_dir).glob("appliance-*")):
        m = _RING_NAME.match(path.name)
        if not m or not path.is_file() or path.is_symlink():
            continue
        try:
            mp = _Mapping(path, writable=False)
        except (RingError, OSError) as exc:
            out.append(RingInfo(path, m["call"], m["dir"], 0, 0, False, 0, False, False, str(exc)))
            continue
        h = mp.header
        out.append(
            RingInfo(
                path, m["call"], m["dir"], h[_WRITE_SEQ],
                h[_OWNER_PID], procid.alive(h[_OWNER_PID], h[_OWNER_START]),
                h[_WRITER_PID], procid.alive(h[_WRITER_PID], h[_WRITER_START]),
                h[_CLOSED] == 1,
            )
        )
        mp.close()
    return out


def sweep_stale(shm_dir: str | os.PathLike) -> list[RingInfo]:
    """Remove rings left by a crashed run (see ``RingInfo.stale``); returns what was removed.

    Also removes half-created temp files of a process that died inside ``RingWriter.create``.
    """
    removed = []
    for info in inspect(shm_dir):
        if info.stale and _unlink(info.path):
            removed.append(info)
    for tmp in Path(shm_dir).glob(".appliance-*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not (pid.isdigit() and procid.start_time(int(pid))):
            _unlink(tmp)
    return removed


def _unlink(path: Path) -> bool:
    """Remove one leftover; one that cannot be removed is reported, never fatal to startup."""
    try:
        path.unlink(missing_ok=True)
        return True
    except OSError as exc:
        log.warning("cannot remove stale ring %s: %s", path, exc.strerror)
        return False
