"""The live fine-pass governor, driven by synthetic timings (no clock, no machine speed)."""

from __future__ import annotations

import pytest

from backend.degrade import FinePassGovernor, effective_cap, protection
from backend.detect.schedule import RELIABLE_INPUT_PX, DetectionSchedule

FRAME = 1 / 30  # 33.3 ms
SLOW = 0.030  # over 0.8 x the frame interval
OK = 0.020  # between the thresholds: hold
FAST = 0.010  # under 0.4 x the frame interval: headroom


def feed(gov: FinePassGovernor, seconds: float, windows: int = 1, dropped: int = 0) -> int:
    """``windows`` whole decision windows of identical frames; the period after them."""
    period = gov.period
    for _ in range(windows):
        for i in range(gov.window):
            period = gov.observe(seconds, dropped if i == 0 else 0)
    return period


@pytest.fixture
def gov() -> FinePassGovernor:
    return FinePassGovernor(base_period=6, frame_interval_s=FRAME, cap=24, window=30)


def test_keeps_the_setting_when_the_machine_keeps_up(gov):
    assert feed(gov, OK, windows=10) == 6
    assert not gov.degraded and gov.note() == ""


def test_slows_the_fine_pass_first_doubling_up_to_the_cap(gov):
    assert feed(gov, SLOW) == 12
    assert gov.degraded and gov.busy
    assert gov.note() == "fine pass slowed to 12 frames (machine busy)"
    assert feed(gov, SLOW) == 24
    assert feed(gov, SLOW, windows=5) == 24  # never past the cap
    assert "its slowest" in gov.note()


def test_decides_per_window_not_per_frame(gov):
    for _ in range(gov.window - 1):
        assert gov.observe(SLOW) == 6
    assert gov.observe(SLOW) == 12


def test_a_few_slow_frames_are_not_an_overload(gov):
    # one slow frame in 30 is under the p95
    for i in range(gov.window):
        gov.observe(SLOW if i == 0 else OK)
    assert gov.period == 6


def test_capture_drops_count_as_overload(gov):
    assert feed(gov, OK, dropped=10) == 12  # 10 of 40 captured frames dropped


def test_recovers_toward_the_setting_with_hysteresis(gov):
    feed(gov, SLOW, windows=2)
    assert gov.period == 24
    assert feed(gov, OK, windows=10) == 24  # no headroom: stays
    assert feed(gov, FAST, windows=gov.hold - 1) == 24  # not yet: needs hold windows
    assert feed(gov, FAST) == 12
    assert not gov.busy and gov.note() == "fine pass slowed to 12 frames (recovering)"
    assert feed(gov, FAST, windows=3) == 6
    assert feed(gov, FAST, windows=10) == 6  # never below the setting
    assert not gov.degraded


def test_a_failed_recovery_waits_longer_next_time(gov):
    feed(gov, SLOW)
    assert gov.period == 12 and gov.hold == 3
    feed(gov, FAST, windows=3)
    assert gov.period == 6
    feed(gov, SLOW)  # overloaded right after recovering: back, and wait twice as long
    assert gov.period == 12 and gov.hold == 6
    assert feed(gov, FAST, windows=5) == 12
    assert feed(gov, FAST) == 6
    feed(gov, OK, windows=3)  # this recovery lasts: the wait is reset
    assert gov.hold == 3


def test_cap_from_frame_size_and_base_above_the_cap():
    gov = FinePassGovernor(base_period=6, frame_interval_s=FRAME, cap=24)
    gov.set_cap(9)
    assert feed(gov, SLOW, windows=3) == 9
    gov = FinePassGovernor(base_period=30, frame_interval_s=FRAME, cap=24)
    assert feed(gov, SLOW) == 30  # the setting is already slower than the cap
    assert not gov.degraded and gov.busy
    assert "already at its setting" in gov.note()


def test_reset_goes_back_to_a_new_setting(gov):
    feed(gov, SLOW, windows=2)
    gov.reset(4)
    assert gov.period == 4 and not gov.degraded


def test_non_finite_time_is_an_overload(gov):
    assert feed(gov, float("inf")) == 12


