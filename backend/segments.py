"""Long files in segments: keyframe-aligned split, lead-in/out windows, exact join; no Ray.

A video is cut at keyframes into segments of about ``seconds``. Each segment is a unit of
work that runs the whole pipeline on its ``Window``: frames from a lead-in before the
segment to a lead-out after it are detected, tracked and go through the second pass, but
only the segment's own frames are encoded, into a part written from pts 0. The driver
verifies each part, records it in a manifest (the only file it writes while units run), and
joins the parts by remuxing their packets with exact integer offsets in the input's time
base; the audio is copied once from the input. Every effect is idempotent: parts are named
from the input's identity, the settings and the segment, and every file is written under a
temporary name and renamed, so a unit run twice, or a run resumed, never leaves half a file.

``process --segment-seconds S`` runs the units here, one after another (``LocalExecutor``);
``process --cluster`` runs the same units as Ray tasks (``backend.cluster``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from backend.batch import TerminalLine, eta_text
from backend.errors import InputError, OutputError, UsageError
from backend.sinks.recorder import _cause, _has_audio  # one wording of both, with recording

log = logging.getLogger("ptim.segments")

DEFAULT_SECONDS = 60.0
MANIFEST_VERSION = 1
# Settings sections that change the pixels of an output; others (ui, performance) may
# differ between a run and its resume.
_OUTPUT_SECTIONS = ("detector", "tracker", "mask", "output", "quality")
# A last segment shorter than this fraction of ``seconds`` joins the one before it.
_MIN_LAST = 0.5


# -- probing and planning ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """A video file's first video stream, from its packets (nothing decoded).

    ``pts``: every frame's presentation time in ``time_base`` units, sorted (presentation
    order); ``keyframes``: (index into ``pts``, the keyframe's dts or pts, whichever is
    smaller: where a seek must aim to land on it); ``start_pts``: the stream's start (the
    origin of ``Frame.timestamp``).
    """

    path: str
    time_base: Fraction
    start_pts: int
    pts: tuple[int, ...]
    keyframes: tuple[tuple[int, int], ...]
    fps: float

    def seconds(self, i: int) -> float:
        """Frame ``i``'s timestamp as ``VideoFileSource`` gives it (seconds from the start)."""
        return float((self.pts[i] - self.start_pts) * self.time_base)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read every video packet's timestamps and keyframe flag; InputError when unreadable."""
    import av

    p = Path(path)
    try:
        with av.open(os.fspath(p)) as c:
            if not c.streams.video:
                raise InputError(f"{p}: no video stream (audio-only or data file)")
            v = c.streams.video[0]
            tb = Fraction(v.time_base)
            rate = v.average_rate or v.guessed_rate or v.base_rate
            items: list[tuple[int, int, bool]] = []
            for pkt in c.demux(v):
                if pkt.pts is None or pkt.size == 0:
                    continue  # the demuxer's final empty packet
                dts = pkt.dts if pkt.dts is not None else pkt.pts
                items.append((int(pkt.pts), int(dts), bool(pkt.is_keyframe)))
            start = v.start_time
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{p}: permission denied") from None
    except (OSError, av.FFmpegError) as exc:
        raise InputError(f"{p}: cannot read ({_cause(exc)})") from None
    if not items:
        raise InputError(f"{p}: no video frames")
    items.sort()
    pts = tuple(x[0] for x in items)
    keys = tuple((i, min(x[0], x[1])) for i, x in enumerate(items) if x[2]) or ((0, pts[0]),)
    return VideoInfo(str(p), tb, int(start) if start is not None else pts[0], pts, keys,
                     float(rate) if rate else 30.0)


@dataclass(frozen=True, slots=True)
class Window:
    """What one segment's unit decodes, processes and writes, for ``BatchRunner.run_job``.

    Seek to ``seek_pts`` (stream time base; the frame found there is number ``seek_index``
    of the file); frames before ``lead_from`` seconds are skipped, frames from ``lead_from``
    to ``lead_until`` are processed, and those in [``write_from``, ``write_until``) are
    written: ``frames`` of them, the first being frame ``first`` of the file, whose pts is
    ``offset`` ticks after the file's first frame. Bounds lie halfway between two frames'
    timestamps (infinite at the file's ends), so float rounding never moves a frame across.
    ``lead_index`` is the index of the first processed frame (the detection schedule's phase).
    """

    index: int
    seek_pts: int
    seek_index: int
    lead_index: int
    lead_from: float
    write_from: float
    write_until: float
    lead_until: float
    first: int
    frames: int
    offset: int


