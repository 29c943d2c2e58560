"""Live degradation of the detection schedule, and what the schedule protects right now.

When the machine cannot keep up with the frame rate, the schedule degrades in one stated
order: the **fine pass goes slower first** (its period doubles, up to a cap, so each frame
gets a smaller tile), and the **coarse pass never** (every frame keeps its whole-frame pass
and its refinement crops, so large, fast and already-tracked faces stay masked). When there
is headroom again the period halves back toward the configured one.

``FinePassGovernor`` makes that decision from timings only (no clock, no Qt), so it is
tested with synthetic numbers; ``ProcessLoop`` feeds it and applies its period.
``protection`` says which face size the current schedule protects, for the UI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend.detect.schedule import RELIABLE_INPUT_PX, DetectionSchedule, coarse_scale_for

# The fine pass is slowed at most this far by default: a new small face is then first seen
# within a second at 24 fps and up.
DEFAULT_CAP = 24


class FinePassGovernor:
    """Chooses the fine pass's period from per-frame detection times and capture drops.

    Feed ``observe(detect_s, dropped)`` once per processed frame. Every ``window`` frames
    it decides, from that window only:

    - **overloaded** when the detect p95 exceeds ``high`` x the frame interval, or more than
      ``drop_share`` of the captured frames were dropped: the period doubles (up to
      ``cap``);
    - **headroom** when the p95 is under ``low`` x the interval and nothing was dropped, for
      ``hold`` windows in a row: the period halves (down to ``base``). Halving the period
      about doubles the fine tile's cost, so ``low`` is about half of ``high``;
    - otherwise it stays.

    A recovery that is overloaded again within ``probation`` windows doubles ``hold`` (up to
    ``max_hold``) so a machine on the edge does not flap; a recovery that lasts resets it.
    The coarse pass is not this class's to change: it never degrades.
    """

    def __init__(self, base_period: int = 6, frame_interval_s: float = 1 / 30,
                 cap: int = DEFAULT_CAP, window: int = 30, high: float = 0.8,
                 low: float = 0.4, drop_share: float = 0.1, hold: int = 3,
                 max_hold: int = 48, probation: int = 2) -> None:
        if not 0 < low < high:
            raise ValueError(f"need 0 < low < high, got low={low} high={high}")
        self.frame_interval_s = float(frame_interval_s)
        self.limit = int(cap)
        self._size_cap: int | None = None
        self.window = max(1, int(window))
        self.high, self.low, self.drop_share = float(high), float(low), float(drop_share)
        self.initial_hold, self.max_hold, self.probation = int(hold), int(max_hold), int(probation)
        self.last_p95_s = 0.0
        self.reset(base_period)

    # -- state ---------------------------------------------------------------------------
    def reset(self, base_period: int | None = None) -> None:
        """Start over at ``base_period`` (the setting; None keeps it) with a fresh window."""
        if base_period is not None:
            self.base = max(1, int(base_period))
        self.period = self.base
        self.busy = False
        self.hold = self.initial_hold
        self._times: list[float] = []
        self._dropped = 0
        self._good = 0
        self._since_recovery: int | None = None

    @property
    def cap(self) -> int:
        """The largest period this governor chooses: ``limit``, or less where more tiles stop
        making each one smaller (``set_cap``); never below the base."""
        c = self.limit if self._size_cap is None else min(self.limit, self._size_cap)
        return max(self.base, c)

    def set_cap(self, cap: int | None) -> None:
        """Grow the period no further than ``cap`` (None: up to ``limit``)."""
        self._size_cap = None if cap is None else int(cap)
        self.period = min(self.period, self.cap)

    @property
    def degraded(self) -> bool:
        """True while the fine pass runs slower than configured."""
        return self.period > self.base

    # -- decisions -----------------------------------------------------------------------
    def observe(self, detect_s: float, dropped: int = 0) -> int:
        """Record one frame's detect time (seconds) and the frames dropped before it;
        returns the period to use from the next frame on."""
        self._times.append(float(detect_s) if math.isfinite(detect_s) else math.inf)
        self._dropped += max(0, int(dropped))
        if len(self._times) >= self.window:
            self._decide()
        return self.period

    def _decide(self) -> None:
        times = sorted(self._times)
        p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
        share = self._dropped / (len(times) + self._dropped)
        dropped = self._dropped
        self._times, self._dropped = [], 0
        self.last_p95_s = p95
        interval = self.frame_interval_s
        if self._since_recovery is not None:
            self._since_recovery += 1
        if p95 > self.high * interval or share > self.drop_share:
            self.busy = True
            self._good = 0
            if self._since_recovery is not None and self._since_recovery <= self.probation:
                self.hold = min(self.max_hold, self.hold * 2)  # the last recovery was too soon
            self._since_recovery = None
            self.period = min(self.cap, self.period * 2)
            return
        self.busy = False
        if self._since_recovery is not None and self._since_recovery > self.probation:
            self.hold, self._since_recovery = self.initial_hold, None
        if p95 < self.low * interval and dropped == 0:
            self._good += 1
            if self.period > self.base and self._good >= self.hold:
                self.period = max(self.base, self.period // 2)
                self._good = 0
                self._since_recovery = 0
        else:
            self._good = 0

    def note(self, shown_period: int | None = None) -> str:
        """What the dashboard says about degradation ("" when running as configured)."""
        if not self.degraded:
            return "machine busy: fine pass already at its setting" if self.busy else ""
        n = self.period if shown_period is None else shown_period
        slowest = ", its slowest" if self.period >= self.cap and self.busy else ""
        why = "machine busy" if self.busy else "recovering"
        return f"fine pass slowed to {n} frames{slowest} ({why})"


def effective_cap(schedule: DetectionSchedule, width: int, height: int,
                  cap: int = DEFAULT_CAP) -> int:
    """The largest period worth asking ``schedule`` for at this frame size: past it the plan
    stops adding (smaller) tiles, so slowing further would save nothing."""
    probe = DetectionSchedule(schedule.min_face_px, schedule.coarse_long_side, cap,
                              schedule.refine)
    plan = probe.plan(width, height)
    return max(1, plan.period) if plan.tiles else 1


@dataclass(frozen=True, slots=True)
class Protection:
    """What the running schedule protects at one frame size.

    ``protected_px``: smallest face (source pixels) found reliably; ``fine_period``: frames
    for the fine pass to cover the frame (0: no fine pass); ``override``: why no schedule
    runs ("" with one); ``note``: degradation, as ``FinePassGovernor.note`` says it.
    """

    protected_px: float
    fine_period: int
    override: str = ""
    note: str = ""


def protection(schedule: DetectionSchedule | None, width: int, height: int, *,
               input_size: tuple[int, int] | None = None, long_side: int = 448,
               override: str = "", governor: FinePassGovernor | None = None) -> Protection:
    """The ``Protection`` of ``schedule`` on ``width`` x ``height`` frames; without a
    schedule, of one whole-frame pass at ``input_size`` or ``long_side`` (an override).
    Safe to call from any thread: ``schedule`` is only read."""
    if schedule is None:
        scale = coarse_scale_for(width, height, long_side, input_size)
        return Protection(RELIABLE_INPUT_PX / scale, 0, override or "explicit detector size")
    # planned on a copy: the live schedule's plan cache belongs to the detection thread
    plan = DetectionSchedule(schedule.min_face_px, schedule.coarse_long_side, schedule.period,
                             schedule.refine).plan(width, height)
    period = plan.period if plan.tiles else 0
    note = governor.note(period) if governor is not None else ""
    return Protection(plan.protected_px, period, "", note)
