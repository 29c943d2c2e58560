"""The performance dashboard (Ctrl+P): rates, latencies, counters and memory over time.

``push`` only writes one row into a numpy ring buffer; a 4 Hz QTimer redraws from the buffer,
and only while the widget is visible, so a hidden dashboard costs nothing. This module
imports pyqtgraph (slow to import): the main window imports it on first use only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QHideEvent, QShowEvent
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from backend.metrics import MetricsSnapshot

HISTORY_S = 120.0
REDRAW_MS = 250
STAGES: tuple[str, ...] = ("capture", "detect", "track", "mask", "output")
DEFAULT_WARNING_MB = 400.0
DEFAULT_CRITICAL_MB = 800.0

_STAGE_COLORS = {
    "capture": "#4fc3f7",
    "detect": "#ffb74d",
    "track": "#81c784",
    "mask": "#ba68c8",
    "output": "#e57373",
}
_OK = "#4fc3f7"
_WARN = "#ff9800"
_CRIT = "#f44336"
_TEXT = "#cfcfcf"
_MUTED = "#9e9e9e"

# One column per plotted quantity; a snapshot becomes one row.
CHANNELS: tuple[str, ...] = (
    "time",
    "input_fps",
    "output_fps",
    *(f"{s}_{q}" for s in STAGES for q in ("p50", "p95")),
    "e2e_p50",
    "e2e_p95",
    "dropped",
    "fail_closed",
    "cpu",
    "rss",
    "pool_in_use",
    "pool_cached",
    "pool_reuse",
    "gpu",
    "recoveries",
)
_COL = {name: i for i, name in enumerate(CHANNELS)}


class RingBuffer:
    """Fixed-capacity rows of float64, oldest overwritten first."""

    def __init__(self, capacity: int, columns: int) -> None:
        """Room for ``capacity`` rows of ``columns`` values."""
        self._data = np.full((capacity, columns), np.nan)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, row: list[float]) -> None:
        """Store one row (overwrites the oldest when full)."""
        self._data[self._next] = row
        self._next = (self._next + 1) % len(self._data)
        self._count = min(self._count + 1, len(self._data))

    def view(self) -> np.ndarray:
        """Rows oldest first, as a new (n, columns) array."""
        if self._count < len(self._data):
            return self._data[: self._count].copy()
        return np.concatenate((self._data[self._next :], self._data[: self._next]))

    def clear(self) -> None:
        """Forget every row."""
        self._next = 0
        self._count = 0


def _fmt_mb(value: float) -> str:
    return f"{value:,.0f} MB"


class DashboardWidget(QWidget):
    """Plots of a stream of ``MetricsSnapshot``s over the last ~120 s.

    Signals:
        reset_requested(): the user pressed "Reset stats" (the plots are cleared too).
        free_caches_requested(): the user pressed "Free caches".
    """

    reset_requested = pyqtSignal()
    free_caches_requested = pyqtSignal()

    def __init__(
        self,
        parent: QWidget | None = None,
        history_s: float = HISTORY_S,
        max_rate_hz: float = 10.0,
    ) -> None:
        """Build the plots; ``history_s * max_rate_hz`` snapshots are kept at most."""
        super().__init__(parent)
        self.history_s = history_s
        self._buffer = RingBuffer(int(history_s * max_rate_hz) + 1, len(CHANNELS))
        self._latest: MetricsSnapshot | None = None
        self._dirty = False
        self._warning_mb = DEFAULT_WARNING_MB
        self._critical_mb = DEFAULT_CRITICAL_MB
        self._rss_level = ""
        self._gpu_shown: bool | None = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self._y_floor: dict[str, float] = {}
        self._plot_curves: dict[str, list[str]] = {}

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._on_timer_timeout)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(self._build_header())
        self._recoveries_label = QLabel("Recoveries: none")
        self._recoveries_label.setWordWrap(True)
        self._recoveries_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self._recoveries_label)
        self._degrade_label = QLabel()
        self._degrade_label.setStyleSheet(f"color: {_WARN}; font-weight: bold;")
        self._degrade_label.setToolTip(
            "When the machine cannot keep up, the fine pass (small faces) is spread over more "
            "frames first; the coarse pass (every frame, whole frame) never slows.")
        self._degrade_label.setVisible(False)
        layout.addWidget(self._degrade_label)
        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.setMinimumHeight(260)
        layout.addWidget(self._graphics, 1)
        self._build_plots()
        self.set_memory_limits(DEFAULT_WARNING_MB, DEFAULT_CRITICAL_MB)

    # -- building ------------------------------------------------------------------------
    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(18)
        self.header: dict[str, QLabel] = {}
        for key, tip in (
            ("fps", "Frames per second captured / shown"),
            ("e2e", "95th percentile of capture-to-output latency"),
            ("dropped", "Live frames skipped because a newer one arrived (cumulative)"),
            ("fail_closed", "Frames fully obscured because detection was missing (cumulative)"),
            ("rss", "Resident memory of the process"),
            ("faces", "Smallest face masked reliably and the fine pass's period"),
        ):
            label = QLabel("-")
            label.setToolTip(tip)
            label.setTextFormat(Qt.TextFormat.RichText)
            self.header[key] = label
            row.addWidget(label)
        row.addStretch(1)
        reset = QPushButton("Reset stats")
        reset.setToolTip("Zero the counters and clear the plots.")
        reset.clicked.connect(self._on_reset_clicked)
        free = QPushButton("Free caches")
        free.setToolTip("Release cached frame buffers back to the system.")
        free.clicked.connect(self.free_caches_requested)
        row.addWidget(reset)
        row.addWidget(free)
        return row

    def _add_plot(
        self, key: str, title: str, row: int, col: int, units: str = "", floor: float = 1.0
    ) -> pg.PlotItem:
        """A plot whose y range starts at 0 and reaches at least ``floor``."""
        plot = self._graphics.addPlot(row=row, col=col)
        plot.setTitle(title, size="9pt")
        plot.setDownsampling(mode="peak", auto=True)
        plot.setClipToView(True)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("left", units)
        plot.getAxis("left").setWidth(44)
        plot.setXRange(-self.history_s, 0, padding=0)
        # Zero-based y ranges set in redraw: steadier than autorange and honest about scale.
        plot.enableAutoRange(x=False, y=False)
        plot.setYRange(0, floor, padding=0)
        self.plots[key] = plot
        self._y_floor[key] = floor
        return plot

    def _curve(self, plot: pg.PlotItem, key: str, color: str, dashed: bool = False,
               width: float = 1.5) -> pg.PlotDataItem:
        style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
        curve = plot.plot(pen=pg.mkPen(color, width=width, style=style))
        self.curves[key] = curve
        plot_key = next(k for k, p in self.plots.items() if p is plot)
        self._plot_curves.setdefault(plot_key, []).append(key)
        return curve

    @staticmethod
    def _legend(*items: tuple[str, str], unit: str = "") -> str:
        sep = f'<span style="color:{_MUTED}"> / </span>'
        text = sep.join(f'<span style="color:{c}">{t}</span>' for t, c in items)
        return f'{text}<span style="color:{_MUTED}"> {unit}</span>' if unit else text

    def _build_plots(self) -> None:
        legend = self._legend
        fps = self._add_plot(
            "fps", legend(("FPS in", _OK), ("out", "#ffd54f")), 0, 0, "fps", 5.0)
        self._curve(fps, "input_fps", _OK)
        self._curve(fps, "output_fps", "#ffd54f")

        stages = self._add_plot(
            "stages", legend(*((s, _STAGE_COLORS[s]) for s in STAGES)), 0, 1,
            "ms (dashed p50)", 5.0)
        for s in STAGES:
            self._curve(stages, f"{s}_p95", _STAGE_COLORS[s])
            self._curve(stages, f"{s}_p50", _STAGE_COLORS[s], dashed=True, width=1.0)

        e2e = self._add_plot(
            "e2e", legend(("End-to-end p95", _OK), ("p50", _MUTED)), 0, 2, "ms", 5.0)
        self._curve(e2e, "e2e_p95", _OK)
        self._curve(e2e, "e2e_p50", _MUTED, dashed=True)

        drops = self._add_plot(
            "drops", legend(("Dropped", _WARN), ("fail-closed", _CRIT), unit="frames"),
            0, 3, "", 1.0)
        self._curve(drops, "dropped", _WARN)
        self._curve(drops, "fail_closed", _CRIT)

        cpu = self._add_plot("cpu", legend(("CPU", _OK)), 0, 4, "%", 10.0)
        self._curve(cpu, "cpu", _OK)

        rss = self._add_plot("rss", legend(("Memory (RSS)", _OK)), 1, 0, "MB", 10.0)
        self._curve(rss, "rss", _OK, width=2.0)
        self._warning_line = pg.InfiniteLine(
            angle=0, pen=pg.mkPen(_WARN, width=1, style=Qt.PenStyle.DashLine),
            label="warning", labelOpts={"position": 0.15, "color": _WARN, "anchors": [(0, 1),
                                                                                      (0, 1)]},
        )
        self._critical_line = pg.InfiniteLine(
            angle=0, pen=pg.mkPen(_CRIT, width=1, style=Qt.PenStyle.DashLine),
            label="critical", labelOpts={"position": 0.5, "color": _CRIT, "anchors": [(0, 1),
                                                                                      (0, 1)]},
        )
        rss.addItem(self._warning_line, ignoreBounds=True)
        rss.addItem(self._critical_line, ignoreBounds=True)

        pool = self._add_plot(
            "pool", legend(("Pool in use", _OK), ("cached", "#9575cd")), 1, 1, "MB", 10.0)
        self._curve(pool, "pool_in_use", _OK)
        self._curve(pool, "pool_cached", "#9575cd")

        reuse = self._add_plot("reuse", legend(("Pool reuse rate", "#81c784")), 1, 2, "%", 100.0)
        self._curve(reuse, "pool_reuse", "#81c784")

        gpu = self._add_plot("gpu", "GPU memory", 1, 3, "MB", 10.0)
        self._curve(gpu, "gpu", "#aed581")

        rec = self._add_plot("recoveries", legend(("Recoveries (total)", _WARN)), 1, 4, "", 1.0)
        self._curve(rec, "recoveries", _WARN)
        layout = self._graphics.ci.layout
        for col in range(5):
            # Equal columns whatever the title lengths.
            layout.setColumnStretchFactor(col, 1)
            layout.setColumnPreferredWidth(col, 200)
        self._set_gpu_shown(False)

    # -- public API ----------------------------------------------------------------------
    def push(self, snapshot: MetricsSnapshot) -> None:
        """Append one snapshot to the history (cheap: no drawing happens here)."""
        stages = snapshot.stages
        row = [math.nan] * len(CHANNELS)
        row[0] = snapshot.time
        row[1] = snapshot.input_fps
        row[2] = snapshot.output_fps
        for s in STAGES:
            st = stages.get(s)
            if st is not None:
                row[_COL[f"{s}_p50"]] = st.p50_ms
                row[_COL[f"{s}_p95"]] = st.p95_ms
        row[_COL["e2e_p50"]] = snapshot.e2e_p50_ms
        row[_COL["e2e_p95"]] = snapshot.e2e_p95_ms
        row[_COL["dropped"]] = snapshot.dropped_frames
        row[_COL["fail_closed"]] = snapshot.fail_closed_frames
        row[_COL["cpu"]] = snapshot.cpu_percent
        row[_COL["rss"]] = snapshot.rss_mb
        pool = snapshot.pool
        if pool is not None:
            row[_COL["pool_in_use"]] = pool.in_use_mb
            row[_COL["pool_cached"]] = pool.cached_mb
            row[_COL["pool_reuse"]] = pool.reuse_rate * 100.0
        if snapshot.gpu_memory_mb is not None:
            row[_COL["gpu"]] = snapshot.gpu_memory_mb
        row[_COL["recoveries"]] = snapshot.recovery_total
        self._buffer.append(row)
        self._latest = snapshot
        self._dirty = True

    def set_protection(self, protected_px: float, fine_period: int, override: str = "",
                       note: str = "") -> None:
        """Show the smallest face protected and the fine pass's period (0: none), why no
        schedule runs (``override``) and how it degraded (``note``, "" when it did not)."""
        if fine_period:
            fine = f"fine pass every <b>{fine_period}</b> frames"
        else:
            fine = f"no fine pass ({override})" if override else "no fine pass needed"
        self.header["faces"].setText(f"faces from <b>{protected_px:.0f} px</b>, {fine}")
        self._degrade_label.setText(note)
        self._degrade_label.setVisible(bool(note))

    @property
    def degrade_text(self) -> str:
        """What the dashboard says about degradation ("" when none)."""
        return self._degrade_label.text() if self._degrade_label.isVisibleTo(self) else ""

    def set_memory_limits(self, warning_mb: float, critical_mb: float) -> None:
        """Move the RSS warning and critical lines (the curve turns orange / red above)."""
        self._warning_mb = float(warning_mb)
        self._critical_mb = float(critical_mb)
        self._warning_line.setValue(self._warning_mb)
        self._critical_line.setValue(self._critical_mb)
        self._rss_level = ""  # force the pen to be re-chosen
        self._dirty = True

    @property
    def memory_limits(self) -> tuple[float, float]:
        """(warning, critical) RSS levels in MB, as drawn."""
        return float(self._warning_line.value()), float(self._critical_line.value())

    @property
    def timer_active(self) -> bool:
        """Whether the redraw timer runs (only while the widget is visible)."""
        return self._timer.isActive()

    @property
    def gpu_plot_shown(self) -> bool:
        """Whether the GPU memory plot shows data (False: "not using CUDA")."""
        return bool(self._gpu_shown)

    def clear(self) -> None:
        """Forget the history and blank the plots."""
        self._buffer.clear()
        self._latest = None
        for curve in self.curves.values():
            curve.setData([], [])
        for key, label in self.header.items():
            if key != "faces":  # the schedule is state, not history: it stays
                label.setText("-")
        self._recoveries_label.setText("Recoveries: none")
        self._dirty = False

    def redraw(self) -> None:
        """Draw the buffered history now (the timer calls this at 4 Hz while visible)."""
        if not self._dirty or self._latest is None:
            return
        self._dirty = False
        data = self._buffer.view()
        x = data[:, 0] - data[-1, 0]
        keep = x >= -self.history_s
        x = x[keep]
        data = data[keep]
        for key, curve in self.curves.items():
            curve.setData(x, data[:, _COL[key]])
        for plot_key, keys in self._plot_curves.items():
            cols = data[:, [_COL[k] for k in keys]]
            top = float(np.nanmax(cols)) if np.isfinite(cols).any() else 0.0
            if plot_key == "rss":
                # Room above the critical line for its label.
                top = max(top, self._critical_mb * 1.25)
            top = max(top * 1.1, self._y_floor[plot_key])
            self.plots[plot_key].setYRange(0, top, padding=0)
        self._update_rss_pen(self._latest.rss_mb)
        self._set_gpu_shown(self._latest.gpu_memory_mb is not None)
        self._update_header(self._latest)

    # -- drawing helpers -----------------------------------------------------------------
    def _level(self, rss_mb: float) -> str:
        if rss_mb >= self._critical_mb:
            return "critical"
        if rss_mb >= self._warning_mb:
            return "warning"
        return "ok"

    def _update_rss_pen(self, rss_mb: float) -> None:
        level = self._level(rss_mb)
        if level != self._rss_level:
            # setPen re-renders the curve: only when the level changes.
            self._rss_level = level
            color = {"ok": _OK, "warning": _WARN, "critical": _CRIT}[level]
            self.curves["rss"].setPen(pg.mkPen(color, width=2.0))

    @property
    def rss_level(self) -> str:
        """"ok", "warning" or "critical": the colour band of the latest RSS value."""
        return self._rss_level

    def _set_gpu_shown(self, shown: bool) -> None:
        if shown == self._gpu_shown:
            return
        self._gpu_shown = shown
        plot = self.plots["gpu"]
        for axis in ("left", "bottom"):
            plot.showAxis(axis, shown)
        plot.getViewBox().setVisible(shown)
        plot.setTitle("GPU memory" if shown else "GPU memory: not using CUDA",
                      color=_TEXT, size="9pt")

    def _update_header(self, s: MetricsSnapshot) -> None:
        self.header["fps"].setText(
            f"FPS <b>{s.input_fps:.1f}</b> in / <b>{s.output_fps:.1f}</b> out"
        )
        self.header["e2e"].setText(f"p95 e2e <b>{s.e2e_p95_ms:.0f} ms</b>")
        self.header["dropped"].setText(f"dropped <b>{s.dropped_frames}</b>")
        fail_color = _CRIT if s.fail_closed_frames else ""
        style = f' style="color:{fail_color}"' if fail_color else ""
        replaced = ""
        if s.faces_replaced or s.replace_fallbacks:  # face replacement: how it is going
            warn = f' style="color:{_WARN}"' if s.replace_fallbacks else ""
            replaced = (f" · replaced {s.faces_replaced}, masked instead "
                        f"<b{warn}>{s.replace_fallbacks}</b>")
        self.header["fail_closed"].setText(
            f"fail-closed <b{style}>{s.fail_closed_frames}</b>{replaced}")
        level = self._level(s.rss_mb)
        rss_style = {"ok": "", "warning": f' style="color:{_WARN}"',
                     "critical": f' style="color:{_CRIT}"'}[level]
        self.header["rss"].setText(f"RSS <b{rss_style}>{_fmt_mb(s.rss_mb)}</b>")
        if s.recoveries:
            top = sorted(s.recoveries.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
            items = ", ".join(f"{name} {count}" for name, count in top)
            self._recoveries_label.setText(f"Recoveries ({s.recovery_total}): {items}")
        else:
            self._recoveries_label.setText(f"Recoveries: {s.recovery_total or 'none'}")

    # -- Qt events and slots -------------------------------------------------------------
    def showEvent(self, event: QShowEvent | None) -> None:  # noqa: D102 - Qt override
        super().showEvent(event)
        self._timer.start()
        self.redraw()

    def hideEvent(self, event: QHideEvent | None) -> None:  # noqa: D102 - Qt override
        self._timer.stop()
        super().hideEvent(event)

    def _on_timer_timeout(self) -> None:
        self.redraw()

    def _on_reset_clicked(self) -> None:
        self.clear()
        self.reset_requested.emit()
