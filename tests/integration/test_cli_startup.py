"""The CLI answers --help without importing heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["cv2", "onnxruntime", "PyQt6", "numpy", "av", "onnx", "pydantic", "yaml"]


def test_help_imports_no_heavy_module():
    code = (
        "import sys, runpy, io, contextlib\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    for argv in (['--help'], ['process', '--help']):\n"
        "        try:\n"
        "            main.main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"print(__import__('json').dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_help_lists_commands_and_exit_codes():
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("process", "run", "config", "install-shortcut", "exit codes"):
        assert word in out.stdout


def test_unknown_flag_is_usage_error_one_line():
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "process", "x.mp4", "--bogus"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "--bogus" in out.stderr


def test_process_help_states_the_schemas_defaults():
    """The help's defaults are written out (the CLI imports no config at start-up): they
    must be the schema's, or a user is told a default that does not run."""
    import re

    from config.schema import DetectorSettings

    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "process", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    stated = {flag: float(v) for flag, v in
              re.findall(r"(--min-face|--fine-period) [A-Z]+ [^\[(]*\(default ([\d.]+)\)", text)}
    d = DetectorSettings()
    assert stated == {"--min-face": d.min_face_px, "--fine-period": d.fine_period}
