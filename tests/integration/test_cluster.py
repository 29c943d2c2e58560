"""``process --cluster`` on a real local Ray cluster started here (127.0.0.1, a free port).

One cluster for the module (2 CPUs, PTIM_MAX_WORKERS=1: two worker processes), stopped
in the fixture's finaliser. Every wait is on an event (a line, a file, an exit) with a
generous timeout: the suite runs on busy 2-core machines.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

pytest.importorskip("ray")

from backend.live import frame_is_raw  # noqa: E402
from backend.sources import ground_truth, render  # noqa: E402
from tests.integration.clips import gap_clip, scene  # noqa: E402
from tests.integration.conftest import ROOT  # noqa: E402

RAY = Path(sys.executable).with_name("ray")
ENV = {"PTIM_MAX_WORKERS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """HOST:PORT of a Ray head started for this module."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ptim-ray-")  # short: Ray's socket paths must fit
    log = Path(temp) / "head.log"  # a file, not a pipe: a full pipe would block the head
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=false", "--block",
             f"--temp-dir={temp}"],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **ENV},
            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():  # the head says when it is up
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "ray start did not come up"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)  # ray start --block and every process it began
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp, ignore_errors=True)


def _driver(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **ENV, "PTIM_USERDATA_DIR": str(cwd / ".ptim-userdata")}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "process", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            # SIGINT at its default even when the suite runs as `cmd &`
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _decoded(path: Path) -> tuple[list[Fraction], list]:
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
    return [Fraction(f.pts) * f.time_base for f in frames], \
        [f.to_ndarray(format="bgr24") for f in frames]


def _leaks(frames, n: int) -> list[int]:
    spec = scene(n)
    return [i for i, f in enumerate(frames)
            if frame_is_raw(f, render(spec, i)[0], list(ground_truth(spec, i)))]


def _check(out: Path, src: Path, n: int) -> None:
    ts_in, _ = _decoded(src)
    ts, px = _decoded(out)
    assert len(ts) == n and ts == [t - ts_in[0] for t in ts_in]
    assert _leaks(px, n) == []


def _clean(folder: Path) -> None:
    stray = [p.name for p in folder.rglob(".*")
             if ".ptim" in p.name and "userdata" not in p.name]
    assert stray == []


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder of two short clips and a 3-second one (three 1-second segments)."""
    folder = tmp_path_factory.mktemp("archive")
    gap_clip(folder / "a.mp4", n_frames=30, gap_after=None)
    gap_clip(folder / "b.mp4", n_frames=20, gap_after=None, audio=False)
    gap_clip(folder / "long.mp4")
    return folder


def test_folder_and_long_clip_on_the_cluster(tmp_path, cluster, clips):
    out = tmp_path / "masked"
    d = _driver(str(clips), "-o", str(out), "--mask", "solid", "--keep-audio",
                "--cluster", cluster, "--segment-seconds", "1", cwd=tmp_path)
    stdout, stderr = d.communicate(timeout=300)
    assert d.returncode == 0, stderr
    assert "total: 3 of 3 inputs" in stdout and "1 node, 0 retries" in stdout
    assert "long.mp4: 90 frames" in stdout and "3 segments" in stdout
    for name, n in (("a.mp4", 30), ("b.mp4", 20), ("long.mp4", 90)):
        _check(out / name, clips / name, n)
    _clean(tmp_path)


def _wait_line(proc: subprocess.Popen, words: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if words in line:
            return line
        assert time.monotonic() < deadline, f"no line with {words!r}"
    raise AssertionError(f"driver ended without a line with {words!r}")


def test_a_worker_killed_mid_segment_is_retried(tmp_path, cluster, clips):
    out = tmp_path / "long_masked.mp4"
    d = _driver(str(clips / "long.mp4"), "-o", str(out), "--mask", "solid", "--verbose",
                "--cluster", cluster, "--segment-seconds", "1", cwd=tmp_path)
    line = _wait_line(d, "segment 2: running in worker pid", 240)
    os.kill(int(line.split("pid ")[1].split()[0]), signal.SIGKILL)
    stdout, stderr = d.communicate(timeout=300)
    assert d.returncode == 0, stderr
    assert "retries" in stdout and "0 retries" not in stdout
    _check(out, clips / "long.mp4", 90)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".ptim-user")) \
        == ["long_masked.mp4"]
    _clean(tmp_path)


def test_interrupted_driver_resumes(tmp_path, cluster, clips):
    from backend.segments import manifest_path

    out = tmp_path / "long_masked.mp4"
    args = [str(clips / "long.mp4"), "-o", str(out), "--mask", "solid", "--keep-audio",
            "--cluster", cluster, "--segment-seconds", "1"]
    d = _driver(*args, cwd=tmp_path)
    manifest = manifest_path([out])
    deadline = time.monotonic() + 240
    while not (manifest.is_file() and '"part"' in manifest.read_text()):  # a part is done
        assert d.poll() is None, d.communicate()
        assert time.monotonic() < deadline, "no part was finished"
        time.sleep(0.1)
    d.send_signal(signal.SIGINT)
    _, stderr = d.communicate(timeout=120)
    if d.returncode == 0:  # the last parts finished as the signal came: nothing to resume
        pytest.skip("the run completed before the interrupt")
    assert d.returncode == 130, stderr
    assert "--resume finishes the run" in stderr and "Traceback" not in stderr
    assert not out.exists() and manifest.is_file()
    d = _driver(*args, "--resume", cwd=tmp_path)
    stdout, stderr = d.communicate(timeout=300)
    assert d.returncode == 0, stderr
    assert "reused" in stdout and "(0 reused)" not in stdout
    _check(out, clips / "long.mp4", 90)
    with av.open(str(out)) as c, av.open(str(clips / "long.mp4")) as i:
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) == \
            sum(1 for p in i.demux(i.streams.audio[0]) if p.size)
    _clean(tmp_path)
