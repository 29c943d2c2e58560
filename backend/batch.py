"""The runner of the headless ``process`` command: plan jobs, mask every face in their files.

The command line (arguments, logging, error lines, exit codes) is ``apps.process_cli``.
Frames flow reader thread -> detect/track/mask (caller thread) -> writer thread through
bounded queues: back-pressure, never a dropped frame, order kept. Every input frame
reaches the output. Outputs are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import InputError, OutputError, UsageError

log = logging.getLogger("ptim.batch")

VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}



@dataclass(slots=True)
class Job:
    """One input file (or the demo clip) and where its masked copy goes."""

    source: str  # a path, or "demo"
    output: Path
    kind: str  # "video" or "image"


@dataclass(slots=True)
class JobStats:
    """What one job did."""

    frames: int = 0
    faces: int = 0
    fail_closed: int = 0
    seconds: float = 0.0
    expected: int | None = None
    masked_instead: int = 0  # faces the replace mask could not replace, masked instead


@dataclass(slots=True)
class Plan:
    """Jobs to run plus inputs skipped while planning (path, reason)."""

    jobs: list[Job] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _masked_name(path: Path) -> Path:
    return path.with_name(f"{path.stem}_masked{path.suffix}")


def _exists(path: Path) -> bool:
    """Path.exists, but a folder on the way that may not be entered is an InputError."""
    try:
        return path.exists()
    except PermissionError:
        # Path.exists() raises for EACCES: the user gets one line, not a traceback
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def plan_jobs(inputs: list[str], output: str | None) -> Plan:
    """Turn the command's inputs into jobs; raises InputError/OutputError/UsageError."""
    plan = Plan()
    many = len(inputs) > 1
    out = Path(output) if output else None
    if many and out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"{out}: several inputs need -o to be a folder")
    # -o naming an existing folder (or ending in a slash) for one file input means "into
    # that folder", as with cp; before, it became a sibling file "<folder>.mp4"
    into = out is not None and not many and (
        out.is_dir() or str(output).endswith(("/", os.sep)))
    for raw in inputs:
        if raw == "demo" and not _exists(Path(raw)):
            target = (out / "demo_masked.mp4" if many or into else out) if out else \
                Path("demo_masked.mp4")
            plan.jobs.append(Job("demo", target, "video"))
            continue
        path = Path(raw)
        if not _exists(path):
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            folder_out = (out / f"{path.name}_masked" if many else out) if out else \
                path.with_name(f"{path.name}_masked")
            try:
                entries = sorted(p for p in path.iterdir()
                                 if p.is_file() and not p.name.startswith("."))
            except PermissionError:
                raise InputError(f"{path}: cannot list folder (permission denied)") from None
            except OSError as exc:
                raise InputError(f"{path}: cannot list folder ({exc.strerror or exc})") from None
            if not entries:
                raise InputError(f"{path}: folder holds no files")
            for entry in entries:
                kind = _kind(entry)
                if kind is None:
                    plan.skipped.append((str(entry), "not a video or image file"))
                    continue
                plan.jobs.append(Job(str(entry), folder_out / entry.name, kind))
            continue
        kind = _kind(path) or "video"  # unknown extensions are probed as video
        target = (out / _masked_name(path).name if many or into else out) if out else \
            _masked_name(path)
        if kind == "video" and target.suffix.lower() not in VIDEO_EXTS:
            target = target.with_suffix(".mp4")
        plan.jobs.append(Job(str(path), target, kind))
    for job in plan.jobs:
        if job.source != "demo" and Path(job.source).resolve() == job.output.resolve():
            raise OutputError(f"{job.output}: output would overwrite the input")
    return plan


def check_writable(target: Path) -> None:
    """Raise OutputError unless a file can be created at ``target`` (parents made as needed)."""
    from backend.sinks import output_writable

    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or exc
        raise OutputError(f"{target}: cannot create folder {parent}: {why}") from None
    output_writable(target)


