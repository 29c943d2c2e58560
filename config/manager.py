"""Settings layers, environment names, saving and hot reload.

Layers, later wins: defaults (config/schema.py) < the user's YAML file < ``PTIM_*``
environment < command-line flags. Every problem becomes one line of a ``ConfigError``
that names where the value came from, the key, the value and what is allowed, e.g.
``config.yaml: mask.scale = 9.0: must be <= 3.0 (allowed: a number from 0.5 to 3.0)``.

Environment names:

- the four seed names are public API: ``PTIM_GPU_MEMORY_POOL_SIZE``, ``PTIM_MAX_WORKERS``,
  ``PTIM_TARGET_FPS``, ``PTIM_MODEL_QUALITY`` (see ``SEED_ENV``);
- ``PTIM_<SECTION>__<KEY>`` sets any key, e.g. ``PTIM_MASK__TYPE=solid``. Values are YAML
  scalars (``yaml.safe_load``), so ``0.6``, ``true`` and ``[0, 0, 255]`` work; text keys
  (strings and choices) take the raw string, so ``PTIM_UI__SOURCE=no`` stays ``"no"``;
- a ``PTIM_`` name containing ``__`` is reserved for settings: an unknown one is an error;
- any other ``PTIM_`` name (``PTIM_USERDATA_DIR``, ``PTIM_FAULTS``, ...) is not a setting and
  is ignored; a near-miss of a seed name is logged as a warning;
- a seed name and its generic name both set is an error (which one wins would be a guess).

The file layer is validated on its own as well as merged, so a broken file is reported
even where the environment hides the bad value.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from config.errors import ConfigError, RecoveryLog
from config.paths import user_config_path
from config.schema import Settings

log = logging.getLogger("ptim.config")

ENV_PREFIX = "PTIM_"

SEED_ENV: Mapping[str, str] = MappingProxyType({
    "PTIM_GPU_MEMORY_POOL_SIZE": "performance.gpu_memory_pool_size_mb",
    "PTIM_MAX_WORKERS": "performance.max_processing_workers",
    "PTIM_TARGET_FPS": "performance.target_fps",
    "PTIM_MODEL_QUALITY": "quality.model_quality",
})
"""The seed's environment names (public API) and the dotted key each one sets."""

DEBOUNCE_S = 0.25
"""Quiet time after the last file event before the file is read again."""

MAX_DELAY_S = 1.0
"""Longest a reload waits while events keep coming (a file rewritten non-stop)."""

CHANGE_SOURCE = "change"
"""Source label of values passed to ``ConfigManager.update`` in its error lines."""

_FILE_HEADER = (
    "# PlayaTews Identity Masker user settings, written by the app.\n"
    "# Only values that differ from the defaults are kept; comments are not preserved.\n"
    "# Every key, its default and what it allows: config/default.yaml in the app.\n"
)

Listener = Callable[[Settings, "str | None"], None]
"""``callback(settings, error)``: error is None, or the problem lines of a rejected reload."""


