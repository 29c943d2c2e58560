"""``main.py run PlayaTewsIdentityMasker``: start the desktop app."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
NO_DISPLAY = (
    "no display found (DISPLAY and WAYLAND_DISPLAY are not set): the desktop app needs a "
    "screen; to mask files headless use 'python main.py process INPUT', or try 'make demo'"
)


def has_display() -> bool:
    """True when Qt can open a window here (or a non-screen platform was asked for)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and platform.split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return True
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True  # Windows and macOS always have a session screen


def setup_logging(data_dir: Path, verbose: bool) -> None:
    """Log to playatewsidentitymasker.log (all) and errors.log (warnings and errors)."""
    root = logging.getLogger("ptim")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        main_log = logging.FileHandler(data_dir / "playatewsidentitymasker.log", encoding="utf-8")
        main_log.setFormatter(fmt)
        err_log = logging.FileHandler(data_dir / "errors.log", encoding="utf-8")
        err_log.setLevel(logging.WARNING)
        err_log.setFormatter(fmt)
        root.handlers[:] = [main_log, err_log]
    except OSError as exc:
        sys.stderr.write(f"ptim: warning: cannot write logs in {data_dir}: {exc}\n")
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        root.addHandler(console)
    from backend.avlog import route_libav_logs

    route_libav_logs(root.handlers)  # FFmpeg's lines: the log files (console only if verbose)


def run_app(args) -> int:
    """Entry of the desktop app; returns the exit code."""
    t_start = time.perf_counter()
    if not has_display():
        sys.stderr.write(f"ptim: error: {NO_DISPLAY}\n")
        return EXIT_USAGE
    from config.paths import user_data_dir

    data_dir = user_data_dir(args.userdata_dir)
    setup_logging(data_dir, args.verbose)
    from PyQt6.QtCore import QTimer
    from PyQt6.QtGui import QIcon
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PlayaTews Identity Masker")
    icon = Path(__file__).resolve().parents[2] / "resources" / "icon.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    from apps.PlayaTewsIdentityMasker.app import MaskerApp
    from backend.errors import PtimError

    try:
        controller = MaskerApp(data_dir, source_spec=args.source)
    except PtimError as exc:  # e.g. an invalid user config: one line, exit 2
        sys.stderr.write(f"ptim: error: {exc}\n")
        return exc.exit_code
    controller.window.show()
    probe = os.environ.get("PTIM_STARTUP_PROBE")
    if probe:
        # bench/startup.py: report when the window is on screen, then leave
        app.processEvents()
        print(f"window-shown {time.perf_counter() - t_start:.4f}", flush=True)
        controller.shutdown()
        return 0
    QTimer.singleShot(0, controller.start)
    shots = os.environ.get("PTIM_SCREENSHOT_DIR")
    if shots:
        _schedule_screenshots(app, controller, Path(shots))
    app.aboutToQuit.connect(controller.shutdown)
    code = app.exec()
    controller.shutdown()
    logging.getLogger("ptim.app").info("exit %s", code)
    return code


def _schedule_screenshots(app, controller, folder: Path) -> None:
    """`make screenshots`: capture the window, then the dashboard, from the screen; quit."""
    from PyQt6.QtCore import QTimer

    win = controller.window
    win.resize(1500, 900)
    folder.mkdir(parents=True, exist_ok=True)

    def grab(name: str) -> None:
        screen = app.primaryScreen()
        pix = screen.grabWindow(0, win.x(), win.y(), win.frameGeometry().width(),
                                win.frameGeometry().height())
        pix.save(str(folder / name))

    def main_shot() -> None:
        grab("screenshot-main.png")
        win.toggle_dashboard()

    def dash_shot() -> None:
        grab("screenshot-dashboard.png")
        controller.shutdown()
        app.quit()

    QTimer.singleShot(6000, main_shot)
    QTimer.singleShot(12000, dash_shot)