class TerminalLine:
    """One line redrawn in place on a terminal (stderr), at most 5 times a second; silent
    when stderr is not a terminal or ``enabled`` is False."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._t0 = time.perf_counter()
        self._last = 0.0

    def elapsed(self, force: bool = False) -> float | None:
        """Seconds since the start when a redraw is due now (always with ``force``), else
        None."""
        if not self.enabled:
            return None
        now = time.perf_counter()
        if not force and now - self._last < 0.2:
            return None
        self._last = now
        return max(now - self._t0, 1e-9)

    def show(self, line: str) -> None:
        """Draw ``line`` over the previous one."""
        sys.stderr.write("\r" + line[:150].ljust(100))
        sys.stderr.flush()

    def finish(self) -> None:
        """Clear the line."""
        if self.enabled:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def eta_text(left: float, fps: float) -> str:
    """``M:SS`` to go for ``left`` frames at ``fps``."""
    eta = left / fps if fps > 0 else 0.0
    return f"{int(eta // 60)}:{int(eta % 60):02d}"


class _Progress(TerminalLine):
    """A one-line progress bar of one input's frames."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        super().__init__(enabled)
        self.label, self.total = label, total

    def update(self, done: int, force: bool = False) -> None:
        elapsed = self.elapsed(force)
        if elapsed is None:
            return
        fps = done / elapsed
        if self.total:
            bar = "#" * int(min(done / self.total, 1.0) * 24)
            self.show(f"{self.label} [{bar:<24}] {done}/{self.total} {fps:5.1f} fps "
                      f"ETA {eta_text(self.total - done, fps)}")
        else:
            self.show(f"{self.label} {done} frames {fps:5.1f} fps")