@dataclass(frozen=True)
class LoadedConfig:
    """The effective settings and where each value came from.

    ``sources`` maps every dotted key to ``"default"``, the config file's path,
    ``"env PTIM_X"`` or ``"flag --x"``.
    """

    settings: Settings
    sources: dict[str, str]
    config_file: Path | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One value of one layer: the value, where it came from, how to show it in errors."""

    value: Any
    source: str
    shown: str


_Layer = dict[str, _Entry]

_SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation for name, info in Settings.model_fields.items()  # type: ignore[misc]
}
_FIELDS: dict[str, FieldInfo] = {
    f"{sec}.{key}": info for sec, model in _SECTIONS.items()
    for key, info in model.model_fields.items()
}


def setting_keys() -> list[str]:
    """Every dotted key (``section.key``) in schema order."""
    return list(_FIELDS)


def flat_settings(settings: Settings) -> dict[str, Any]:
    """Settings as ``{dotted_key: value}`` in schema order."""
    return {key: getattr(getattr(settings, key.split(".", 1)[0]), key.split(".", 1)[1])
            for key in _FIELDS}


def needs_restart(old: Settings, new: Settings) -> list[str]:
    """Dotted keys in ``ConfigManager.RESTART_KEYS`` whose values differ, sorted."""
    a, b = flat_settings(old), flat_settings(new)
    return sorted(k for k in ConfigManager.RESTART_KEYS if a[k] != b[k])


# ---------------------------------------------------------------------------- messages

def _show(value: Any) -> str:
    """A value as a user would write it: strings quoted, YAML words for bool and null."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _kind(value: Any) -> str:
    """A YAML-level name for a value's type, for 'got a list' style messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def _is_text(annotation: Any) -> bool:
    """True for str and for Literal choices of strings (env values stay raw for these)."""
    if annotation is str:
        return True
    args = get_args(annotation)
    return get_origin(annotation) is Literal and all(isinstance(a, str) for a in args)


def _describe(key: str) -> str:
    """What a key allows, in words: 'a number from 0.5 to 3.0', 'one of: a, b'."""
    info = _FIELDS[key]
    ann = info.annotation
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    rng = f" from {lo} to {hi}" if lo is not None and hi is not None else ""
    if ann is bool:
        return "true or false"
    if ann is int:
        return "a whole number" + rng
    if ann is float:
        return "a number" + rng
    if get_origin(ann) is Literal:
        return "one of: " + ", ".join(str(a) for a in get_args(ann))
    if get_origin(ann) is tuple:
        return f"a list of {len(get_args(ann))} whole numbers such as {_show(info.default)}"
    return "text (quote it if it looks like a number or true/false)"


def _unknown(source: str, key: str) -> str | None:
    """The error line for a dotted key the schema lacks, or None when it exists."""
    sec, _, name = key.partition(".")
    if sec not in _SECTIONS:
        return f"{source}: {key}: unknown section {sec!r} (allowed: {', '.join(_SECTIONS)})"
    if name not in _SECTIONS[sec].model_fields:
        allowed = ", ".join(_SECTIONS[sec].model_fields)
        return f"{source}: {key}: unknown key (allowed: {allowed})"
    return None


_RANGE_OPS = {
    "less_than_equal": "<=", "less_than": "<", "greater_than_equal": ">=", "greater_than": ">",
}


def _explain(err: Mapping[str, Any], key: str) -> str:
    """Turn one pydantic error into 'must be ...' words with what is allowed."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _RANGE_OPS and key in _FIELDS:
        bound = next(iter(ctx.values()), "?")
        return f"must be {_RANGE_OPS[kind]} {bound} (allowed: {_describe(key)})"
    if kind == "value_error":
        msg = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        # Text and choice validators already list what is allowed; numbers do not.
        if key in _FIELDS and not _is_text(_FIELDS[key].annotation):
            msg += f" (allowed: {_describe(key)})"
        return msg
    if key in _FIELDS and (
        kind.endswith(("_type", "_parsing"))
        or kind in ("literal_error", "int_from_float", "missing", "too_short", "too_long",
                    "finite_number")
    ):
        return f"must be {_describe(key)}"
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:]


# ---------------------------------------------------------------------------- layers

def _read_bytes(path: Path, required: bool) -> tuple[bytes, str | None]:
    """The file's bytes (missing = empty unless required) and a read problem, if any."""
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return b"", (f"{path}: config file not found" if required else None)
    except OSError as exc:
        return b"", f"{path}: cannot read: {exc.strerror or exc}"