def test_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="low < high"):
        FinePassGovernor(low=0.9, high=0.5)


def test_effective_cap_is_where_tiles_stop_shrinking():
    # 640x360: the tiles stop shrinking (each stays half a coarse pass) well below 24
    sched = DetectionSchedule(12, 448, 2)
    cap = effective_cap(sched, 640, 360, 24)
    assert 2 < cap < 24
    bigger = DetectionSchedule(12, 448, cap + 10)
    assert bigger.plan(640, 360).period == DetectionSchedule(12, 448, cap).plan(640, 360).period
    assert 6 < effective_cap(DetectionSchedule(12, 448, 6), 1280, 720, 24) <= 24
    assert effective_cap(DetectionSchedule(40, 448, 6), 1280, 720) == 1  # no fine pass


@pytest.mark.parametrize(
    ("min_face", "size", "expected_px"),
    [(12, (1280, 720), 12.0), (24, (1280, 720), 24.0), (12, (1920, 1080), 12.0)],
)
def test_protection_with_a_schedule(min_face, size, expected_px):
    sched = DetectionSchedule(min_face, 448, 6)
    p = protection(sched, *size)
    assert p.protected_px == pytest.approx(expected_px)
    assert p.fine_period == sched.plan(*size).period and p.override == ""


def test_protection_of_an_explicit_override():
    p = protection(None, 1280, 720, long_side=448, override="quality.model_quality balanced")
    assert p.protected_px == pytest.approx(RELIABLE_INPUT_PX / (448 / 1280))
    assert p.fine_period == 0 and "balanced" in p.override
    p = protection(None, 1280, 720, input_size=(640, 384))
    assert p.protected_px == pytest.approx(RELIABLE_INPUT_PX / 0.5)


def test_protection_says_when_degraded(gov):
    feed(gov, SLOW)
    p = protection(DetectionSchedule(12, 448, 12), 1280, 720, governor=gov)
    assert p.note.startswith("fine pass slowed to") and "machine busy" in p.note


class _ClockRunner:
    """A runner whose every detection takes ``cost_s`` on a fake clock (no real waiting)."""

    def __init__(self, schedule, clock: list[float], cost_s: float) -> None:
        self.schedule, self.clock, self.cost_s = schedule, clock, cost_s

    def detect(self, image, tracks=None, motion=None):
        from backend.pipeline import DetectionOutcome
        from backend.types import Detections

        self.clock[0] += self.cost_s
        return DetectionOutcome(Detections.empty(), None, self.cost_s)


def test_process_loop_slows_the_fine_pass_and_swaps_schedules(monkeypatch):
    import numpy as np

    import backend.live as live
    from backend.pipeline import Pipeline
    from backend.types import Frame
    from config.schema import Settings

    clock = [0.0]
    monkeypatch.setattr(live.time, "perf_counter", lambda: clock[0])
    loop = live.ProcessLoop(Pipeline(Settings()), live.LatestSlot(), live.LatestSlot())
    loop.governor = FinePassGovernor(6, FRAME, cap=24, window=10)
    runner = _ClockRunner(DetectionSchedule(12, 448, 6), clock, SLOW)
    loop.set_runner(runner)
    image = np.zeros((720, 1280, 3), np.uint8)

    def frames(n: int) -> None:
        for i in range(n):
            res = loop.process_one(live.Captured(Frame(i, i / 30, image), clock[0]))
            loop.pipeline.release(res)

    frames(10)
    cap = effective_cap(runner.schedule, 1280, 720)
    assert runner.schedule.period == min(12, cap) and loop.governor.degraded
    frames(30)
    assert runner.schedule.period == cap  # slowed no further than tiles keep shrinking
    assert loop.frame_size == (1280, 720)
    loop.set_schedule(DetectionSchedule(24, 448, 4))  # a setting changed: new schedule
    runner.cost_s = FAST
    frames(1)
    assert runner.schedule.min_face_px == 24 and loop.governor.base == 4
    assert not loop.governor.degraded
    loop.set_schedule(None)  # an explicit override: nothing to govern
    frames(11)
    assert runner.schedule is None
