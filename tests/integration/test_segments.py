"""Split and join without Ray: keyframe cuts, lead-in/out windows, exact remux, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from backend.live import frame_is_raw
from backend.sources import ground_truth, render
from tests.integration.clips import gap_clip, scene
from tests.integration.conftest import ROOT, run_main
from tests.timing import WAIT_S

LOSSLESS = {"PTIM_OUTPUT__CRF": "0"}  # decoded pixels then show the masks, not the encoder


@pytest.fixture(scope="module")
def gap(tmp_path_factory) -> Path:
    """90 frames, keyframes at 0, 30, 60; a 0.2 s gap just before keyframe 30; audio."""
    path = tmp_path_factory.mktemp("gap") / "gap.mp4"
    gap_clip(path)
    return path


def _video(path: Path) -> tuple[list[Fraction], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
    return [Fraction(f.pts) * f.time_base for f in frames], \
        [f.to_ndarray(format="bgr24") for f in frames]


def _audio_packets(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(c.streams.audio[0]) if p.size)


def _leaks(frames: list[np.ndarray]) -> list[int]:
    spec = scene()
    return [i for i, f in enumerate(frames)
            if frame_is_raw(f, render(spec, i)[0], list(ground_truth(spec, i)))]


def test_plan_cuts_at_keyframes_with_exact_offsets(gap):
    from backend.segments import plan_windows, probe

    info = probe(gap)
    assert len(info.pts) == 90 and [i for i, _ in info.keyframes] == [0, 30, 60]
    wins = plan_windows(info, 1.0, lead=40)
    assert [(w.first, w.frames) for w in wins] == [(0, 30), (30, 30), (60, 30)]
    # offsets are whole ticks of the input's time base: frame 30 comes after the gap
    assert [w.offset for w in wins] == [info.pts[0], info.pts[30], info.pts[60]]
    assert info.seconds(30) - info.seconds(29) == pytest.approx(7 / 30)
    # bounds fall between frames, so each frame is written by exactly one window
    ts = [info.seconds(i) for i in range(90)]
    owners = [[w.index for w in wins if w.write_from <= t < w.write_until] for t in ts]
    assert owners == [[i // 30] for i in range(90)]
    assert wins[2].lead_index == 20 and ts[19] < wins[2].lead_from < ts[20]
    assert wins[0].lead_until == pytest.approx((ts[69] + ts[70]) / 2)
    assert plan_windows(info, 10.0, lead=40)[0].frames == 90  # short file: one window


def test_three_segments_join_frame_exact_with_audio(tmp_path, gap):
    single, split = tmp_path / "single.mp4", tmp_path / "split.mp4"
    common = ["--mask", "solid", "--keep-audio", "--quiet"]
    r = run_main("process", str(gap), "-o", str(single), *common, cwd=tmp_path, env=LOSSLESS)
    assert r.returncode == 0, r.stderr
    r = run_main("process", str(gap), "-o", str(split), *common, "--segment-seconds", "1",
                 cwd=tmp_path, env=LOSSLESS)
    assert r.returncode == 0, r.stderr
    ts_in, _ = _video(gap)
    ts_one, px_one = _video(single)
    ts_split, px_split = _video(split)
    assert len(ts_split) == 90
    assert ts_split == ts_one == [t - ts_in[0] for t in ts_in]  # exact, gap included
    assert _audio_packets(split) == _audio_packets(single) == _audio_packets(gap)
    # segments 1 and 2 have a lead-in from the first frame: the very pixels of one run
    for i in range(60):
        assert np.array_equal(px_split[i], px_one[i]), f"frame {i} differs"
    # past a boundary tracking may differ, but no face the single run masks is shown
    assert _leaks(px_split) == [] and _leaks(px_one) == []
    assert not list(tmp_path.glob(".*"))  # no parts, no manifest, no temporary file


def test_resume_redoes_only_missing_parts(tmp_path, gap):
    from apps.process_cli import _settings_from_args
    from backend.batch import BatchRunner, plan_jobs
    from backend.segments import LocalExecutor, SegmentedRun, manifest_path, parts_dir, run_unit
    from main import build_parser

    out = tmp_path / "out.mp4"
    argv = ["process", str(gap), "-o", str(out), "--mask", "solid", "--keep-audio"]
    args = build_parser().parse_args(argv)
    os.environ.update(LOSSLESS)
    try:
        settings = _settings_from_args(args)
    finally:
        os.environ.pop("PTIM_OUTPUT__CRF")

    class Interrupted(LocalExecutor):  # Ctrl+C after the first part
        def run(self, units, on_result, wanted):
            on_result(units[0], run_unit(self.runner, units[0]))
            raise KeyboardInterrupt

    runner = BatchRunner(settings, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        SegmentedRun(settings, plan_jobs([str(gap)], str(out)).jobs, 1.0,
                     quiet=True).run(Interrupted(runner))
    runner.close()
    manifest = manifest_path([out])
    assert manifest.is_file() and not out.exists()
    parts = sorted(parts_dir(out).iterdir())
    assert len(parts) == 1
    (parts_dir(out) / ".00001-stale.ptim-part-1-dead.mp4").write_bytes(b"half")

    r = run_main(*argv, "--segment-seconds", "1", cwd=tmp_path, env=LOSSLESS)
    assert r.returncode == 2 and "--resume finishes it" in r.stderr
    r = run_main(*argv, "--segment-seconds", "1", "--resume", "--mask-shape", "box",
                 cwd=tmp_path, env=LOSSLESS)
    assert r.returncode == 2 and "settings changed" in r.stderr and "mask.shape" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_main(*argv, "--segment-seconds", "1", "--resume", cwd=tmp_path, env=LOSSLESS)
    assert r.returncode == 0, r.stderr
    assert "3 segments (1 reused)" in r.stdout
    assert not manifest.exists() and not parts_dir(out).exists()
    ts_in, _ = _video(gap)
    ts, px = _video(out)
    assert ts == [t - ts_in[0] for t in ts_in]
    assert _audio_packets(out) == _audio_packets(gap)
    assert _leaks(px) == []
    single = tmp_path / "single.mp4"  # resumed == uninterrupted, pixel for pixel
    r = run_main("process", str(gap), "-o", str(single), "--mask", "solid",
                 "--segment-seconds", "1", "--quiet", cwd=tmp_path, env=LOSSLESS)
    assert r.returncode == 0, r.stderr
    assert all(np.array_equal(a, b) for a, b in zip(px, _video(single)[1], strict=True))


def test_resume_needs_segments_and_boxes_are_refused(tmp_path, gap):
    r = run_main("process", str(gap), "-o", str(tmp_path / "o.mp4"), "--resume", cwd=tmp_path)
    assert r.returncode == 2 and "--resume needs --cluster or --segment-seconds" in r.stderr
    r = run_main("process", str(gap), "-o", str(tmp_path / "o.mp4"), "--segment-seconds", "1",
                 "--boxes", str(tmp_path / "b.jsonl"), cwd=tmp_path)
    assert r.returncode == 2 and "--boxes" in r.stderr


def test_ctrl_c_in_a_segmented_run_keeps_whole_parts_and_resumes(tmp_path, int8_cached):
    """SIGINT while a local segmented run writes a part: exit 130 with the resume hint,
    only whole parts kept (no temporary part), and --resume completes the file."""
    from dataclasses import replace

    from backend.segments import manifest_path, parts_dir
    from backend.sources import SCENES, write_clip

    src = write_clip(replace(SCENES["demo"].resized(320, 180), n_frames=600),
                     tmp_path / "long.mp4")
    out = tmp_path / "long_masked.mp4"
    argv = [sys.executable, str(ROOT / "main.py"), "process", str(src), "-o", str(out),
            "--segment-seconds", "1", "--quiet"]
    env = {**os.environ, "PTIM_USERDATA_DIR": str(tmp_path / "ud")}
    p = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    manifest = manifest_path([out])
    deadline = time.time() + 120
    while time.time() < deadline and not (manifest.is_file()
                                          and '"part"' in manifest.read_text()):
        assert p.poll() is None, p.communicate()
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=WAIT_S)
    if p.returncode == 0:  # the last parts finished as the signal came: nothing to resume
        pytest.skip("the run completed before the interrupt")
    assert p.returncode == 130, err
    assert "--resume finishes the run" in err and "Traceback" not in err
    assert not out.exists() and manifest.is_file()
    parts = sorted(x.name for x in parts_dir(out).iterdir())
    assert parts and not [x for x in parts if x.startswith(".")], parts
    r = run_main("process", str(src), "-o", str(out), "--segment-seconds", "1", "--resume",
                 cwd=tmp_path, env={"PTIM_USERDATA_DIR": str(tmp_path / "ud")})
    assert r.returncode == 0, r.stderr
    assert "reused" in r.stdout and "(0 reused)" not in r.stdout
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 600
