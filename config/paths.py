"""Where the user's settings, logs and reports live.

Nothing here creates folders: the writers (settings save, log setup, error reports) do that
when they first write.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "PlayaTewsIdentityMasker"
USERDATA_ENV = "PTIM_USERDATA_DIR"
CACHE_ENV = "PTIM_CACHE_DIR"
CONFIG_FILE_NAME = "config.yaml"


def user_data_dir(
    override: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> Path:
    """The userdata folder: ``override``, else ``$PTIM_USERDATA_DIR``, else the platform's.

    The platform folder is ``platformdirs.user_data_dir("PlayaTewsIdentityMasker")``
    (``~/.local/share/PlayaTewsIdentityMasker`` on Linux). ``~`` is expanded; an empty
    override or environment value counts as unset. ``env`` defaults to ``os.environ``.
    """
    if override is not None and str(override).strip():
        return Path(override).expanduser()
    value = (os.environ if env is None else env).get(USERDATA_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    # Imported here so that `main.py --help` stays stdlib-only.
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_cache_dir(*, env: Mapping[str, str] | None = None) -> Path:
    """Where derived files (the int8 detector model) are cached: ``$PTIM_CACHE_DIR``, else
    ``platformdirs.user_cache_dir("PlayaTewsIdentityMasker")`` (``~/.cache/...`` on Linux).

    Shared by every userdata folder: what is cached is derived from installed packages only.
    """
    value = (os.environ if env is None else env).get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_config_path(data_dir: str | Path) -> Path:
    """The user's settings file inside ``data_dir``: ``<data_dir>/config.yaml``."""
    return Path(data_dir) / CONFIG_FILE_NAME