def _parse_file(path: Path, data: bytes) -> tuple[_Layer, list[str]]:
    """A file's bytes as a layer; problems are lines naming the file, key and value."""
    label = str(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return {}, [f"{label}: not UTF-8 text (bad byte at offset {exc.start})"]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return {}, [f"{label}: not valid YAML: {_yaml_reason(exc)}"]
    if doc is None:  # empty file, or comments only
        return {}, []
    if not isinstance(doc, dict):
        return {}, [f"{label}: must be a mapping of sections ({', '.join(_SECTIONS)}), "
                    f"got {_kind(doc)}"]
    layer: _Layer = {}
    problems: list[str] = []
    for sec, body in doc.items():
        sec = str(sec)
        if sec not in _SECTIONS:
            problems.append(_unknown(label, sec) or "")
            continue
        if body is None:  # a section whose keys are all commented out
            continue
        if not isinstance(body, dict):
            allowed = ", ".join(_SECTIONS[sec].model_fields)
            problems.append(f"{label}: {sec} = {_show(body)}: must be a mapping of keys "
                            f"(allowed: {allowed}), got {_kind(body)}")
            continue
        for name, value in body.items():
            key = f"{sec}.{name}"
            problem = _unknown(label, key)
            if problem:
                problems.append(problem)
            else:
                layer[key] = _Entry(value, label, _show(value))
    return layer, problems


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """One line: the parser's problem and where (line and column are 1-based)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def _env_layer(env: Mapping[str, str]) -> tuple[_Layer, list[str]]:
    """``PTIM_*`` variables as a layer; see the module docstring for the names."""
    layer: _Layer = {}
    problems: list[str] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        raw = env[name]
        if name in SEED_ENV:
            key = SEED_ENV[name]
        elif "__" in name:
            sec, _, rest = name[len(ENV_PREFIX):].partition("__")
            key = f"{sec.lower()}.{rest.lower()}"
        else:
            close = difflib.get_close_matches(name, list(SEED_ENV), n=1, cutoff=0.85)
            if close:
                log.warning("environment %s is not a setting; did you mean %s?", name, close[0])
            continue
        label = f"env {name}"
        problem = _unknown(label, key)
        if problem:
            problems.append(problem)
            continue
        if key in layer:
            problems.append(f"{label}: {key} is also set by {layer[key].source}; set only one")
            continue
        layer[key] = _Entry(_env_value(key, raw), label, repr(raw))
    return layer, problems


def _env_value(key: str, raw: str) -> Any:
    """An env string as a value: YAML scalar for numbers, bools and lists; raw for text."""
    if _is_text(_FIELDS[key].annotation):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # validation then says what the key allows


def _flag_layer(
    overrides: Mapping[str, Any] | None, labels: Mapping[str, str] | None
) -> tuple[_Layer, list[str]]:
    """CLI overrides ``{dotted_key: value}`` as a layer; None values mean 'not given'."""
    layer: _Layer = {}
    problems: list[str] = []
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        label = f"flag {(labels or {}).get(key) or '--' + key}"
        problem = _unknown(label, key)
        if problem:
            problems.append(problem)
        else:
            layer[key] = _Entry(value, label, _show(value))
    return layer, problems


def _validate(layers: Iterable[_Layer]) -> tuple[Settings | None, dict[str, _Entry], list[str]]:
    """Merge layers (later wins) and validate; problems name each value's own source."""
    merged: dict[str, _Entry] = {}
    for layer in layers:
        merged.update(layer)
    nested: dict[str, dict[str, Any]] = {}
    for key, entry in merged.items():
        sec, name = key.split(".", 1)
        nested.setdefault(sec, {})[name] = entry.value
    try:
        return Settings.model_validate(nested), merged, []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if isinstance(p, str)]
            key = ".".join(loc[:2])
            entry = merged.get(key)
            source = entry.source if entry else "default"
            shown = f" = {entry.shown}" if entry else ""
            problems.append(f"{source}: {key}{shown}: {_explain(err, key)}")
        return None, merged, problems


