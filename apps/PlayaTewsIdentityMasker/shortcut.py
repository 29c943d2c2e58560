"""``main.py install-shortcut``: a desktop launcher that starts the app."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def desktop_entry(python: str, main_py: Path, icon: Path, userdata_dir: str | None) -> str:
    """The text of a freedesktop .desktop launcher for the app."""
    cmd = [python, str(main_py), "run", "PlayaTewsIdentityMasker"]
    if userdata_dir:
        cmd += ["--userdata-dir", userdata_dir]
    exec_line = " ".join(shlex.quote(c) for c in cmd)
    template = (ROOT / "resources" / "ptim.desktop.in").read_text(encoding="utf-8")
    return template.replace("@EXEC@", exec_line).replace("@ICON@", str(icon))


def install_shortcut(args) -> int:
    """Write the launcher (Linux .desktop; a .bat on Windows); returns the exit code."""
    dest = Path(args.dest).expanduser() if args.dest else None
    icon = ROOT / "resources" / "icon.png"
    if sys.platform == "win32":
        dest = dest or Path(os.environ.get("USERPROFILE", Path.home())) / "Desktop"
        path = dest / "PlayaTews Identity Masker.bat"
        main_py = ROOT / "main.py"
        text = f'@echo off\r\n"{sys.executable}" "{main_py}" run PlayaTewsIdentityMasker\r\n'
    else:
        data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
        dest = dest or data_home / "applications"
        path = dest / "playatews-identity-masker.desktop"
        text = desktop_entry(sys.executable, ROOT / "main.py", icon, args.userdata_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.ptim-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(path)
    except OSError as exc:
        sys.stderr.write(f"ptim: error: {path}: cannot write the launcher: {exc.strerror or exc}\n")
        return 4
    print(f"launcher written: {path}")
    return 0
