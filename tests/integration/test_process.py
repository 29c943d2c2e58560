"""``main.py process`` end to end on generated clips: frames, timing, audio, masks, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from backend.live import frame_is_raw
from backend.sources import ground_truth, render
from tests.integration.conftest import ROOT, run_main
from tests.timing import WAIT_S, Timed


def _decode(path: Path) -> tuple[list[np.ndarray], list[float], float, bool]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        has_audio = bool(c.streams.audio)
        frames, ts = [], []
        for f in c.decode(vs):
            frames.append(f.to_ndarray(format="bgr24"))
            ts.append(float(f.pts * f.time_base))
        return frames, ts, float(vs.average_rate), has_audio


def _errors(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.startswith("ptim: error:")]


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_masks_every_frame_keeps_timing_and_audio(tmp_path, clip, small_scene):
    out = tmp_path / "out.mp4"
    boxes = tmp_path / "boxes.jsonl"
    before = _sha(clip)
    r = run_main("process", str(clip), "-o", str(out), "--mask", "solid", "--keep-audio",
                 "--boxes", str(boxes), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _sha(clip) == before  # input untouched
    assert "45 frames" in r.stdout and "fail-closed" in r.stdout
    frames, ts, fps, has_audio = _decode(out)
    assert len(frames) == small_scene.n_frames
    assert frames[0].shape == (270, 480, 3)
    assert fps == pytest.approx(30.0)
    assert ts == pytest.approx([i / 30 for i in range(45)], abs=1e-3)
    assert has_audio
    leaks = [i for i, f in enumerate(frames)
             if frame_is_raw(f, render(small_scene, i)[0], list(ground_truth(small_scene, i)))]
    assert leaks == []
    lines = [json.loads(x) for x in boxes.read_text().splitlines()]
    assert [x["index"] for x in lines] == list(range(45))
    states = {"detected", "refined", "held", "backtracked", "interpolated"}
    assert all(t["state"] in states for x in lines for t in x["tracks"])
    assert sum(len(x["tracks"]) for x in lines) >= 45  # the big face in every frame


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_precision_flag_picks_the_model_and_both_mask_every_face(tmp_path, clip, small_scene,
                                                                  precision):
    out = tmp_path / "out.mp4"
    r = run_main("process", str(clip), "-o", str(out), "--mask", "solid", "--provider", "cpu",
                 "--precision", precision, "--verbose", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"detector: cpu {precision}, input long side 448 px" in r.stderr
    frames, *_ = _decode(out)
    assert len(frames) == small_scene.n_frames
    assert not [i for i, f in enumerate(frames)
                if frame_is_raw(f, render(small_scene, i)[0], list(ground_truth(small_scene, i)))]


def test_default_output_name_and_no_audio_unless_asked(tmp_path, clip):
    src = tmp_path / "talk.mp4"
    shutil.copy(clip, src)
    r = run_main("process", str(src), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    out = tmp_path / "talk_masked.mp4"
    _, _, _, has_audio = _decode(out)
    assert not has_audio
    assert not list(tmp_path.glob("*ptim-tmp*"))


def test_folder_in_folder_out_with_a_bad_file(tmp_path, clip, astronaut):
    import cv2

    folder = tmp_path / "shots"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    img, box = astronaut
    cv2.imwrite(str(folder / "b.png"), img)
    (folder / "c.mp4").write_text("not a video")
    r = run_main("process", str(folder), "--mask", "solid", cwd=tmp_path)
    assert r.returncode == 5, r.stderr
    assert "c.mp4" in r.stderr and "Traceback" not in r.stderr
    out = tmp_path / "shots_masked"
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.png"]
    masked = cv2.imread(str(out / "b.png"))
    assert masked.shape == img.shape
    assert not frame_is_raw(masked, img, [box])
    x0, y0, x1, y1 = box
    assert (masked[(y0 + y1) // 2, (x0 + x1) // 2] == 0).all()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda d: d / "missing.mp4", 3, "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), 3, "empty.mp4"),
        (lambda d: _write(d / "text.mp4", b"hello, not a video"), 3, "text.mp4"),
    ],
)
def test_bad_inputs_exit_3_with_one_line(tmp_path, make, code, words):
    path = make(tmp_path)
    r = run_main("process", str(path), cwd=tmp_path)
    assert r.returncode == code
    assert words in r.stderr
    assert "Traceback" not in r.stderr
    assert len(_errors(r.stderr)) == 1
    assert not list(tmp_path.glob("*_masked*"))


@pytest.mark.parametrize("where", ["under_a_file", "read_only_dir"])
def test_output_not_writable_exit_4(tmp_path, clip, where):
    if where == "under_a_file":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file, not a folder")
        target = blocker / "x.mp4"
    else:
        if os.geteuid() == 0:
            target = Path("/proc/x.mp4")  # not writable even for root
        else:
            ro = tmp_path / "ro"
            ro.mkdir()
            ro.chmod(0o500)
            target = ro / "x.mp4"
    r = run_main("process", str(clip), "-o", str(target), cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert "x.mp4" in r.stderr and "Traceback" not in r.stderr
    assert len(_errors(r.stderr)) == 1


def test_output_equal_to_input_is_refused(tmp_path, clip):
    src = tmp_path / "v.mp4"
    shutil.copy(clip, src)
    before = _sha(src)
    r = run_main("process", str(src), "-o", str(src), cwd=tmp_path)
    assert r.returncode == 4
    assert "overwrite the input" in r.stderr
    assert _sha(src) == before


def test_bad_config_value_exit_2_names_key(tmp_path, clip):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mask:\n  scale: 9\n")
    r = run_main("process", str(clip), "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2
    assert "mask.scale" in r.stderr and "9" in r.stderr and "Traceback" not in r.stderr
    r = run_main("process", str(clip), "--threshold", "7", cwd=tmp_path)
    assert r.returncode == 2 and "detector.threshold" in r.stderr
    r = run_main("process", str(clip), cwd=tmp_path, env={"PTIM_TARGET_FPS": "fast"})
    assert r.returncode == 2 and "PTIM_TARGET_FPS" in r.stderr


def test_sigterm_stops_fast_and_leaves_nothing(tmp_path, clip, int8_cached):
    from dataclasses import replace

    from backend.sources import SCENES, write_clip

    long_clip = write_clip(replace(SCENES["demo"].resized(640, 360), n_frames=600),
                           tmp_path / "long.mp4")
    out = tmp_path / "long_out.mp4"
    env = {**os.environ, "PTIM_USERDATA_DIR": str(tmp_path / "ud")}
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "process", str(long_clip),
                          "-o", str(out)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob("*.ptim-tmp*")):
        time.sleep(0.05)
    assert list(tmp_path.glob("*.ptim-tmp*")), "recording never started"
    time.sleep(0.3)
    with Timed() as took:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=WAIT_S)
    assert took.seconds < took.budget(1.5), (took.seconds, took.peak)
    assert p.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob("*ptim-tmp*"))


def test_interrupt_from_another_thread_stops_the_run_and_leaves_nothing(tmp_path, clip,
                                                                        int8_cached):
    """``BatchRunner.interrupt`` (what a signal handler calls) raises KeyboardInterrupt on
    the thread running the job, at its next check: temporary file gone, threads ended."""
    import threading
    from dataclasses import replace

    from backend.batch import BatchRunner, Job
    from backend.sources import SCENES, write_clip
    from config.schema import Settings

    long_clip = write_clip(replace(SCENES["demo"].resized(320, 180), n_frames=900),
                           tmp_path / "long.mp4")
    out = tmp_path / "o.mp4"
    runner = BatchRunner(Settings(), quiet=True)
    ended: list[BaseException] = []

    def run() -> None:
        try:
            runner.run_jobs([Job(str(long_clip), out, "video")], lambda *a: None)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            ended.append(exc)

    before = {t.ident for t in threading.enumerate()}
    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".o.ptim-tmp*")):
        time.sleep(0.002)
    assert list(tmp_path.glob(".o.ptim-tmp*")), "recording never started"
    runner.interrupt()
    t.join(WAIT_S)
    runner.close()
    assert not t.is_alive() and len(ended) == 1 and isinstance(ended[0], KeyboardInterrupt)
    assert runner.interrupted
    assert not out.exists() and not list(tmp_path.glob("*ptim-tmp*"))
    left = [x.name for x in threading.enumerate() if x.ident not in before
            and x.name in ("ptim-read", "ptim-write", "ptim-finish")]
    assert left == []
    with pytest.raises(KeyboardInterrupt):  # final: a later job does not start
        runner.run_job(Job(str(long_clip), out, "video"))
    assert not out.exists() and not list(tmp_path.glob("*ptim-tmp*"))


def test_demo_and_config_show(tmp_path):
    r = run_main("config", "show", cwd=tmp_path, env={"PTIM_MASK__TYPE": "solid"})
    assert r.returncode == 0
    line = next(x for x in r.stdout.splitlines() if x.startswith("mask.type"))
    assert "solid" in line and "PTIM_MASK__TYPE" in line


def test_recoveries_leave_an_error_report(tmp_path, clip):
    ud = tmp_path / "ud"
    r = run_main("process", str(clip), "-o", str(tmp_path / "o.mp4"), cwd=tmp_path,
                 env={"PTIM_USERDATA_DIR": str(ud), "PTIM_FAULTS": "detect.raise=2"})
    assert r.returncode == 0, r.stderr
    assert "1 fail-closed" in r.stdout
    (report,) = ud.glob("error_report_*.json")
    assert json.loads(report.read_text())["counts"]["processing.degrade"] == 1


def test_jobs_write_on_while_the_next_is_detected_and_report_in_order(tmp_path, clip,
                                                                       small_scene):
    """run_jobs: every output complete and reported in job order; an error raised while a
    job is still being written abandons it (no temporary file, no partial output)."""
    from backend.batch import BatchRunner, Job
    from config.schema import Settings

    s = Settings()
    settings = s.model_copy(update={"mask": s.mask.model_copy(update={"type": "solid"})})
    runner = BatchRunner(settings, quiet=True)
    jobs = [Job(str(clip), tmp_path / f"{name}.mp4", "video") for name in "abc"]
    seen: list[tuple[str, int]] = []
    runner.run_jobs(jobs, lambda job, st, exc: seen.append((job.output.name, st.frames)))
    n = small_scene.n_frames
    assert seen == [("a.mp4", n), ("b.mp4", n), ("c.mp4", n)]
    for job in jobs:
        frames, ts, _, _ = _decode(job.output)
        assert len(frames) == n and ts == sorted(ts)

    class Stop(Exception):
        pass

    def fail_on_first(job, st, exc):
        raise Stop(job.output.name)

    jobs2 = [Job(str(clip), tmp_path / f"x{name}.mp4", "video") for name in "abc"]
    with pytest.raises(Stop, match="xa.mp4"):
        runner.run_jobs(jobs2, fail_on_first)
    assert not (tmp_path / "xc.mp4").exists()  # never started
    assert not list(tmp_path.glob("*ptim-tmp*"))
    for job in jobs2[:2]:  # written whole before the error, or not at all
        if job.output.exists():
            assert len(_decode(job.output)[0]) == n


def test_sigterm_in_a_folder_run_leaves_whole_files_each_reported(tmp_path, clip,
                                                                  small_scene):
    """Stopped while one file is written and the next detected: every file left is whole
    and has its line; nothing half-written, no temporary file."""
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(6):
        shutil.copy(clip, folder / f"c{k}.mp4")
    out = tmp_path / "out"
    env = {**os.environ, "PTIM_USERDATA_DIR": str(tmp_path / "ud")}
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "process", str(folder),
                          "-o", str(out) + os.sep, "--mask", "solid"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(p.stdout.readline()), daemon=True).start()
    try:  # the first file is complete: the second is being detected
        first = lines.get(timeout=WAIT_S)
    except queue.Empty:
        p.kill()
        raise AssertionError("no file was reported") from None
    assert "c0.mp4: " in first and "frames" in first
    p.send_signal(signal.SIGTERM)
    rest, err = p.communicate(timeout=WAIT_S)
    assert p.returncode in (130, 0), err  # 0: the run ended before the signal came
    assert "Traceback" not in err
    reported = sorted(line.split(":")[0] for line in [first, *rest.splitlines()]
                      if " frames, " in line and not line.startswith("total"))
    assert reported == sorted(str(x) for x in out.glob("*.mp4"))
    for x in out.glob("*.mp4"):
        assert len(_decode(x)[0]) == small_scene.n_frames
    assert not list(tmp_path.rglob("*ptim-tmp*"))
