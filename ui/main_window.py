"""The main window: preview in the centre, controls in a dock, dashboard on demand.

The window shows state and emits intent; the app layer connects its signals to the
pipeline. The dashboard module (and pyqtgraph, slow to import) is loaded the first time
the dashboard is shown, so the window itself builds quickly.

Keyboard: every action uses ``Qt.ShortcutContext.ApplicationShortcut`` so shortcuts work
from a floating dock too, and every action is also added to the window itself so they keep
working while the menu bar is hidden (fullscreen). Space is Start/Stop even while a spin
box, combo box or button has focus: a small event filter on those controls stops them from
claiming Space (``ShortcutOverride``), so the shortcut wins; spin boxes also let the
single-letter shortcuts (R, M, O, B) through. Free-text fields (the mask image path, the
typed detector size) keep their letters, and the path keeps Space, since a path may
contain one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import QEvent, QObject, QSignalBlocker, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QIcon, QKeyEvent, QKeySequence
from PyQt6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.controls import ControlPanel
from ui.preview import PreviewWidget

if TYPE_CHECKING:
    from backend.metrics import MetricsSnapshot
    from config.schema import Settings
    from ui.dashboard import DashboardWidget

APP_TITLE = "PlayaTews Identity Masker"
ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icon.png"
INFO_TIMEOUT_MS = 8000
# Shortcuts that are not QActions in a menu, listed in the F1 dialog too.
EXTRA_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Leave fullscreen", "Esc"),
    ("Keep a face visible / mask it again", "Click the face"),
)


_PLAIN = (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)


def _plain(text: str) -> str:
    """Menu text without the mnemonic ampersand and the trailing dots."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip(".")


class SpaceForShortcutFilter(QObject):
    """Stops a control from claiming Space, so the Start/Stop shortcut receives it.

    With ``letters=True`` (spin boxes, which never take letters) plain letter keys pass
    through too, so R, M, O and B keep working while a number field has focus.
    """

    def __init__(self, parent: QObject | None = None, letters: bool = False) -> None:
        """Filter Space, and plain letters when ``letters``."""
        super().__init__(parent)
        self._letters = letters

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:  # noqa: D102
        if (
            event is not None
            and event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.modifiers() in _PLAIN
            and (
                event.key() == Qt.Key.Key_Space
                or (self._letters and Qt.Key.Key_A.value <= event.key() <= Qt.Key.Key_Z.value)
            )
        ):
            # Unaccepted and filtered: the control never sees it, the shortcut map does.
            event.ignore()
            return True
        return False


class ShortcutsDialog(QDialog):
    """A table of every keyboard shortcut of the main window."""

    def __init__(self, rows: Sequence[tuple[str, str]], parent: QWidget | None = None) -> None:
        """Show ``rows`` of (action, shortcut)."""
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(self)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for i, (name, keys) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(name))
            self.table.setItem(i, 1, QTableWidgetItem(keys))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(420, 30 + 30 * (len(rows) + 2))

    def rows(self) -> list[tuple[str, str]]:
        """The (action, shortcut) rows shown."""
        return [
            (self.table.item(i, 0).text(), self.table.item(i, 1).text())
            for i in range(self.table.rowCount())
        ]


