"""Injected faults, deterministic: PTIM_FAULTS in CLI runs, and seams in direct calls.

Each fault must leave every output frame fail-closed or correctly masked (checked twice:
the --boxes JSONL flags, and the decoded output against the synthetic ground truth), be
counted, and let the run go on with every frame present. Failures that cannot be
recovered (a full disk, a file that stops reading) end cleanly: one line, the right exit
code, no partial output, inputs untouched.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backend.errors import STATS, ErrorStats
from tests.reliability.conftest import (
    ROOT,
    decode_video,
    error_lines,
    leaked_frames,
    run_ptim,
    sha,
    small_tmpfs,
    snapshot,
    temp_leftovers,
)
from tests.timing import WAIT_S, Timed, budget

N = 30  # frames of the shared clip


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _run_with_faults(tmp_path: Path, clip: Path, cfg: Path, faults: str, *extra: str,
                     env: dict | None = None):
    src = tmp_path / "clip.mp4"
    shutil.copy(clip, src)
    before = sha(src)
    out, boxes = tmp_path / "out.mp4", tmp_path / "boxes.jsonl"
    r = run_ptim("process", str(src), "-o", str(out), "--config", str(cfg), "--boxes",
                 str(boxes), *extra, cwd=tmp_path, env={"PTIM_FAULTS": faults, **(env or {})})
    assert sha(src) == before
    assert temp_leftovers(tmp_path) == []
    return r, out, boxes


# -- detector faults ---------------------------------------------------------------------

HANG_LIMIT_S = 2  # the hang limit of the stall case (the default is 60 s)


@pytest.mark.parametrize(
    ("faults", "closed", "reason"),
    [
        ("detect.raise=3,5", {2, 4}, "injected detector failure"),
        # call 7 hangs 4x the hang limit: frame 6 and those queued behind the hang
        ("detect.stall=7:8", "from 6", f"detector hung: no answer within {HANG_LIMIT_S} s"),
        ("detect.nan=9", {8}, "non-finite"),
        ("detect.outside=11", set(), None),
        ("detect.raise=2;detect.nan=4;detect.outside=6", {1, 3}, "non-finite"),
    ],
    ids=["raise", "stall", "nan", "outside", "mixed"],
)
def test_detector_fault_fails_closed_counts_and_continues(
    tmp_path, clip, scene, solid_config, faults, closed, reason
):
    r, out, boxes = _run_with_faults(
        tmp_path, clip, solid_config, faults,
        env={"PTIM_DETECTOR__HANG_LIMIT_S": str(HANG_LIMIT_S)})
    assert r.returncode == 0, r.stderr
    assert error_lines(r.stderr) == [] and "Traceback" not in r.stderr
    lines = _jsonl(boxes)
    assert [x["index"] for x in lines] == list(range(N))  # every frame, in order
    got = {x["index"] for x in lines if x["fail_closed"]}
    if closed == "from 6":
        # one contiguous run from the hung call, and detection works again before the end
        assert got and min(got) == 6 and got == set(range(6, 6 + len(got))) and max(got) < N - 1
    else:
        assert got == closed
    assert f"{N} frames" in r.stdout and f"{len(got)} fail-closed" in r.stdout  # counted
    if reason:
        assert reason in r.stderr  # and said, once per distinct reason
    frames, ts = decode_video(out)
    assert len(frames) == N
    assert leaked_frames(frames, ts, scene) == []
    for i in got:  # fail-closed frames are obscured whole (solid black here)
        assert frames[i].max() < 40, i
    if "outside" in faults:
        k = int(faults.split("detect.outside=")[1]) - 1
        # the box outside the frame is dropped; the real faces stay masked by hold-over,
        # and the second pass adds the box interpolated across the gap
        states = [t["state"] for t in lines[k]["tracks"]]
        assert "held" in states and set(states) <= {"held", "interpolated"}


def test_slow_detection_in_a_file_is_waited_for_not_failed_closed(
    tmp_path, clip, scene, solid_config
):
    # calls 1 and 7 take 1.5 s: 6x solid_config's 250 ms live deadline, far under the
    # default 60 s hang limit
    r, out, boxes = _run_with_faults(tmp_path, clip, solid_config, "detect.stall=1:1.5,7:1.5")
    assert r.returncode == 0, r.stderr
    assert error_lines(r.stderr) == [] and "deadline" not in r.stderr
    lines = _jsonl(boxes)
    assert [x["index"] for x in lines] == list(range(N))
    assert [x["index"] for x in lines if x["fail_closed"]] == []
    assert f"{N} frames" in r.stdout and "0 fail-closed" in r.stdout
    assert lines[0]["tracks"] and lines[6]["tracks"]  # the slow frames have their faces
    frames, ts = decode_video(out)
    assert len(frames) == N and leaked_frames(frames, ts, scene) == []


# -- CUDA ------------------------------------------------------------------------------

def test_cuda_unavailable_falls_back_to_cpu_with_one_line(tmp_path, clip):
    r = run_ptim("process", str(clip), "-o", str(tmp_path / "o.mp4"), "--provider", "cuda",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    notes = [x for x in r.stderr.splitlines() if "using CPU" in x]
    if not notes:
        pytest.skip("CUDA works on this machine: nothing to fall back from")
    assert len(notes) == 1 and "CUDA" in notes[0]
    assert error_lines(r.stderr) == [] and "\x1b[" not in r.stderr
    assert len(decode_video(tmp_path / "o.mp4")[0]) == N


class _CudaDiesAt:
    """A real CPU session standing in for a CUDA one that is lost at run ``k`` and after."""

    def __init__(self, inner, k: int) -> None:
        self.inner, self.k, self.calls = inner, k, 0

    def _count(self) -> None:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail

        self.calls += 1
        if self.calls >= self.k:
            raise Fail("CUDA failure 999: unspecified launch failure ; GPU=0 ; hostname=x")

    def run(self, *args, **kwargs):
        self._count()
        return self.inner.run(*args, **kwargs)

    def run_with_iobinding(self, *args, **kwargs):  # the detector's steady-state path
        self._count()
        return self.inner.run_with_iobinding(*args, **kwargs)

    def io_binding(self):
        return self.inner.io_binding()

    def get_inputs(self):
        return self.inner.get_inputs()

    def get_outputs(self):
        return self.inner.get_outputs()


def test_cuda_failing_mid_run_falls_back_and_the_file_is_complete(tmp_path, clip, scene):
    from backend.batch import BatchRunner, Job, _AtomicText
    from backend.detect import CenterFaceDetector, SessionInfo
    from config.schema import Settings

    det = CenterFaceDetector(provider="cpu", long_side=320)
    det._info = SessionInfo(_CudaDiesAt(det._info.session, 10), "cuda")  # the seam
    s = Settings()
    settings = s.model_copy(update={"mask": s.mask.model_copy(update={"type": "solid"})})
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: seen.append(rec.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("ptim.detect")
    logger.addHandler(handler)
    before = STATS.counts().get("gpu.fallback", 0)
    boxes = _AtomicText(tmp_path / "b.jsonl")
    try:
        st = BatchRunner(settings, quiet=True, boxes=boxes, detector=det).run_job(
            Job(str(clip), tmp_path / "o.mp4", "video"))
        boxes.commit()
    finally:
        logger.removeHandler(handler)
    assert st.frames == N and st.fail_closed == 0  # the failing frame was retried on CPU
    assert det.provider == "cpu" and det.provider_note.startswith("CUDA failed during")
    assert STATS.counts().get("gpu.fallback", 0) == before + 1
    assert [m for m in seen if "CUDA failed" in m] == [det.provider_note]  # logged once
    frames, ts = decode_video(tmp_path / "o.mp4")
    assert len(frames) == N and leaked_frames(frames, ts, scene) == []


# -- camera outage (live path, no Qt) ---------------------------------------------------

def test_camera_fails_repeatedly_then_recovers_with_backoff_and_nothing_raw(scene):
    from backend.faults import Faults, FaultySource
    from backend.live import CaptureLoop, LatestSlot, ProcessLoop, frame_is_raw
    from backend.metrics import Metrics
    from backend.pipeline import DetectionRunner, Pipeline, build_detector
    from backend.sources import DemoSource
    from config.schema import Settings

    settings = Settings()
    stats = ErrorStats()
    demo = DemoSource(spec=replace(scene, n_frames=300), loop=True, realtime=True)
    src = FaultySource(demo, Faults(source_fail=(10, 6)))  # reads 10..15 fail
    metrics = Metrics(errors=stats)
    pipe = Pipeline(settings, metrics=metrics, errors=stats)
    runner = DetectionRunner(build_detector(settings), 1.0, errors=stats, pool=pipe.pool)
    cap_slot, out_slot = LatestSlot(), LatestSlot()
    status: list[tuple[float, str, bool]] = []
    capture = CaptureLoop(src, cap_slot, metrics, errors=stats, backoff=(0.05, 0.1, 0.2),
                          on_status=lambda text, err: status.append((time.monotonic(), text,
                                                                     err)))
    proc = ProcessLoop(pipe, cap_slot, out_slot)
    proc.keep_original = True
    proc.set_runner(runner)
    stop = threading.Event()
    shown, raw, indexes = [0], [], []

    def consume() -> None:  # like the GUI: take the newest result, release it when done
        while not stop.is_set():
            res = out_slot.wait_take(0.05)
            if res is None:
                continue
            i = res.frame.index
            indexes.append(i)
            if frame_is_raw(res.frame.image, res.original, list(demo.ground_truth(i))):
                raw.append(i)
            shown[0] += 1
            pipe.release(res)

    threads = [threading.Thread(target=capture.run, args=(stop,)),
               threading.Thread(target=proc.run, args=(stop,)),
               threading.Thread(target=consume)]
    src.__enter__()
    for t in threads:
        t.start()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not (capture.restarts >= 6 and shown[0] >= 25):
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(5)
    runner.close()
    assert not any(t.is_alive() for t in threads)
    assert capture.restarts == 6 and stats.counts().get("io.restart") == 6
    delays = [float(t.split("reconnecting in ")[1].split(" s")[0])
              for _, t, err in status if err]
    assert delays == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]  # backoff, capped
    assert any(not err and "reconnected" in t for _, t, err in status)
    assert raw == [] and shown[0] >= 25
    assert indexes == sorted(indexes)  # no stale frame re-emitted after the outage
    assert max(indexes) >= 15  # frames flow again after the outage


# -- memory pool -----------------------------------------------------------------------

def test_allocation_failure_frees_caches_retries_then_degrades(astronaut):
    from backend.detect import CenterFaceDetector
    from backend.faults import Faults, failing_allocator
    from backend.memory import MemoryPool
    from backend.pipeline import DetectionRunner, Pipeline
    from backend.types import Frame
    from config.schema import Settings

    img, box = astronaut
    for fails, want in ((1, {"memory.retry": 1}), (2, {"memory.retry": 1, "memory.degrade": 1}),
                        (3, {"memory.retry": 1, "memory.degrade": 1,
                             "processing.degrade": 1})):
        stats = ErrorStats()
        pool = MemoryPool(64, allocator=failing_allocator(Faults(pool_fail=fails)))
        det = CenterFaceDetector(provider="cpu", pool=pool, long_side=480)
        runner = DetectionRunner(det, 5.0, errors=stats, pool=pool)
        pipe = Pipeline(Settings(), pool=pool, errors=stats)
        res = pipe.process(Frame(0, 0.0, img), runner.detect(img))
        runner.close()
        assert stats.counts() == want, fails
        if fails == 1:
            assert det.long_side == 480 and res.detected and not res.fail_closed
        elif fails == 2:  # degraded: a smaller detector input, the face still found
            assert det.long_side == 352 and res.detected and len(res.tracks) == 1
        else:  # nothing left to try: this frame fails closed, never raw
            assert res.fail_closed
        from backend.live import frame_is_raw

        assert not frame_is_raw(res.frame.image, img, [box])
        assert pool.stats().failures == fails


def test_allocation_failure_in_a_cli_run_is_reported_and_the_run_completes(
    tmp_path, clip, scene, solid_config
):
    # one detector call at a time: the injected failures are the first two allocations,
    # and two frames detected at once would each take one (two retries, no degrade)
    r, out, boxes = _run_with_faults(tmp_path, clip, solid_config, "pool.fail=2", "--verbose",
                                     env={"PTIM_MAX_WORKERS": "1"})
    assert r.returncode == 0, r.stderr
    assert "caches freed (memory, retry)" in r.stderr
    # the schedule degrades its fine pass first (the whole-frame pass is never cut)
    assert "fine pass spread over" in r.stderr and "(memory, degrade)" in r.stderr
    assert "memory.retry=1" in r.stderr and "memory.degrade=1" in r.stderr  # the summary
    frames, ts = decode_video(out)
    assert len(frames) == N and leaked_frames(frames, ts, scene) == []


# -- writer and reader failing mid-file ---------------------------------------------------

def test_writer_fails_mid_file_exit_4_nothing_left(tmp_path, clip, solid_config):
    r, out, boxes = _run_with_faults(tmp_path, clip, solid_config, "write.fail=15")
    assert r.returncode == 4, r.stderr
    errs = error_lines(r.stderr)
    assert len(errs) == 1 and "out.mp4" in errs[0] and "No space left on device" in errs[0]
    assert not out.exists() and not boxes.exists()  # boxes of a failed run are not kept


def test_recorder_on_a_full_disk_removes_its_temporary_file(tmp_path):
    from backend.errors import OutputError
    from backend.sinks import VideoRecorder
    from backend.types import Frame

    mnt = tmp_path / "small"
    with small_tmpfs(mnt, "64k") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here; test_writer_fails_mid_file_exit_4_nothing_"
                        "left covers the path through PTIM_FAULTS")
        rec = VideoRecorder(mnt / "x.mp4", fps=30, size=(320, 240), crf=0, preset="ultrafast")
        rng = np.random.default_rng(1)
        with pytest.raises(OutputError, match="x.mp4.*No space left"):
            for i in range(300):  # lossless noise: ~64 kB is gone within a few frames
                rec.write(Frame(i, i / 30, rng.integers(0, 255, (240, 320, 3), np.uint8)))
            rec.close()
        assert list(mnt.iterdir()) == []  # neither the final name nor the temporary file


def test_input_read_failure_mid_file_exit_3_nothing_left(tmp_path, clip):
    src = tmp_path / "clip.mp4"
    shutil.copy(clip, src)
    before = snapshot(tmp_path)
    r = run_ptim("process", str(src), "-o", str(tmp_path / "o.mp4"), cwd=tmp_path,
                 env={"PTIM_FAULTS": "source.fail=10+5"})
    assert r.returncode == 3, r.stderr
    errs = error_lines(r.stderr)
    assert len(errs) == 1 and "clip.mp4" in errs[0] and "read failed after 9 frames" in errs[0]
    assert snapshot(tmp_path) == before and temp_leftovers(tmp_path) == []


# -- config hammered while the pipeline runs ----------------------------------------------

def test_config_rewritten_50_times_a_second_for_10_s_last_valid_wins(tmp_path, scene):
    from backend.live import CaptureLoop, LatestSlot, ProcessLoop, frame_is_raw
    from backend.metrics import Metrics
    from backend.pipeline import DetectionRunner, Pipeline, build_detector
    from backend.sources import DemoSource
    from config.manager import ConfigManager

    stats = ErrorStats()
    mgr = ConfigManager(tmp_path, env={}, stats=stats)
    path = mgr.config_file
    crashes: list[BaseException] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda a: crashes.append(a.exc_value)  # type: ignore[assignment]
    metrics = Metrics(errors=stats)
    pipe = Pipeline(mgr.settings, metrics=metrics, errors=stats)
    detector = build_detector(mgr.settings)
    runner = DetectionRunner(detector, 1.0, errors=stats, pool=pipe.pool)

    def on_change(settings, error) -> None:  # what the app does with a change
        if error is None:
            pipe.apply_settings(settings)
            detector.threshold = settings.detector.threshold

    mgr.subscribe(on_change)
    demo = DemoSource(spec=replace(scene, n_frames=300), loop=True, realtime=True)
    cap_slot, out_slot = LatestSlot(), LatestSlot()
    capture = CaptureLoop(demo, cap_slot, metrics, errors=stats)
    proc = ProcessLoop(pipe, cap_slot, out_slot)
    proc.keep_original = True
    proc.set_runner(runner)
    stop = threading.Event()
    shown_at: list[float] = []
    raw: list[int] = []

    def consume() -> None:
        while not stop.is_set():
            res = out_slot.wait_take(0.05)
            if res is None:
                continue
            shown_at.append(time.monotonic())
            if frame_is_raw(res.frame.image, res.original,
                            list(demo.ground_truth(res.frame.index))):
                raw.append(res.frame.index)
            pipe.release(res)

    rng = random.Random(7)

    def valid() -> str:
        return (f"mask:\n  type: {rng.choice(['solid', 'pixelate', 'blur'])}\n"
                f"  scale: {rng.uniform(0.6, 2.9):.2f}\n"
                f"  pixel_blocks: {rng.randint(2, 64)}\n"
                f"detector:\n  threshold: {rng.uniform(0.2, 0.6):.2f}\n"
                f"tracker:\n  hold_frames: {rng.randint(0, 30)}\n")

    bad = ["mask:\n  type: [solid\n", "mask:\n  scale: 99\n", "mask: 3\n", "\xff",
           "tracker:\n  nope: 1\n"]
    final = ("mask:\n  type: solid\n  scale: 2.25\n  pixel_blocks: 13\n"
             "detector:\n  threshold: 0.33\ntracker:\n  hold_frames: 11\n")
    threads = [threading.Thread(target=capture.run, args=(stop,)),
               threading.Thread(target=proc.run, args=(stop,)),
               threading.Thread(target=consume)]
    demo.open()
    for t in threads:
        t.start()
    mgr.start_watching()
    try:
        writes = 0
        t0 = time.monotonic()
        while writes < 500:  # 10 s at 50 a second (longer when the machine lags behind)
            n = writes
            text = bad[n % len(bad)] if n % 4 == 3 else valid()
            if n % 2:  # editors either rewrite in place or save beside and rename
                path.write_text(text)
            else:
                tmp = path.with_name(f".edit{n}")
                tmp.write_text(text)
                os.replace(tmp, path)
            writes += 1
            time.sleep(max(0.0, t0 + writes / 50 - time.monotonic()))
        # the storm's reloads each read one random version; this bad one stays until it is
        # rejected, so "bad versions are counted" never rests on chance
        path.write_text(bad[1])
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not stats.counts().get("config.fallback"):
            time.sleep(0.05)
        path.write_text(final)
        want = {"mask.type": "solid", "mask.scale": 2.25, "mask.pixel_blocks": 13,
                "detector.threshold": 0.33, "tracker.hold_frames": 11}

        def current(s) -> dict:
            return {"mask.type": s.mask.type, "mask.scale": s.mask.scale,
                    "mask.pixel_blocks": s.mask.pixel_blocks,
                    "detector.threshold": s.detector.threshold,
                    "tracker.hold_frames": s.tracker.hold_frames}

        t_end = time.monotonic()
        deadline = t_end + WAIT_S
        while time.monotonic() < deadline and not (
                current(mgr.settings) == want == current(pipe.settings)
                and detector.threshold == 0.33):
            time.sleep(0.05)
        n = len(shown_at)
        while time.monotonic() < deadline and len(shown_at) < n + 3:  # frames after it
            time.sleep(0.05)
    finally:
        mgr.stop_watching()
        stop.set()
        for t in threads:
            t.join(5)
        runner.close()
        threading.excepthook = old_hook
    assert current(mgr.settings) == want and mgr.last_error is None
    assert current(pipe.settings) == want and detector.threshold == 0.33  # applied too
    assert crashes == [] and not any(t.is_alive() for t in threads)
    assert raw == []
    # never stalled: a frame at least every live deadline (1 s) plus a scaled second
    times = [t0, *(t for t in shown_at if t0 <= t <= t_end), t_end]
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert gap < 1.0 + budget(1.0), gap
    assert stats.counts().get("config.fallback", 0) > 0  # bad versions were seen, rejected


# -- interrupts ---------------------------------------------------------------------------

def _caught_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    return 0


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, scene) -> Path:
    from backend.sources import write_clip

    return write_clip(replace(scene, n_frames=900), tmp_path_factory.mktemp("long") / "l.mp4")


@pytest.mark.parametrize(("sig", "when"), [
    (signal.SIGINT, "recording"), (signal.SIGINT, "startup"), (signal.SIGTERM, "startup"),
    # the moment the temporary file appears the run is starting threads and importing:
    # an exception raised there used to leave the file, hang on an import lock or crash
    (signal.SIGINT, "recording-starts"), (signal.SIGTERM, "recording-starts"),
])
def test_interrupt_stops_within_a_second_and_leaves_nothing(tmp_path, long_clip, sig, when,
                                                           int8_cached):
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to see when the handlers are in place")
    src = tmp_path / "in.mp4"
    shutil.copy(long_clip, src)
    before = snapshot(tmp_path)
    out = tmp_path / "o.mp4"
    env = {**os.environ, "PTIM_USERDATA_DIR": str(tmp_path.parent / "ud-int")}
    # SIGINT at its default in the child: a suite started in the background (SIGINT
    # ignored, as a shell does for `cmd &`) must still test Ctrl+C
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "process", str(src), "-o",
                          str(out), "--boxes", str(tmp_path / "b.jsonl")], cwd=tmp_path,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    if when == "startup":  # as soon as main.py has its SIGTERM handler: still importing
        while time.time() < deadline and not _caught_signals(p.pid) & (1 << (15 - 1)):
            time.sleep(0.002)
    else:
        while time.time() < deadline and not list(tmp_path.glob(".o.ptim-tmp*")):
            time.sleep(0.002)
        assert list(tmp_path.glob(".o.ptim-tmp*")), "recording never started"
        if when == "recording":
            time.sleep(0.3)
    with Timed() as took:
        p.send_signal(sig)
        _, err = p.communicate(timeout=WAIT_S)
    assert p.returncode == 130, err
    assert took.seconds < took.budget(1.0), (took.seconds, took.peak)
    assert error_lines(err) == ["ptim: error: interrupted; no partial output was left"], err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before and temp_leftovers(tmp_path) == []