class _AtomicText:
    """A text file written under a temporary name and renamed on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.ptim-tmp")
        self._fh = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in commit/abort

    def write(self, text: str) -> None:
        self._fh.write(text)

    def commit(self) -> None:
        self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


_STOP = object()
# frames submitted for detection ahead of the one being tracked: a fixed number, so the
# refinement crops each frame gets never depend on timing
_IN_FLIGHT = 2


def _join(thread: threading.Thread, check: Callable[[], None] | None = None) -> None:
    """Wait for ``thread`` to end, running ``check`` every 0.1 s (it may raise to stop
    waiting: an interrupt is noticed while waiting)."""
    while thread.is_alive():
        thread.join(timeout=0.1)
        if check is not None:
            check()


class _Finish:
    """The end of a job: ``work`` (writing the frames still queued, closing the output), if
    any, runs on a thread. ``wait`` returns the job's stats or raises its error; ``cancel``
    abandons it (its output is removed, never left half)."""

    def __init__(self, job: Job, stats: JobStats, work: Callable[[], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.job, self.stats = job, stats
        self._stop = stop
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if work is not None:
            self._thread = threading.Thread(target=self._run, args=(work,), name="ptim-finish",
                                            daemon=True)
            self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
            self._error = exc

    def done(self) -> bool:
        """True once the job has ended, written or failed."""
        return self._thread is None or not self._thread.is_alive()

    def wait(self, check: Callable[[], None] | None = None) -> JobStats:
        """The job's stats once its output is complete; raises the error that ended it.
        ``check`` runs every 0.1 s while waiting (it may raise to stop waiting)."""
        if self._thread is not None:
            _join(self._thread, check)
        if self._error is not None:
            raise self._error
        return self.stats

    def cancel(self) -> None:
        """Abandon the job and wait until its temporary output is gone."""
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join()


class BatchRunner:
    """Runs jobs through one detector (loaded once) and a pipeline per job."""

    def __init__(self, settings, quiet: bool = False, boxes: _AtomicText | None = None,
                 pool=None, detector=None) -> None:
        from backend.metrics import Metrics
        from backend.pipeline import make_pool

        self.settings = settings
        self.quiet = quiet
        self.boxes = boxes
        self.pool = pool or make_pool(settings.performance.gpu_memory_pool_size_mb)
        self.metrics = Metrics(pool=self.pool)
        self._detector = detector
        self._loader: threading.Thread | None = None
        self._load_error: BaseException | None = None
        self._poll: Callable[[], None] | None = None  # run_jobs' check between frames
        self._interrupted = threading.Event()
        self._plans_logged: set[str] = set()

    def preload(self) -> None:
        """Start loading the detector on a thread, so opening the input overlaps it."""
        if self._detector is not None or self._loader is not None:
            return

        def load() -> None:
            from backend.pipeline import build_detector

            try:
                self._detector = build_detector(self.settings, self.pool)
            except BaseException as exc:  # noqa: BLE001 - raised where the detector is used
                self._load_error = exc

        self._loader = threading.Thread(target=load, name="ptim-load-model", daemon=True)
        self._loader.start()

    def interrupt(self) -> None:
        """Stop the run (safe from a signal handler): the thread in ``run_job``/``run_jobs``
        raises KeyboardInterrupt at its next check, between frames or within 0.1 s of any
        wait, and cleans up from there. An exception raised at an arbitrary point instead
        could land in an import, a thread start or a recorder being made, and leave a
        temporary file or a held lock behind. Final: the runner stays interrupted."""
        self._interrupted.set()

    @property
    def interrupted(self) -> bool:
        """True once ``interrupt`` was called."""
        return self._interrupted.is_set()

    def _check(self) -> None:
        if self._interrupted.is_set():
            raise KeyboardInterrupt

    def close(self) -> None:
        """Wait for a model load still running: exiting under it aborts the process."""
        if self._loader is not None:
            self._loader.join()

    @property
    def detector(self):
        """The detector, loaded on first use (or by ``preload``)."""
        if self._detector is None:
            self.preload()
            assert self._loader is not None
            _join(self._loader, self._check)
            if self._load_error is not None:
                raise self._load_error
        return self._detector

    def run_job(self, job: Job, window=None) -> JobStats:
        """Process one job completely; its output exists only when this returns.

        ``window`` (a ``backend.segments.Window``, video files only): seek to its keyframe and
        write only the frames in [write_from, write_until) seconds; the frames of its lead-in
        and lead-out are detected, tracked and go through the second pass, but are not written.
        """
        return self._start(job, window, background=False).wait()

    def run_jobs(self, jobs: list[Job],
                 report: Callable[[Job, JobStats | None, InputError | None], None]) -> None:
        """Process ``jobs`` in order, each one's writing overlapping the next one's detection.

        ``report(job, stats, None)`` follows each job whose output is complete, ``report(job,
        None, error)`` each one that failed on its input (an InputError: the run goes on);
        in job order, on the calling thread, as soon as the job is done (checked between the
        next job's frames). Any other error, or one raised by ``report``, stops the run: the
        job being written is abandoned (no output left) and the error propagates.
        """
        pending: deque[_Finish] = deque()  # jobs still writing or not yet reported, in order

        def settle(keep: int = 0, wait: bool = True) -> None:
            """Report the oldest jobs until ``keep`` are left (only finished ones unless
            ``wait``)."""
            while len(pending) > keep and (wait or pending[0].done()):
                done = pending[0]  # left in place until ended, so an interrupt abandons it
                stats: JobStats | None = None
                failed: InputError | None = None
                try:
                    stats = done.wait(self._check)
                except InputError as exc:
                    failed = exc
                pending.popleft()
                report(done.job, stats, failed)

        self._poll = lambda: settle(wait=False)
        try:
            for job in jobs:
                try:
                    pending.append(self._start(job, None, background=True))
                except InputError as exc:
                    settle()
                    report(job, None, exc)
                    continue
                settle(keep=1)  # the newest writes on while the next job is detected
            settle()
        finally:
            self._poll = None
            for left in pending:  # the run failed: what is still being written is abandoned
                left.cancel()
                try:  # one that was complete before it could be abandoned is reported
                    stats = left.wait()
                except BaseException:  # noqa: BLE001 - abandoned: no output, nothing to say
                    continue
                try:
                    report(left.job, stats, None)
                except Exception:  # noqa: BLE001 - the error that stopped the run wins
                    log.debug("report after a failed run", exc_info=True)

    def _start(self, job: Job, window, background: bool) -> _Finish:
        from backend.faults import FaultySource, faults_from_env
        from backend.sources import open_source

        self._check()
        src = open_source(job.source) if job.source != "demo" else _demo_source()
        faults = faults_from_env()
        if faults is not None and faults.source_fail:
            src = FaultySource(src, faults)
        with src:
            if job.kind == "image":
                return _Finish(job, self._run_image(job, src))
            if window is not None:
                src.seek(window.seek_pts, window.seek_index)
            return self._run_video(job, src, window, background)

    def _pipeline(self):
        from backend.pipeline import DetectionRunner, Pipeline, schedule_for

        pipe = Pipeline(self.settings, pool=self.pool, metrics=self.metrics)
        det = self.settings.detector
        # files wait for a slow detection: only a hung one fails its frame closed; the two
        # frames in flight are detected at once when the detector has the lanes for it
        lanes = getattr(self.detector, "lanes", 1)
        runner = DetectionRunner(self.detector, det.deadline_ms / 1000.0, pool=self.pool,
                                 hang_limit_s=det.hang_limit_s,
                                 schedule=schedule_for(self.settings),
                                 workers=min(_IN_FLIGHT, lanes))
        return pipe, runner

    def _log_plan(self, job: Job, runner, width: int, height: int, still: bool = False) -> None:
        from backend.pipeline import describe_detection

        text = describe_detection(self.settings, width, height, still)
        # once per plan at the default level: a folder of same-size clips gets one line
        level = logging.DEBUG if text in self._plans_logged else logging.INFO
        self._plans_logged.add(text)
        log.log(level, "%s: detection: %s", Path(job.source).name, text)

    def _run_image(self, job: Job, src) -> JobStats:
        from backend.sinks import ImageSink

        check_writable(job.output)
        pipe, runner = self._pipeline()
        stats = JobStats(expected=1)
        t0 = time.perf_counter()
        try:
            frame = _read(src, job, 0)
            if frame is None:
                raise InputError(f"{job.source}: no image could be read")
            h, w = frame.image.shape[:2]
            self._log_plan(job, runner, w, h, still=True)
            pipe.tracker.edge_start_share = 1.0  # see Tracker: streams only
            # a still image is examined at the policy's scale in full: every fine tile at once
            res = pipe.process(frame, runner.detect(frame.image, still=True))
            sink = ImageSink(job.output)
            try:
                sink.write(res.frame)
            finally:
                sink.close()
            self._account(stats, res, job)
            pipe.release(res)
        finally:
            runner.close()
        stats.seconds = time.perf_counter() - t0
        return stats

    def _run_video(self, job: Job, src, window=None, background: bool = False) -> _Finish:
        """Detect, track and mask every frame of ``src`` on this thread; the writer thread
        encodes them. Returns when the last frame is queued for writing: the rest (the
        queued frames, closing the output) runs on in the background when ``background``,
        else before this returns."""
        import numpy as np

        from backend.faults import FaultyWriter, faults_from_env
        from backend.sinks import VideoRecorder, batch_encoder_threads
        from backend.track import SecondPass, chain

        check_writable(job.output)
        # a segment's part is video only: the join copies the audio once, uncut
        keep = self.settings.output.keep_audio and job.source != "demo" and window is None
        audio = Path(job.source) if keep else None
        rec = VideoRecorder(
            job.output, fps=src.fps, size=src.size, time_base=getattr(src, "time_base", None),
            crf=self.settings.output.crf, preset=self.settings.output.preset, audio_from=audio,
            threads=batch_encoder_threads(),
        )
        stop = threading.Event()  # this job's: a failed job never stops the next one
        threads: list[threading.Thread] = []
        runner = progress = None
        # everything from here on is inside the try: the temporary file exists now
        try:
            faults = faults_from_env()
            if faults is not None and faults.write_fail is not None:
                rec = FaultyWriter(rec, faults)
            from backend.replace import COUNTS

            stats = JobStats(expected=src.frame_count if window is None else window.frames)
            fell_back0 = COUNTS.snapshot()[1]
            progress = _Progress(Path(job.source).name, stats.expected, not self.quiet)
            frames_q: queue.Queue = queue.Queue(maxsize=8)
            out_q: queue.Queue = queue.Queue(maxsize=8)
            errors: list[BaseException] = []

            def put(q: queue.Queue, item) -> bool:
                while not stop.is_set():
                    if self._interrupted.is_set():  # the job's thread raises it at its check
                        stop.set()
                        break
                    try:
                        q.put(item, timeout=0.1)
                        return True
                    except queue.Full:
                        continue
                return False

            at_end = threading.Event()  # the reader reached the file's end (not a window's)

            def reader() -> None:
                read = 0
                try:
                    while not stop.is_set():
                        frame = _read(src, job, read)
                        if frame is None:
                            at_end.set()
                            break
                        read += 1
                        if window is not None:
                            if frame.timestamp < window.lead_from:  # decoded from the keyframe
                                continue
                            if frame.timestamp >= window.lead_until:
                                break
                        self.metrics.frame_in()
                        if not put(frames_q, frame):
                            return
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    errors.append(exc)
                    stop.set()
                put(frames_q, _STOP)

            def writer() -> None:
                from backend.metrics import StageTimer

                try:
                    while True:
                        try:
                            res = out_q.get(timeout=0.1)
                        except queue.Empty:
                            if stop.is_set():
                                return
                            continue
                        if res is _STOP or stop.is_set():
                            return
                        with StageTimer(self.metrics, "output"):
                            rec.write(res.frame)
                        self.pool.release(res.frame.image)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    errors.append(exc)
                    stop.set()

            threads = [threading.Thread(target=reader, name="ptim-read", daemon=True),
                       threading.Thread(target=writer, name="ptim-write", daemon=True)]
            for t in threads:
                t.start()  # decoding starts while the model may still be loading
            t0 = time.perf_counter()
            # one detection queued behind the running one keeps the detector busy while this
            # thread tracks, masks and hands frames on
            in_flight: deque = deque()
            ended = False
            pipe, runner = self._pipeline()
            st = self.settings.tracker
            inner = getattr(self.detector, "inner", self.detector)
            second = SecondPass(pipe.masker, depth=st.lookback_frames,
                                detect_crops=inner.detect_regions if runner.schedule else None,
                                growth_per_frame=st.growth_per_frame,
                                miss_limit=st.hold_frames)
            if window is not None and runner.schedule is not None:
                runner.schedule.reset(window.lead_index)  # the tiles of a whole-file run
            logged = False
            last_size: tuple[int, int] | None = None
            while True:
                self._check()
                while not ended and len(in_flight) < _IN_FLIGHT:
                    try:
                        frame = frames_q.get(timeout=0.1)
                    except queue.Empty:
                        self._check()
                        if stop.is_set():
                            ended = True
                            break
                        # wait for the reader: with always two frames in flight, refinement
                        # crops never depend on timing, so every run writes the same pixels
                        continue
                    if frame is _STOP:
                        ended = True
                        break
                    if not logged and (window is None or window.index == 0):
                        self._log_plan(job, runner, *frame.size)
                    logged = True
                    # refinement crops follow the tracks as they stand now, a frame or two
                    # before this one (the frames ahead of it are still being detected),
                    # carried along the picture's motion over those frames
                    tracks = pipe.tracker.tracks
                    # the faces where they were in the frame before this one (the tracker
                    # stands at the frame before the ones in flight)
                    before = chain([m for _, _, m in in_flight])
                    faces = np.array([t.box for t in tracks], np.float64).reshape(-1, 4)
                    if before is not None:
                        faces = before.boxes(faces)
                    motion = pipe.measure_motion(frame.image, faces)
                    since = None if before is None or motion is None else before.then(motion)
                    in_flight.append((frame, runner.submit(
                        frame.image, tracks, lead=len(in_flight) + 1,
                        motion=since, step=motion), motion))
                if not in_flight:
                    if ended or stop.is_set():
                        break
                    continue
                frame, fut, motion = in_flight.popleft()
                h, w = frame.image.shape[:2]
                last_size = (w, h)
                started = time.perf_counter()  # the call ahead of it has finished: it runs now
                outcome = runner.result(fut, w, h, started, check=self._check)
                self.metrics.add_stage("detect", outcome.seconds)
                if window is not None:
                    # in the lead-in a weak detection may start a track: a face tracked
                    # before the window is masked from its first frame (more, never less)
                    pipe.tracker.new_track_threshold = (
                        st.continue_threshold if frame.timestamp < window.write_from
                        else self.settings.detector.threshold)
                res = pipe.process(frame, outcome, motion=motion)
                done = second.push(res, outcome.detections, frame.image, motion)
                if not self._emit(done, stats, job, put, out_q, window):
                    ended = True
                    break
                progress.update(stats.frames)
                if self._poll is not None:
                    self._poll()  # report the job before this one as soon as it is written
            if not stop.is_set() and at_end.is_set() and runner.schedule is not None \
                    and last_size is not None:
                # the last frame has no later one to find a face entering it: its edges
                # are seen at the cover scale, as the first frame's are, and so is whatever
                # it shows that the fine pass never examined (a short file, a pan's end)
                second.finish(runner.schedule.end_regions(*last_size),
                              pipe.tracker.start_threshold)
            if not stop.is_set() and self._emit(second.flush(), stats, job, put, out_q, window):
                put(out_q, _STOP)
            stats.masked_instead = COUNTS.snapshot()[1] - fell_back0
            # the source closes when this returns: its reader must be done with it
            _join(threads[0], self._check)
        except BaseException:
            stop.set()
            for t in threads:  # each sees ``stop`` within 0.1 s; the source closes after
                if t.ident is not None:
                    t.join()
            rec.abort()
            raise
        finally:
            if progress is not None:
                progress.finish()
            if runner is not None:
                runner.close()

        def finish() -> None:
            try:
                _join(threads[1], self._check)
                if errors:
                    raise errors[0]
                if stop.is_set():
                    raise KeyboardInterrupt
                if stats.frames == 0:
                    raise InputError(f"{job.source}: no frames could be decoded")
                rec.close()
            except BaseException:
                stop.set()
                threads[1].join()
                rec.abort()
                raise
            finally:
                stats.seconds = time.perf_counter() - t0

        if not background:
            finish()
            return _Finish(job, stats)
        return _Finish(job, stats, finish, stop)

    def _emit(self, done, stats: JobStats, job: Job, put, out_q: queue.Queue,
              window=None) -> bool:
        """Account for frames leaving the second pass's window and queue them for writing.

        Frames outside ``window``'s written range (its lead-in and lead-out) are dropped.
        """
        for res, added in done:
            if window is not None and not window.write_from <= res.frame.timestamp \
                    < window.write_until:
                self.pool.release(res.frame.image)
                continue
            self._account(stats, res, job, added)
            if not put(out_q, res):
                return False
        return True

    def _account(self, stats: JobStats, res, job: Job, added=()) -> None:
        from backend.types import ORIGIN_REFINED

        faces = sum(1 for t in res.tracks if not t.held_over)
        stats.frames += 1
        stats.faces += faces
        stats.fail_closed += int(res.fail_closed)
        self.metrics.frame_out(None, faces, res.fail_closed)
        if self.boxes is not None:
            rec = {
                "input": job.source,
                "index": res.frame.index,
                "timestamp": round(float(res.frame.timestamp), 6),
                "fail_closed": res.fail_closed,
                "tracks": [
                    {
                        "id": t.track_id,
                        "box": [round(float(v), 1) for v in t.box],
                        "score": round(float(t.score), 4),
                        "state": "held" if t.held_over else
                        "refined" if t.origin == ORIGIN_REFINED else "detected",
                        "exempt": t.exempt,
                    }
                    for t in res.tracks
                ] + [
                    {
                        "id": -a.track_id,
                        "box": [round(float(v), 1) for v in a.box],
                        "score": 0.0,
                        "state": a.state,
                        "exempt": False,
                    }
                    for a in added
                ],
            }
            self.boxes.write(json.dumps(rec) + "\n")


def _read(src, job: Job, done: int):
    """The source's next frame; a read failure becomes an InputError naming the input.

    A file source that fails mid-stream (an I/O error on the disk, a network share gone)
    cannot be resumed where it stopped, so the job fails cleanly: no partial output.
    """
    try:
        return src.read()
    except OSError as exc:  # SourceReadError is an OSError too
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{job.source}: read failed after {done} frames ({cause})") from None


def _demo_source():
    from backend.sources import DemoSource

    return DemoSource(preset="demo", loop=False)