def _resolve(
    file_layer: _Layer, env_layer: _Layer, flag_layer: _Layer, problems: list[str],
    config_file: Path | None,
) -> tuple[LoadedConfig, Settings]:
    """Validate the file alone and all layers merged; (effective, file-only) settings."""
    problems = list(problems)
    file_settings, _, file_problems = _validate([file_layer])
    problems += file_problems
    settings, merged, merged_problems = _validate([file_layer, env_layer, flag_layer])
    problems += merged_problems
    if problems or settings is None or file_settings is None:
        raise ConfigError(problems or ["settings are invalid"])
    sources = {k: (merged[k].source if k in merged else "default") for k in _FIELDS}
    return LoadedConfig(settings, sources, config_file), file_settings


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
    *,
    override_labels: Mapping[str, str] | None = None,
    required: bool = False,
) -> LoadedConfig:
    """Build the effective settings: defaults < ``config_file`` < ``env`` < ``overrides``.

    ``overrides`` maps dotted keys to values (``{"mask.type": "solid"}``); None values are
    skipped (an argparse flag not given). ``override_labels`` maps a dotted key to the flag
    that set it (``{"mask.type": "--mask"}``) for sources and errors; the default label is
    ``--<dotted key>``. A missing ``config_file`` counts as empty unless ``required``.
    Raises ConfigError listing every problem, one line each.
    """
    problems: list[str] = []
    file_layer: _Layer = {}
    path = Path(config_file) if config_file is not None else None
    if path is not None:
        data, read_problem = _read_bytes(path, required)
        if read_problem:
            problems.append(read_problem)
        else:
            file_layer, file_problems = _parse_file(path, data)
            problems += file_problems
    env_layer, env_problems = _env_layer(env)
    flag_layer, flag_problems = _flag_layer(overrides, override_labels)
    loaded, _ = _resolve(file_layer, env_layer, flag_layer,
                         problems + env_problems + flag_problems, path)
    return loaded


def format_effective(loaded: LoadedConfig) -> str:
    """Every dotted key, its value and its source, in aligned columns (``config show``)."""
    values = flat_settings(loaded.settings)
    shown = {k: _show(v) for k, v in values.items()}
    kw = max(len(k) for k in values)
    vw = max(len(v) for v in shown.values())
    return "\n".join(
        f"{k:<{kw}}  {shown[k]:<{vw}}  {loaded.sources.get(k, 'default')}" for k in values
    ) + "\n"


# ---------------------------------------------------------------------------- saving

def _content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def user_settings_yaml(settings: Settings, env_keys_to_skip: Iterable[str] = ()) -> str:
    """The text ``save_user_settings`` writes: a header and the non-default values."""
    skip = set(env_keys_to_skip)
    defaults = flat_settings(Settings())
    current = flat_settings(settings)
    as_json = settings.model_dump(mode="json")  # tuples become lists: safe_dump needs them
    data: dict[str, dict[str, Any]] = {}
    for key, value in current.items():
        if key in skip or value == defaults[key]:
            continue
        sec, name = key.split(".", 1)
        data.setdefault(sec, {})[name] = as_json[sec][name]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None,
                          allow_unicode=True) if data else ""
    return _FILE_HEADER + body


