"""Settings: schema, layered loading (defaults < file < env < flags), saving, hot reload.

No Qt here: listeners are plain callables and the GUI marshals them to its own thread.
"""

from config.manager import (
    SEED_ENV,
    ConfigError,
    ConfigManager,
    LoadedConfig,
    flat_settings,
    format_effective,
    load_settings,
    needs_restart,
    save_user_settings,
    setting_keys,
)
from config.paths import user_cache_dir, user_config_path, user_data_dir
from config.schema import Settings, parse_size

__all__ = [
    "SEED_ENV",
    "ConfigError",
    "ConfigManager",
    "LoadedConfig",
    "Settings",
    "flat_settings",
    "format_effective",
    "load_settings",
    "needs_restart",
    "parse_size",
    "save_user_settings",
    "setting_keys",
    "user_cache_dir",
    "user_config_path",
    "user_data_dir",
]