class MainWindow(QMainWindow):
    """The desktop app's window.

    Intent signals (the app decides what happens):
        start_stop_requested(), record_requested(), mask_cycle_requested(),
        quit_requested() (also on closing the window; a slot may call ``cancel_close``),
        settings_changed(dict), source_requested(str), record_toggled(bool),
        virtual_camera_toggled(bool), frame_clicked(float, float),
        reset_stats_requested(), free_caches_requested().
    """

    start_stop_requested = pyqtSignal()
    record_requested = pyqtSignal()
    mask_cycle_requested = pyqtSignal()
    quit_requested = pyqtSignal()
    settings_changed = pyqtSignal(dict)
    source_requested = pyqtSignal(str)
    record_toggled = pyqtSignal(bool)
    virtual_camera_toggled = pyqtSignal(bool)
    frame_clicked = pyqtSignal(float, float)
    reset_stats_requested = pyqtSignal()
    free_caches_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build the window (the dashboard is built later, when first shown)."""
        super().__init__(parent)
        self.setWindowTitle(APP_TITLE)
        if ICON_PATH.is_file():
            self.setWindowIcon(QIcon(str(ICON_PATH)))
        self.resize(1280, 800)
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks
        )
        self.menu_actions: dict[str, QAction] = {}
        self._dashboard: DashboardWidget | None = None
        self._dashboard_sized = False
        self._pending_metrics: deque[MetricsSnapshot] = deque(maxlen=1201)
        self._memory_limits = (400.0, 800.0)
        self._protection: tuple[float, int, str, str] | None = None
        self._running = False
        self._fullscreen_restore: dict[str, bool] | None = None
        self._close_cancelled = False
        self._shortcuts_dialog: ShortcutsDialog | None = None
        self._space_filter = SpaceForShortcutFilter(self)
        self._spin_filter = SpaceForShortcutFilter(self, letters=True)

        self.preview = PreviewWidget(self)
        self.preview.frame_clicked.connect(self.frame_clicked)
        self.setCentralWidget(self.preview)

        self.controls = ControlPanel()
        self.controls.settings_changed.connect(self.settings_changed)
        self.controls.source_requested.connect(self.source_requested)
        self.controls.record_toggled.connect(self.record_toggled)
        self.controls.virtual_camera_toggled.connect(self.virtual_camera_toggled)
        self.controls_dock = QDockWidget("Controls", self)
        self.controls_dock.setObjectName("controls_dock")
        self.controls_dock.setAllowedAreas(
            Qt.DockWidgetArea.LeftDockWidgetArea | Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.controls_dock.setWidget(self.controls)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.controls_dock)

        self.dashboard_dock = QDockWidget("Performance", self)
        self.dashboard_dock.setObjectName("dashboard_dock")
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dashboard_dock)
        self.dashboard_dock.hide()
        self.dashboard_dock.visibilityChanged.connect(self._on_dashboard_dock_visibility_changed)

        self._build_status_bar()
        self._build_menus()
        self._install_space_filter(self.controls)

    # -- building ------------------------------------------------------------------------
    def _action(
        self,
        name: str,
        text: str,
        shortcut: str | QKeySequence.StandardKey | None = None,
        slot: object = None,
        checkable: bool = False,
        tip: str = "",
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        action.setCheckable(checkable)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        if slot is not None:
            action.triggered.connect(slot)
        # Also on the window: shortcuts keep working while the menu bar is hidden.
        self.addAction(action)
        self.menu_actions[name] = action
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self._action(
            "open_file", "&Open file...", "Ctrl+O", self.controls.open_file_dialog,
            tip="Play a video file or an image."))
        file_menu.addAction(self._action(
            "open_folder", "Open &folder...", "Ctrl+Shift+O", self.controls.open_folder_dialog,
            tip="Play a folder of images."))
        self.camera_menu = file_menu.addMenu("&Camera")
        self._fill_camera_menu([])
        file_menu.addAction(self._action(
            "demo", "&Demo", None, self._on_demo_action_triggered, tip="Play the demo clip."))
        file_menu.addSeparator()
        file_menu.addAction(self._action("quit", "&Quit", "Ctrl+Q", self.close))

        playback = bar.addMenu("&Playback")
        playback.addAction(self._action(
            "start_stop", "&Start", "Space", self.start_stop_requested,
            tip="Start or stop processing."))
        playback.addAction(self._action(
            "record", "&Record", "R", self.record_requested,
            tip="Start or stop recording the masked output."))

        view = bar.addMenu("&View")
        view.addAction(self._action(
            "cycle_mask", "Cycle &mask", "M", self.mask_cycle_requested,
            tip="Switch to the next mask type."))
        view.addAction(self._action(
            "fullscreen", "&Fullscreen preview", "F11", self.toggle_fullscreen, checkable=True))
        view.addAction(self._action(
            "show_original", "Show &original side-by-side", "O",
            self._on_show_original_action_toggled, checkable=True,
            tip="Show the unmasked original next to the output (preview only)."))
        view.addAction(self._action(
            "show_boxes", "Show face &boxes", "B", self.preview.set_show_boxes, checkable=True,
            tip="Outline every masked face."))
        view.addSeparator()
        view.addAction(self._action(
            "dashboard", "&Performance dashboard", "Ctrl+P", self.set_dashboard_visible,
            checkable=True))
        controls_action = self.controls_dock.toggleViewAction()
        controls_action.setText("&Controls panel")
        view.addAction(controls_action)

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action(
            "shortcuts", "&Keyboard shortcuts", "F1", self.show_shortcuts))
        help_menu.addAction(self._action("about", f"&About {APP_TITLE}", None, self._show_about))

        # Esc only means something in fullscreen; elsewhere it belongs to dialogs and popups.
        leave = self._action("leave_fullscreen", "Leave fullscreen", "Esc",
                             self._leave_fullscreen)
        leave.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        leave.setEnabled(False)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self._message_label = QLabel()
        self._message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar.addWidget(self._message_label, 1)
        self._source_label = QLabel("No source")
        self._detector_label = QLabel("Loading detector...")
        self._protection_label = QLabel("Faces from -- px")
        self._fps_label = QLabel("-- fps")
        self._fail_closed_label = QLabel("Fail-closed: 0")
        fps_width = self._fps_label.fontMetrics().horizontalAdvance("000.0 fps")
        self._fps_label.setMinimumWidth(fps_width)
        self._source_label.setToolTip("Current source")
        self._detector_label.setToolTip("Face detector state")
        self._fps_label.setToolTip("Frames shown per second")
        self._fail_closed_label.setToolTip(
            "Frames fully obscured because face detection was missing for them")
        for label in (self._source_label, self._detector_label, self._protection_label,
                      self._fps_label, self._fail_closed_label):
            label.setContentsMargins(8, 0, 8, 0)
            bar.addPermanentWidget(label)
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self._on_message_timer_timeout)

    def _install_space_filter(self, root: QWidget) -> None:
        for widget in root.findChildren(QWidget):
            if isinstance(widget, QAbstractSpinBox):
                widget.installEventFilter(self._spin_filter)
            elif isinstance(widget, QComboBox | QAbstractButton):
                widget.installEventFilter(self._space_filter)

    def _fill_camera_menu(self, cameras: Sequence[tuple[str, str]]) -> None:
        self.camera_menu.clear()
        if not cameras:
            none = self.camera_menu.addAction("No camera found")
            none.setEnabled(False)
            return
        for spec, label in cameras:
            action = self.camera_menu.addAction(label)
            action.setData(spec)
            action.triggered.connect(
                lambda _checked=False, s=spec: self.source_requested.emit(s))

    # -- state in ------------------------------------------------------------------------
    def set_settings(self, settings: Settings) -> None:
        """Show ``settings`` in the controls and the view options (emits nothing)."""
        self.controls.set_settings(settings)
        action = self.menu_actions["show_original"]
        with QSignalBlocker(action):
            action.setChecked(settings.ui.show_original)
        self.preview.set_show_original(settings.ui.show_original)
        self.set_memory_limits(
            settings.performance.memory_warning_mb, settings.performance.memory_critical_mb)

    def set_sources(self, sources: Sequence[tuple[str, str]]) -> None:
        """Offer ``(spec, label)`` sources in the panel and cameras in File > Camera."""
        self.controls.set_sources(sources)
        self._fill_camera_menu([(s, lbl) for s, lbl in sources if s.startswith("camera:")])

    def set_current_source(self, spec: str, label: str | None = None) -> None:
        """Select ``spec`` in the source list and show ``label`` (or spec) in the status bar."""
        self.controls.set_current_source(spec)
        self.set_source_label(label or self.controls.source_combo.currentText() or spec)

    def set_running(self, running: bool) -> None:
        """Show whether processing runs (the Start/Stop action text follows)."""
        self._running = bool(running)
        self.menu_actions["start_stop"].setText("&Stop" if running else "&Start")

    @property
    def running(self) -> bool:
        """The last state given to ``set_running``."""
        return self._running

    def set_recording(self, on: bool, elapsed_s: float = 0.0) -> None:
        """Show whether recording is on and for how long."""
        self.controls.set_recording(on, elapsed_s)
        self.menu_actions["record"].setText("Stop &recording" if on else "&Record")

    def set_virtual_camera_state(self, on: bool, message: str = "") -> None:
        """Show the virtual camera's state and why it is off, if it is."""
        self.controls.set_virtual_camera_state(on, message)

    def set_detector_state(self, text: str) -> None:
        """E.g. "Loading detector...", "Detector: CPU int8", "Detector: CUDA fp32"."""
        self._detector_label.setText(text)

    def set_source_label(self, text: str) -> None:
        """The current source's name in the status bar."""
        self._source_label.setText(text)

    def set_fps(self, fps: float) -> None:
        """Frames shown per second, in the status bar."""
        self._fps_label.setText(f"{fps:.1f} fps")

    def set_fail_closed(self, count: int) -> None:
        """Frames obscured because detection was missing; highlighted when above zero."""
        self._fail_closed_label.setText(f"Fail-closed: {count}")
        self._fail_closed_label.setStyleSheet("color: #c05000;" if count else "")

    def set_protection(self, protected_px: float, fine_period: int, override: str = "",
                       note: str = "") -> None:
        """The smallest face protected now and the fine pass's period, in the status bar
        and the dashboard.

        ``fine_period`` 0 means no fine pass; ``override`` says why no schedule runs (""
        when one does); ``note`` says how the schedule degraded ("" when it did not).
        """
        state = (float(protected_px), int(fine_period), override, note)
        if state == self._protection:
            return
        self._protection = state
        if fine_period:
            fine = f"fine pass {fine_period} frames" + (" (busy)" if note else "")
        else:
            fine = "no fine pass" + (" (override)" if override else "")
        self._protection_label.setText(f"Faces from {protected_px:.0f} px \u00b7 {fine}")
        tip = ("Smallest face masked reliably (source pixels); the fine pass sees the whole "
               f"frame at that scale once every {fine_period} frame(s)") if fine_period else (
            "Smallest face masked reliably (source pixels)"
            + (f"; {override}: one whole-frame pass" if override else ""))
        self._protection_label.setToolTip(f"{tip}\n{note}" if note else tip)
        self._protection_label.setStyleSheet("color: #c05000;" if note else "")
        if self._dashboard is not None:
            self._dashboard.set_protection(*state)

    @property
    def protection_text(self) -> str:
        """The status bar's protection text, e.g. "Faces from 12 px · fine pass 6 frames"."""
        return self._protection_label.text()

    def show_status(self, text: str, error: bool = False) -> None:
        """A message in the status bar: errors in red and kept, others fade after 8 s."""
        self._message_label.setText(text)
        self._message_label.setStyleSheet("color: #d02020; font-weight: bold;" if error else "")
        self._message_label.setToolTip(text)
        if error:
            self._message_timer.stop()
        else:
            self._message_timer.start(INFO_TIMEOUT_MS)

    @property
    def status_message(self) -> str:
        """The text in the status bar's message area."""
        return self._message_label.text()

    def set_memory_limits(self, warning_mb: float, critical_mb: float) -> None:
        """RSS warning and critical levels for the dashboard."""
        self._memory_limits = (float(warning_mb), float(critical_mb))
        if self._dashboard is not None:
            self._dashboard.set_memory_limits(*self._memory_limits)

    def push_metrics(self, snapshot: MetricsSnapshot) -> None:
        """Feed a metrics snapshot (a few times a second) to the status bar and dashboard.

        Before the dashboard is first shown its history is kept here and replayed.
        """
        self.set_fps(snapshot.output_fps)
        self.set_fail_closed(snapshot.fail_closed_frames)
        if self._dashboard is not None:
            self._dashboard.push(snapshot)
        else:
            self._pending_metrics.append(snapshot)

    # -- dashboard -----------------------------------------------------------------------
    @property
    def dashboard(self) -> DashboardWidget | None:
        """The dashboard, or None until it was first shown."""
        return self._dashboard

    def dashboard_visible(self) -> bool:
        """Whether the dashboard exists and its dock is shown (feed it only then)."""
        return self._dashboard is not None and not self.dashboard_dock.isHidden()

    def set_dashboard_visible(self, visible: bool) -> None:
        """Show or hide the performance dashboard dock (built on first show)."""
        if visible and self._dashboard is None:
            self._dashboard = self._create_dashboard()
            self.dashboard_dock.setWidget(self._dashboard)
        first_show = visible and self.dashboard_dock.widget() is not None and not (
            self._dashboard_sized)
        self.dashboard_dock.setVisible(visible)
        if visible:
            self.dashboard_dock.raise_()
        if first_show:
            # A useful first height: the plots readable, the preview still the main thing.
            self._dashboard_sized = True
            self.resizeDocks([self.dashboard_dock], [max(320, int(self.height() * 0.42))],
                             Qt.Orientation.Vertical)

    def toggle_dashboard(self) -> None:
        """Show the dashboard when hidden, hide it when shown."""
        self.set_dashboard_visible(self.dashboard_dock.isHidden())

    def _create_dashboard(self) -> DashboardWidget:
        from ui.dashboard import DashboardWidget  # pyqtgraph: imported on first use only

        dashboard = DashboardWidget()
        dashboard.set_memory_limits(*self._memory_limits)
        if self._protection is not None:
            dashboard.set_protection(*self._protection)
        dashboard.reset_requested.connect(self.reset_stats_requested)
        dashboard.free_caches_requested.connect(self.free_caches_requested)
        while self._pending_metrics:
            dashboard.push(self._pending_metrics.popleft())
        self._install_space_filter(dashboard)
        return dashboard

    def _on_dashboard_dock_visibility_changed(self, _visible: bool) -> None:
        # Follows the dock's close button too; isHidden ignores being a background tab.
        action = self.menu_actions.get("dashboard")
        if action is not None:
            with QSignalBlocker(action):
                action.setChecked(not self.dashboard_dock.isHidden())

    # -- fullscreen ----------------------------------------------------------------------
    @property
    def is_preview_fullscreen(self) -> bool:
        """Whether the preview fills the screen (F11)."""
        return self._fullscreen_restore is not None

    def toggle_fullscreen(self) -> None:
        """Fill the screen with the preview alone, or go back (F11; Esc also leaves)."""
        if self.is_preview_fullscreen:
            self._leave_fullscreen()
        else:
            self._enter_fullscreen()

    def _enter_fullscreen(self) -> None:
        self._fullscreen_restore = {
            "maximized": self.isMaximized(),
            "controls": not self.controls_dock.isHidden(),
            "dashboard": not self.dashboard_dock.isHidden(),
        }
        self.menuBar().hide()
        self.statusBar().hide()
        self.controls_dock.hide()
        self.dashboard_dock.hide()
        self.menu_actions["leave_fullscreen"].setEnabled(True)
        self._set_fullscreen_checked(True)
        self.showFullScreen()

    def _leave_fullscreen(self) -> None:
        restore = self._fullscreen_restore
        if restore is None:
            return
        self._fullscreen_restore = None
        self.menu_actions["leave_fullscreen"].setEnabled(False)
        self._set_fullscreen_checked(False)
        if restore["maximized"]:
            self.showMaximized()
        else:
            self.showNormal()
        self.menuBar().show()
        self.statusBar().show()
        self.controls_dock.setVisible(restore["controls"])
        self.dashboard_dock.setVisible(restore["dashboard"])

    def _set_fullscreen_checked(self, on: bool) -> None:
        action = self.menu_actions["fullscreen"]
        with QSignalBlocker(action):
            action.setChecked(on)

    # -- help ----------------------------------------------------------------------------
    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(action, shortcut) for every action with a shortcut, in menu order."""
        rows = []
        for name, action in self.menu_actions.items():
            if name == "leave_fullscreen" or action.shortcut().isEmpty():
                continue
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            label = "Start / Stop" if name == "start_stop" else _plain(action.text())
            if name == "record":
                label = "Record / Stop recording"
            rows.append((label, keys))
        return rows + list(EXTRA_SHORTCUTS)

    def show_shortcuts(self) -> ShortcutsDialog:
        """Open the keyboard shortcuts dialog (F1), without blocking."""
        if self._shortcuts_dialog is None:
            self._shortcuts_dialog = ShortcutsDialog(self.shortcut_rows(), self)
        self._shortcuts_dialog.show()
        self._shortcuts_dialog.raise_()
        self._shortcuts_dialog.activateWindow()
        return self._shortcuts_dialog

    def _show_about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle(f"About {APP_TITLE}")
        box.setIcon(QMessageBox.Icon.Information)
        box.setText(f"<b>{APP_TITLE}</b>")
        box.setInformativeText(
            "Masks every face in live video and video files, in real time.\n\n"
            "Frames whose detection is missing are fully obscured (fail closed). "
            "The original side-by-side view is a preview only and never reaches an output.")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- slots and events ----------------------------------------------------------------
    def _on_demo_action_triggered(self) -> None:
        self.source_requested.emit("demo")

    def _on_show_original_action_toggled(self, checked: bool) -> None:
        self.preview.set_show_original(checked)
        self.settings_changed.emit({"ui.show_original": bool(checked)})

    def _on_message_timer_timeout(self) -> None:
        self._message_label.clear()

    def cancel_close(self) -> None:
        """Called from a ``quit_requested`` slot: keep the window open this time."""
        self._close_cancelled = True

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: D102 - Qt override
        self._close_cancelled = False
        self.quit_requested.emit()
        if event is None:
            return
        if self._close_cancelled:
            event.ignore()
            return
        if self._shortcuts_dialog is not None:
            self._shortcuts_dialog.close()
        event.accept()
