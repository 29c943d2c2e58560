"""``main.py config show|path``: the effective settings and where each value came from."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from config.errors import UsageError
from config.schema import Settings


def run_config(args, describe: Callable[[Settings], str] | None = None) -> int:
    """Entry of ``main.py config``; returns the exit code.

    ``describe(settings)``, when given, adds lines that the caller derives from the
    settings (the detection schedule that runs, and why) after the keys.
    """
    from config.manager import format_effective, load_settings
    from config.paths import user_config_path, user_data_dir

    try:
        data_dir = user_data_dir(getattr(args, "userdata_dir", None))
        if args.action == "path":
            print(user_config_path(data_dir))
            return 0
        if args.config:
            cfg: Path | None = Path(args.config)
            if not cfg.is_file():
                raise UsageError(f"{cfg}: config file not found")
        else:
            cfg = user_config_path(data_dir)
            cfg = cfg if cfg.is_file() else None
        loaded = load_settings(cfg, env=os.environ)
        sys.stdout.write(format_effective(loaded))
        if describe is not None:
            sys.stdout.write(describe(loaded.settings).rstrip("\n") + "\n")
        return 0
    except UsageError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()] or ["unknown error"]
        sys.stderr.write("".join(f"ptim: error: {ln}\n" for ln in lines))
        return exc.exit_code