def save_user_settings(
    path: Path, settings: Settings, env_keys_to_skip: Iterable[str] = ()
) -> str:
    """Write the values of ``settings`` that differ from the defaults to ``path``, atomically.

    Keys in ``env_keys_to_skip`` are never written (values that came from the environment
    or flags must not leak into the file). Nothing else of the old file is preserved:
    comments, key order and values equal to the defaults are dropped. The write goes to a
    temporary file in the same folder, is fsynced, keeps the old file's permission bits and
    replaces the file with ``os.replace`` (through a symlink, its target is replaced).
    Returns the SHA-256 of the bytes written (the hot reloader uses it to spot its own saves).
    """
    payload = user_settings_yaml(settings, env_keys_to_skip).encode("utf-8")
    _atomic_write(Path(path), payload)
    return _content_hash(payload)


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write via temp + fsync + os.replace so readers see the old or the new file, never half."""
    target = Path(os.path.realpath(path))  # keep a dotfiles symlink a symlink
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    # A new file gets 0o666 minus the umask, like any other file the user creates.
    fd = os.open(tmp, flags, 0o600 if mode is not None else 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        for attempt in range(5):
            try:
                os.replace(tmp, target)
                break
            except PermissionError:
                # Windows refuses while a reader (antivirus, editor) holds the file open.
                if os.name != "nt" or attempt == 4:
                    raise
                time.sleep(0.05)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name != "nt":  # make the rename itself durable
        with contextlib.suppress(OSError):
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


# ---------------------------------------------------------------------------- manager

class ConfigManager:
    """The app's live settings: layered, validated, saved, and reloaded when the file changes.

    ``settings`` is a frozen snapshot; a change builds a new one and swaps the reference, so
    a reader (the pipeline, once per frame) never sees a half-applied change.

    Threads: listeners are called on the thread that caused the change, which is the caller
    of ``update``/``reload``, or the ``ptim-config-reload`` thread for file edits. That is
    never assumed to be the GUI thread: a Qt listener must hand the call over (a queued
    signal) and must not block waiting for another thread. Listeners run one at a time,
    in subscription order, and see changes in the order they were applied.

    A value changed with ``update`` also releases an environment or flag pin on that key for
    the rest of this session: the user's latest explicit choice wins, and it is saved to the
    file (the environment wins again at the next start if it is still set).
    """

    RESTART_KEYS: ClassVar[frozenset[str]] = frozenset({
        "performance.max_processing_workers", "detector.provider", "detector.model_path",
        "detector.precision",
    })
    """Keys whose new value only takes effect after a restart."""

    def __init__(
        self,
        data_dir: str | Path,
        env: Mapping[str, str] = os.environ,
        overrides: Mapping[str, Any] | None = None,
        *,
        config_file: str | Path | None = None,
        override_labels: Mapping[str, str] | None = None,
        stats: RecoveryLog | None = None,
        tolerate_bad_file: bool = False,
    ) -> None:
        """Load the settings now; raises ConfigError if the file, env or flags are invalid.

        The settings file is ``config_file``, else ``<data_dir>/config.yaml`` (missing =
        defaults). ``env`` is read once, here. With ``tolerate_bad_file`` (the desktop app)
        an invalid file does not raise: the manager starts from defaults < env < flags,
        ``last_error`` says why, the file is not overwritten by saves, and fixing the file
        applies it on the next reload. Invalid env or flags always raise. A rejected
        reload is counted in ``stats`` (``backend.errors.ErrorStats`` or alike) when given.
        """
        self._path = Path(config_file) if config_file is not None else user_config_path(data_dir)
        self._stats = stats
        env_layer, env_problems = _env_layer(env)
        flag_layer, flag_problems = _flag_layer(overrides, override_labels)
        data, read_problem = _read_bytes(self._path, required=False)
        file_layer, file_problems = _parse_file(self._path, data) if not read_problem else ({}, [])
        problems = env_problems + flag_problems + file_problems
        problems += [read_problem] if read_problem else []
        last_error: str | None = None
        try:
            loaded, _ = _resolve(file_layer, env_layer, flag_layer, problems, self._path)
        except ConfigError as exc:
            if not tolerate_bad_file or env_problems or flag_problems:
                raise
            loaded, _ = _resolve({}, env_layer, flag_layer, [], self._path)
            file_layer, last_error = {}, str(exc)

        self._lock = threading.RLock()  # serialises apply + save + notify
        self._env_layer = env_layer
        self._flag_layer = flag_layer
        self._file_layer = file_layer
        self._loaded = loaded
        self._disk_hash = _content_hash(data)  # what the file held when last read or written
        self._disk_invalid = last_error is not None
        self._listeners: list[Listener] = []
        self.last_error: str | None = last_error
        """The problem lines of the last rejected reload or failed save; None once fixed."""

        self._watch_lock = threading.Lock()
        self._cond = threading.Condition()
        self._first_event: float | None = None
        self._last_event = 0.0
        self._stopping = False
        self._observer: Any = None
        self._worker: threading.Thread | None = None

    # -- snapshot -------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The current frozen settings snapshot."""
        return self._loaded.settings

    @property
    def sources(self) -> dict[str, str]:
        """Where each effective value came from (see ``LoadedConfig.sources``)."""
        return dict(self._loaded.sources)

    @property
    def loaded(self) -> LoadedConfig:
        """Settings and sources as one consistent snapshot (for ``format_effective``)."""
        return self._loaded

    @property
    def config_file(self) -> Path:
        """The user's settings file this manager reads and writes."""
        return self._path

    @classmethod
    def needs_restart(cls, old: Settings, new: Settings) -> list[str]:
        """Keys in ``RESTART_KEYS`` whose values differ between two snapshots, sorted."""
        return needs_restart(old, new)

    # -- listeners ------------------------------------------------------------------------

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(settings, error)`` after each change; returns an unsubscribe.

        ``error`` is None for an applied change, or the problem lines when a reload was
        rejected or a save failed (``settings`` is then the snapshot still in use).
        """
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def _notify(self, settings: Settings, error: str | None) -> None:
        for callback in list(self._listeners):
            try:
                callback(settings, error)
            except Exception:
                # One broken listener must not stop the others or the reload thread.
                log.exception("settings listener %r failed", callback)

    # -- changes --------------------------------------------------------------------------

    def update(self, changes: Mapping[str, Any]) -> Settings:
        """Validate ``{dotted_key: value}``, swap the snapshot, save the file, notify.

        Raises ConfigError (nothing changes) when a key is unknown or a value is invalid.
        While the file on disk has errors (a rejected reload) the change applies but is not
        saved, so the user's unfinished edit is not overwritten; ``last_error`` says so.
        """
        with self._lock:
            problems = [p for k in changes if (p := _unknown(CHANGE_SOURCE, k))]
            if problems:
                raise ConfigError(problems)
            trial = dict(self._file_layer)
            trial.update({k: _Entry(v, CHANGE_SOURCE, _show(v)) for k, v in changes.items()})
            env_layer = {k: e for k, e in self._env_layer.items() if k not in changes}
            flag_layer = {k: e for k, e in self._flag_layer.items() if k not in changes}
            loaded, file_settings = _resolve(trial, env_layer, flag_layer, [], self._path)
            label = str(self._path)
            self._file_layer = {k: (_Entry(e.value, label, e.shown) if k in changes else e)
                                for k, e in trial.items()}
            self._env_layer, self._flag_layer = env_layer, flag_layer
            sources = {k: (label if k in changes else s) for k, s in loaded.sources.items()}
            self._loaded = LoadedConfig(loaded.settings, sources, self._path)
            error = self._save(file_settings)
            self.last_error = error
            self._notify(loaded.settings, error)
            return loaded.settings

    def _save(self, file_settings: Settings) -> str | None:
        """Write the file layer; returns an error line instead of raising."""
        if self._disk_invalid:
            return (f"{self._path}: change not saved: the file has errors; fix them and the "
                    "file's values apply")
        pinned = (set(self._env_layer) | set(self._flag_layer)) - set(self._file_layer)
        try:
            self._disk_hash = save_user_settings(self._path, file_settings, pinned)
        except OSError as exc:
            log.warning("could not save settings to %s: %s", self._path, exc)
            return f"{self._path}: could not save settings: {exc.strerror or exc}"
        return None

    def reload(self) -> None:
        """Read the file again now and apply it if it changed (the watcher calls this).

        An unchanged file (same content hash: e.g. this manager's own save) does nothing.
        An invalid file keeps the current snapshot, sets ``last_error`` and notifies
        listeners with the error; environment and flags still win over the file.
        """
        with self._lock:
            data, read_problem = _read_bytes(self._path, required=False)
            digest = _content_hash(data) if not read_problem else f"unreadable:{read_problem}"
            if digest == self._disk_hash:
                return
            self._disk_hash = digest
            try:
                if read_problem:
                    raise ConfigError([read_problem])
                file_layer, problems = _parse_file(self._path, data)
                loaded, _ = _resolve(file_layer, self._env_layer, self._flag_layer, problems,
                                     self._path)
            except ConfigError as exc:
                self._disk_invalid = True
                self.last_error = str(exc)
                if self._stats is not None:
                    self._stats.record("config", "fallback", "config reload",
                                       exc.problems[0] if exc.problems else "invalid")
                self._notify(self._loaded.settings, self.last_error)
                return
            self._disk_invalid = False
            changed = loaded.settings != self._loaded.settings
            had_error = self.last_error is not None
            self._file_layer = file_layer
            self._loaded = loaded
            self.last_error = None
            if changed or had_error:
                self._notify(loaded.settings, None)

    # -- hot reload -----------------------------------------------------------------------

    @property
    def is_watching(self) -> bool:
        """True between ``start_watching`` and ``stop_watching``."""
        return self._observer is not None

    def start_watching(self) -> None:
        """Reload the file when it changes (watchdog on its folder, debounced ~250 ms).

        The folder is watched rather than the file because editors save by writing a new
        file and renaming it over the old one. The folder is created if missing. Calling
        it twice is harmless.
        """
        from watchdog.observers import Observer

        with self._watch_lock:
            if self._observer is not None:
                return
            real = Path(os.path.realpath(self._path))
            targets = frozenset(_norm(p) for p in (self._path, real))
            folders = {_norm(self._path.parent), _norm(real.parent)}
            for folder in folders:
                Path(folder).mkdir(parents=True, exist_ok=True)
            with self._cond:
                self._stopping = False
                self._first_event = None
            observer = Observer()
            observer.daemon = True
            handler = _FileEvents(targets, self._on_file_event)
            try:
                for folder in folders:
                    observer.schedule(handler, folder, recursive=False)
                observer.start()
            except BaseException:
                # Observer() already runs an inotify reader thread; stop it on failure.
                with contextlib.suppress(Exception):
                    observer.on_thread_stop()
                raise
            worker = threading.Thread(target=self._reload_loop, name="ptim-config-reload",
                                      daemon=True)
            worker.start()
            self._observer, self._worker = observer, worker
        self._on_file_event()  # catch an edit made between loading and watching

    def stop_watching(self) -> None:
        """Stop watching and join the watcher and reload threads. Harmless when not watching.

        Called from a listener on the reload thread, it does not join that thread (which
        ends as soon as the listener returns).
        """
        with self._watch_lock:
            observer, worker = self._observer, self._worker
            self._observer = self._worker = None
        if observer is None:
            return
        observer.stop()
        observer.join()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def close(self) -> None:
        """Stop watching (the settings stay usable)."""
        self.stop_watching()

    def _on_file_event(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self._first_event is None:
                self._first_event = now
            self._last_event = now
            self._cond.notify_all()

    def _reload_loop(self) -> None:
        """Wait for events, then for DEBOUNCE_S of quiet (at most MAX_DELAY_S), then reload."""
        while True:
            with self._cond:
                while self._first_event is None and not self._stopping:
                    self._cond.wait()
                while not self._stopping:
                    assert self._first_event is not None
                    due = min(self._last_event + DEBOUNCE_S, self._first_event + MAX_DELAY_S)
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    return
                self._first_event = None
            try:
                self.reload()
            except Exception:
                log.exception("settings reload failed")


def _norm(path: str | os.PathLike[str] | bytes) -> str:
    """A path in the form used to compare watchdog's paths with ours."""
    return os.path.normcase(os.path.abspath(os.fsdecode(path)))


class _FileEvents:
    """A watchdog handler (duck-typed) that reports events touching the settings file only."""

    _ignored: ClassVar[frozenset[str]] = frozenset({"opened", "closed_no_write"})

    def __init__(self, targets: frozenset[str], callback: Callable[[], None]) -> None:
        self.targets = targets
        self.callback = callback

    def dispatch(self, event: Any) -> None:
        """Watchdog's entry point: call back when the event names the settings file."""
        if event.is_directory or event.event_type in self._ignored:
            return
        paths = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(p and _norm(p) in self.targets for p in paths):
            self.callback()
