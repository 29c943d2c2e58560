"""``main.py config show|path``: the effective settings and where each value came from."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backend.errors import UsageError


def run_config(args) -> int:
    """Entry of ``main.py config``; returns the exit code."""
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
        sys.stdout.write(format_effective(load_settings(cfg, env=os.environ)))
        return 0
    except UsageError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()] or ["unknown error"]
        sys.stderr.write("".join(f"ptim: error: {ln}\n" for ln in lines))
        return exc.exit_code