def lead_frames(settings) -> int:
    """Frames of lead-in and of lead-out that give a segment a whole run's context.

    Hold-over carries a track this many frames past its last detection, the second pass
    reaches this many frames back from a track's birth, and a small face is first seen by
    a fine tile up to a period late: a window this much wider sees what a whole run sees.
    """
    t = settings.tracker
    return t.hold_frames + t.lookback_frames + 2 * settings.detector.fine_period + 8


def plan_windows(info: VideoInfo, seconds: float, lead: int) -> list[Window]:
    """Segments of about ``seconds``, each starting at a keyframe, with ``lead`` frames of
    lead-in and lead-out; one window covering the whole file when it is not longer than
    about 1.5 segments."""
    n = len(info.pts)
    cuts = [0]
    k = 1
    for i, _ in info.keyframes:
        if i <= cuts[-1]:
            continue
        if info.seconds(i) - info.seconds(0) >= k * seconds - 1e-9:
            if info.seconds(n - 1) - info.seconds(i) < _MIN_LAST * seconds:
                break  # a short tail stays with the segment before it
            cuts.append(i)
            k = int((info.seconds(i) - info.seconds(0)) // seconds) + 1
    cuts.append(n)
    ts = [info.seconds(i) for i in range(n)]

    def mid(i: int) -> float:  # the bound between frame i-1 and frame i
        return -math.inf if i <= 0 else math.inf if i >= n else (ts[i - 1] + ts[i]) / 2

    keyidx = [i for i, _ in info.keyframes]
    keydts = dict(info.keyframes)
    out = []
    for s, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        la, lb = max(0, a - lead), min(n, b + lead)
        seek = max((i for i in keyidx if i <= la), default=0)
        out.append(Window(s, keydts.get(seek, info.pts[seek]), seek, la, mid(la), mid(a), mid(b),
                          mid(lb), a, b - a, info.pts[a] - info.pts[0]))
    return out


# -- identity and names --------------------------------------------------------------------


def identity(path: str | os.PathLike[str]) -> dict:
    """What identifies an input's content cheaply: resolved path, size, modification time."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def output_settings(settings) -> dict:
    """The settings that change an output's pixels, as plain JSON data."""
    data = settings.model_dump(mode="json")
    return {k: data[k] for k in _OUTPUT_SECTIONS if k in data}


def _key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parts_dir(output: Path) -> Path:
    """The folder beside ``output`` that holds its parts while it is being made."""
    return output.with_name(f".{output.name}.ptim-parts")


def part_name(ident: dict, settings_key: str, window: Window) -> str:
    """A part's file name: its segment, frames and a key of input, settings and window."""
    key = _key(ident, settings_key, window.first, window.frames, window.lead_index,
               window.lead_until)
    return f"{window.index:05d}-{window.first}+{window.frames}-{key}.mp4"


def attempt_path(target: Path) -> Path:
    """A temporary name for one attempt at ``target``: attempts never share a file."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return target.with_name(f".{target.stem}.ptim-part-{token}{target.suffix}")


def remove_stale(target: Path) -> int:
    """Delete attempts at ``target`` left by a killed process; returns how many."""
    n = 0
    with contextlib.suppress(OSError):
        for pattern in (f".{target.stem}.ptim-part-*", f"..{target.stem}.ptim-part-*"):
            for p in target.parent.glob(pattern):
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
    return n


# -- one unit of work (runs in a worker) ---------------------------------------------------


@dataclass(slots=True)
class Unit:
    """One task: a whole job (``window`` None) or one segment, and the file it publishes."""

    source: str
    output: str  # the job's output
    kind: str
    target: str  # what this unit writes: the job's output, or a part
    window: Window | None = None
    frames: int | None = None  # expected frames written

    @property
    def label(self) -> str:
        """The input's name, and the segment's number for a part."""
        name = Path(self.source).name
        return name if self.window is None else f"{name} segment {self.window.index + 1}"


def run_unit(runner, unit: Unit) -> dict:
    """Run ``unit`` in this process with ``runner`` (a ``BatchRunner``); return small stats.

    The unit's file appears at ``unit.target`` only when complete (an attempt's own
    temporary name, then a rename), so two attempts at once never mix their frames.
    """
    from backend.batch import Job

    target = Path(unit.target)
    tmp = attempt_path(target)
    st = None
    try:
        st = runner.run_job(Job(unit.source, tmp, unit.kind), unit.window)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return {"frames": st.frames, "faces": st.faces, "fail_closed": st.fail_closed,
            "seconds": st.seconds, "pid": os.getpid()}


# -- the exact join ------------------------------------------------------------------------


def count_packets(path: Path) -> int:
    """Video packets in a part (one per frame); OutputError when it cannot be read."""
    import av

    try:
        with av.open(os.fspath(path)) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size and p.pts is not None)
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise OutputError(f"{path}: cannot read part ({_cause(exc)})") from None


def join(parts: list[tuple[Path, int]], info: VideoInfo, output: Path,
         audio_from: Path | None = None) -> int:
    """Write ``output`` from ``parts`` (path, offset in ``info.time_base`` ticks) by remux.

    Each part starts at pts 0; its packets are shifted by its exact integer offset, so
    the output has the input's timestamps (counted from its first frame, as a whole run
    writes them). Every part's encoder headers must match the first's. ``audio_from``'s
    first audio stream is copied once (re-encoded to AAC only when the container refuses
    it), cut at the video's end. Written under a temporary name and renamed; returns the
    number of video packets. OutputError names the output or the part and the cause.
    """
    import av

    from backend.replace import disclosure
    from backend.sinks.recorder import container_format

    fmt = container_format(output)
    tb = info.time_base
    first = _headers(parts[0][0])
    for p, _ in parts[1:]:
        if _headers(p) != first:
            raise OutputError(f"{output}: part {p.name} was encoded with other settings "
                              "(encoder headers differ); --restart makes it again")
    tmp = output.with_name(f".{output.stem}.ptim-tmp{output.suffix}")
    opts = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    tags = disclosure.metadata()
    if tags and opts:
        opts["movflags"] += "+use_metadata_tags"
    written = 0
    out = None
    try:
        try:
            out, vout, audio = _open_join(tmp, fmt, opts, tags, parts[0][0], tb, audio_from,
                                          transcode=False)
        except (av.FFmpegError, ValueError):
            if audio_from is None:
                raise
            with contextlib.suppress(OSError):
                tmp.unlink()
            out, vout, audio = _open_join(tmp, fmt, opts, tags, parts[0][0], tb, audio_from,
                                          transcode=True)
        if audio is not None:
            audio.start(info.seconds(0))
        last = 0
        for path, offset in parts:
            with av.open(os.fspath(path)) as c:
                vin = c.streams.video[0]
                ptb = Fraction(vin.time_base)
                for pkt in c.demux(vin):
                    if pkt.pts is None or pkt.size == 0:
                        continue
                    pkt.pts = _ticks(pkt.pts, ptb, tb, path) + offset
                    if pkt.dts is not None:
                        pkt.dts = _ticks(pkt.dts, ptb, tb, path) + offset
                    pkt.time_base = tb
                    pkt.stream = vout
                    last = max(last, pkt.pts)
                    out.mux(pkt)
                    written += 1
                    if audio is not None:
                        audio.pump(float((pkt.dts if pkt.dts is not None else pkt.pts) * tb))
        if audio is not None:
            audio.finish(float(last * tb) + 1.0 / info.fps)
            audio.close()
        out.close()
        out = None
        os.replace(tmp, output)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise OutputError(f"{output}: cannot join parts ({_cause(exc)})") from None
    finally:
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
    return written


def _open_join(tmp, fmt, opts, tags, part0: Path, tb: Fraction, audio_from, transcode):
    import av

    from backend.sinks.recorder import AudioFeed

    out = av.open(os.fspath(tmp), "w", format=fmt, options=opts)
    try:
        out.metadata.update(tags)
        with av.open(os.fspath(part0)) as c:
            vout = out.add_stream_from_template(c.streams.video[0])
        vout.time_base = tb
        audio = None
        if audio_from is not None and _has_audio(audio_from):
            audio = AudioFeed(audio_from, out, transcode)
        out.start_encoding()
    except BaseException:
        with contextlib.suppress(Exception):
            out.close()
        raise
    return out, vout, audio


def _headers(path: Path) -> tuple:
    import av

    try:
        with av.open(os.fspath(path)) as c:
            cc = c.streams.video[0].codec_context
            return (cc.name, cc.width, cc.height, cc.format.name if cc.format else None,
                    bytes(cc.extradata or b""))
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise OutputError(f"{path}: cannot read part ({_cause(exc)})") from None


def _ticks(value: int, src: Fraction, dst: Fraction, path: Path) -> int:
    exact = Fraction(value) * src / dst
    if exact.denominator != 1:  # a part written in another clock: never round a timestamp
        raise OutputError(f"{path}: timestamp {value} x {src} is not a whole tick of {dst}")
    return int(exact)


# -- the manifest (driver only) ------------------------------------------------------------


class Manifest:
    """The run's record, one JSON line each: a header, then a line per verified part and per
    published output. Only the driver writes it; every update is a whole new file renamed
    over the old one, so a crash leaves the previous version, never half a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict | None = None
        self.lines: list[dict] = []

    @classmethod
    def load(cls, path: Path) -> Manifest | None:
        """The manifest at ``path``, or None when there is none; UsageError when unreadable."""
        if not path.exists():
            return None
        m = cls(path)
        try:
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()
                    if x.strip()]
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: unreadable run manifest ({exc}); --restart starts "
                             "over") from None
        if not rows or rows[0].get("manifest") != MANIFEST_VERSION:
            raise UsageError(f"{path}: not a run manifest of this version; --restart starts "
                             "over")
        m.header, m.lines = rows[0], rows[1:]
        return m

    def add(self, row: dict) -> None:
        """Append ``row`` and save."""
        self.lines.append(row)
        self.save()

    def save(self) -> None:
        """Write the whole manifest under a temporary name and rename it into place."""
        tmp = self.path.with_name(f".{self.path.name}.ptim-tmp")
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in [self.header, *self.lines])
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutputError(f"{self.path}: cannot write run manifest "
                              f"({exc.strerror or exc})") from None

    def delete(self) -> None:
        """Remove the manifest (the run is complete)."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def manifest_path(outputs: Iterable[Path]) -> Path:
    """Where a run over these outputs keeps its manifest: their common folder, named by them."""
    outs = sorted(str(Path(o).resolve()) for o in outputs)
    common = Path(os.path.commonpath([str(Path(o).parent) for o in outs]))
    return common / f".ptim-run-{_key(outs)[:12]}.jsonl"


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


# -- the driver ----------------------------------------------------------------------------


@dataclass(slots=True)
class JobResult:
    """What one job (one input) came to: its stats once published, or why it failed."""

    source: str
    output: Path
    frames: int = 0
    faces: int = 0
    fail_closed: int = 0
    seconds: float = 0.0
    units: int = 0
    reused: int = 0
    error: str | None = None
    done: bool = False


@dataclass(slots=True)
class RunSummary:
    """A whole run: per-job results, the nodes that worked and the retries Ray made."""

    jobs: list[JobResult] = field(default_factory=list)
    nodes: set = field(default_factory=set)
    retries: int = 0
    seconds: float = 0.0


class _JobState:
    def __init__(self, job, result: JobResult) -> None:
        self.job = job
        self.result = result
        self.info: VideoInfo | None = None
        self.ident: dict | None = None
        self.windows: list[Window] = []
        self.parts: dict[int, tuple[Path, int]] = {}  # verified: index -> (path, offset)
        self.pending = 0
        self.failed = False


class Progress(TerminalLine):
    """One line on a terminal (stderr): files and segments done, frames per second of the
    whole run, ETA; silent otherwise."""

    def __init__(self, files: int, units: int, frames: int, enabled: bool) -> None:
        super().__init__(enabled)
        self.files, self.units, self.frames = files, units, frames

    def update(self, files: int, units: int, frames: int, force: bool = False) -> None:
        """Show the counts done so far (at most 5 times a second unless ``force``)."""
        elapsed = self.elapsed(force)
        if elapsed is None:
            return
        fps = frames / elapsed
        self.show(f"files {files}/{self.files}, segments {units}/{self.units}, "
                  f"{fps:5.1f} fps, ETA {eta_text(self.frames - frames, fps)}")


class SegmentedRun:
    """Drives jobs as units through an executor: plan, resume, verify, join, publish.

    ``seconds``: segment length (0 or None: one unit per file). ``resume``: reuse what the
    manifest records; ``restart``: forget it. With neither, a manifest left by an
    interrupted run is refused (UsageError), so no run mixes parts of another by accident.
    ``executor.run(units, on_result)`` calls ``on_result(unit, stats_or_exception)`` in
    this thread as units finish. ``on_job(result)`` is called once per job when it is
    published or has failed. Only this object writes the manifest and the joined outputs.
    """

    def __init__(self, settings, jobs, seconds: float | None, *, resume: bool = False,
                 restart: bool = False, quiet: bool = False,
                 on_job: Callable[[JobResult], None] | None = None) -> None:
        self.settings = settings
        self.jobs = list(jobs)
        self.seconds = seconds or 0.0
        self.resume, self.restart, self.quiet = resume, restart, quiet
        self.on_job = on_job or (lambda r: None)
        self.skey = _key(output_settings(settings))
        self.manifest = Manifest(manifest_path([j.output for j in self.jobs]))
        self._states: list[_JobState] = []
        self._units_total = self._units_done = self._frames_done = self._files_done = 0
        self._progress: Progress | None = None

    # -- planning
    def _open_manifest(self) -> None:
        old = Manifest.load(self.manifest.path)
        if old is not None and self.restart:
            old.delete()
            old = None
        if old is not None and not self.resume:
            raise UsageError(f"{old.path}: an interrupted run left its parts; --resume "
                             "finishes it, --restart starts over")
        header = {"manifest": MANIFEST_VERSION, "settings": output_settings(self.settings),
                  "segment_seconds": self.seconds}
        if old is not None:
            changed = _diff(old.header.get("settings", {}), header["settings"])
            if old.header.get("segment_seconds") != self.seconds:
                changed.append(f"--segment-seconds: {old.header.get('segment_seconds')} -> "
                               f"{self.seconds}")
            if changed:
                raise UsageError(f"{old.path}: settings changed since the interrupted run "
                                 f"({'; '.join(changed[:3])}); --restart starts over")
            self.manifest = old
        else:
            self.manifest.header = header

    def plan(self) -> list[Unit]:
        """Every unit still to run; jobs that cannot be probed fail here."""
        self._open_manifest()
        done = {r["output"]: r for r in self.manifest.lines if r.get("done")}
        recorded: dict[str, dict[int, dict]] = {}
        for r in self.manifest.lines:
            if "part" in r:
                recorded.setdefault(r["output"], {})[r["unit"]] = r
        units: list[Unit] = []
        lead = lead_frames(self.settings)
        for job in self.jobs:
            res = JobResult(job.source, job.output)
            state = _JobState(job, res)
            self._states.append(state)
            out = str(job.output)
            if self.restart:
                shutil.rmtree(parts_dir(job.output), ignore_errors=True)
            remove_stale(job.output)
            pdir = parts_dir(job.output)
            if pdir.is_dir():
                for p in pdir.iterdir():
                    if ".ptim-part-" in p.name:  # an attempt a killed worker left behind
                        with contextlib.suppress(OSError):
                            p.unlink()
            try:
                ident = identity(job.source) if job.source != "demo" else {"path": "demo"}
                if out in done and done[out].get("input") == ident and job.output.exists():
                    res.done, res.reused = True, 1
                    res.frames = done[out].get("frames", 0)
                    continue
                state.ident = ident
                windows: list[Window] = []
                if job.kind == "video" and job.source != "demo" and self.seconds > 0:
                    state.info = probe(job.source)
                    windows = plan_windows(state.info, self.seconds, lead)
            except InputError as exc:
                self._fail(state, str(exc))
                continue
            if len(windows) <= 1:
                state.pending = 1
                units.append(Unit(job.source, out, job.kind, out,
                                  frames=len(state.info.pts) if state.info else None))
                continue
            state.windows = windows
            pdir.mkdir(parents=True, exist_ok=True)
            old = recorded.get(out, {})
            for w in windows:
                name = part_name(ident, self.skey, w)
                path = pdir / name
                row = old.get(w.index)
                if row is not None and row.get("part") == name and path.is_file() \
                        and path.stat().st_size == row.get("bytes"):
                    state.parts[w.index] = (path, w.offset)
                    res.reused += 1
                    res.frames += row.get("frames", 0)
                    res.faces += row.get("faces", 0)
                    res.fail_closed += row.get("fail_closed", 0)
                    continue
                state.pending += 1
                units.append(Unit(job.source, out, job.kind, str(path), w, w.frames))
            res.units = len(windows)
        self.manifest.save()
        return units

    # -- results
    def _state(self, unit: Unit) -> _JobState:
        return next(s for s in self._states if str(s.job.output) == unit.output)

    def wanted(self, unit: Unit) -> bool:
        """False once the unit's job has failed: its other units need not run."""
        return not self._state(unit).failed

    def _fail(self, state: _JobState, why: str) -> None:
        if state.failed:
            return
        state.failed = True
        state.result.error = why
        self.on_job(state.result)

    def on_result(self, unit: Unit, outcome) -> None:
        """Record one finished unit (stats dict, or the exception it raised)."""
        state = self._state(unit)
        self._units_done += 1
        if isinstance(outcome, BaseException):
            if isinstance(outcome, InputError):
                self._fail(state, str(outcome))
                return
            raise outcome
        if state.failed:
            return
        res = state.result
        res.frames += outcome["frames"]
        res.faces += outcome["faces"]
        res.fail_closed += outcome["fail_closed"]
        res.seconds += outcome["seconds"]
        self._frames_done += outcome["frames"]
        state.pending -= 1
        target = Path(unit.target)
        if unit.window is not None:
            got = count_packets(target)
            if got != outcome["frames"]:
                raise OutputError(f"{target}: part holds {got} frames, its unit wrote "
                                  f"{outcome['frames']}")
            if got != unit.window.frames:
                log.warning("%s: %d of %d frames decoded", unit.label, got, unit.window.frames)
            state.parts[unit.window.index] = (target, unit.window.offset)
            self.manifest.add({"output": unit.output, "unit": unit.window.index,
                               "part": target.name, "bytes": target.stat().st_size,
                               "frames": got, "faces": outcome["faces"],
                               "fail_closed": outcome["fail_closed"]})
        elif not target.is_file():
            raise OutputError(f"{target}: its unit finished but the file is not there "
                              "(is the output on storage every node sees?)")
        if state.pending == 0:
            self._publish(state)
        if self._progress is not None:
            self._progress.update(self._files_done, self._units_done, self._frames_done)

    def _publish(self, state: _JobState) -> None:
        job, res = state.job, state.result
        if state.windows:
            keep = self.settings.output.keep_audio
            parts = [state.parts[w.index] for w in state.windows]
            join(parts, state.info, job.output, Path(job.source) if keep else None)
            shutil.rmtree(parts_dir(job.output), ignore_errors=True)
        res.done = True
        self._files_done += 1
        self.manifest.add({"output": str(job.output), "done": True, "input": state.ident,
                           "frames": res.frames})
        self.on_job(res)

    # -- running
    def run(self, executor) -> RunSummary:
        """Plan, run every unit through ``executor``, publish; returns the summary.

        The manifest is deleted when every job is published; it stays (with the parts)
        when a job failed or the run was interrupted, for ``--resume``.
        """
        t0 = time.perf_counter()
        units = self.plan()
        for s in self._states:
            if s.result.done:
                self._files_done += 1
                self.on_job(s.result)
            elif not s.failed and s.pending == 0 and s.windows:
                self._publish(s)  # every part was already made by the interrupted run
        self._units_total = len(units)
        total = sum(len(s.info.pts) if s.info else 1 for s in self._states)
        self._progress = Progress(len(self.jobs), len(units), total, not self.quiet)
        try:
            extra = executor.run([u for u in units if self.wanted(u)], self.on_result,
                                 self.wanted) or {}
        finally:
            self._progress.finish()
        summary = RunSummary([s.result for s in self._states], set(extra.get("nodes", ())),
                             int(extra.get("retries", 0)), time.perf_counter() - t0)
        if all(r.done for r in summary.jobs):
            self.manifest.delete()
        return summary


class LocalExecutor:
    """Runs units one after another in this process, with one ``BatchRunner``."""

    def __init__(self, runner) -> None:
        self.runner = runner

    def run(self, units: list[Unit], on_result, wanted) -> dict:
        """Run each unit still ``wanted`` and hand its outcome to ``on_result``."""
        for unit in units:
            if not wanted(unit):
                continue
            try:
                outcome = run_unit(self.runner, unit)
            except InputError as exc:
                outcome = exc
            on_result(unit, outcome)
        return {"nodes": {"local"}}
