"""Config layers, env names, error lines, saving and the documented defaults."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from pathlib import Path

import pytest
import yaml

from backend.errors import ErrorStats, UsageError
from config import (
    ConfigError,
    ConfigManager,
    Settings,
    flat_settings,
    format_effective,
    load_settings,
    needs_restart,
    save_user_settings,
    setting_keys,
    user_config_path,
    user_data_dir,
)

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return str(exc.value).splitlines()


# ---------------------------------------------------------------------------- default.yaml

def test_default_yaml_is_exactly_the_schema_defaults() -> None:
    doc = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert Settings.model_validate(doc) == Settings()
    listed = {f"{sec}.{key}" for sec, body in doc.items() for key in body}
    assert listed == set(setting_keys())


def test_default_yaml_comments_every_key_and_section() -> None:
    lines = DEFAULT_YAML.read_text(encoding="utf-8").splitlines()
    key_re = re.compile(r"^\s*([a-z_]+):")
    seen = []
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m:
            continue
        prev = next(p for p in reversed(lines[:i]) if p.strip())
        assert prev.strip().startswith("#"), f"no comment above line {i + 1}: {line!r}"
        seen.append(m.group(1))
    assert len(seen) == len(setting_keys()) + len(Settings.model_fields)


# ---------------------------------------------------------------------------- layers

def test_later_layers_win_and_sources_say_which(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.yaml", """
mask:
  type: solid
  scale: 1.5
  shape: box
  feather: 0.2
""")
    env = {"PTIM_MASK__TYPE": "blur", "PTIM_MASK__SCALE": "2.0", "PTIM_MASK__SHAPE": "ellipse"}
    overrides = {"mask.type": "image", "mask.scale": 2.5}
    loaded = load_settings(cfg, env=env, overrides=overrides,
                           override_labels={"mask.type": "--mask"})
    m = loaded.settings.mask
    got = (m.type, m.scale, m.shape, m.feather, m.pixel_blocks)
    assert got == ("image", 2.5, "ellipse", 0.2, 8)
    assert loaded.sources["mask.type"] == "flag --mask"
    assert loaded.sources["mask.scale"] == "flag --mask.scale"
    assert loaded.sources["mask.shape"] == "env PTIM_MASK__SHAPE"
    assert loaded.sources["mask.feather"] == str(cfg)
    assert loaded.sources["mask.pixel_blocks"] == "default"
    assert set(loaded.sources) == set(setting_keys())


def test_no_file_and_missing_file_mean_defaults(tmp_path: Path) -> None:
    assert load_settings(None, env={}).settings == Settings()
    assert load_settings(tmp_path / "absent.yaml", env={}).settings == Settings()
    with pytest.raises(ConfigError, match="absent.yaml: config file not found"):
        load_settings(tmp_path / "absent.yaml", env={}, required=True)


@pytest.mark.parametrize("text", ["", "# only comments\n", "mask:\n  # type: solid\n"])
def test_empty_file_and_empty_section_mean_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path / "c.yaml", text), env={}).settings == Settings()


def test_none_overrides_are_flags_not_given() -> None:
    loaded = load_settings(None, env={}, overrides={"mask.type": None})
    assert loaded.sources["mask.type"] == "default"


# ---------------------------------------------------------------------------- environment

@pytest.mark.parametrize(
    ("name", "raw", "key", "value"),
    [
        ("PTIM_GPU_MEMORY_POOL_SIZE", "1024", "performance.gpu_memory_pool_size_mb", 1024),
        ("PTIM_MAX_WORKERS", "4", "performance.max_processing_workers", 4),
        ("PTIM_TARGET_FPS", "59.94", "performance.target_fps", 59.94),
        ("PTIM_TARGET_FPS", "60", "performance.target_fps", 60.0),
        ("PTIM_MODEL_QUALITY", "accurate", "quality.model_quality", "accurate"),
    ],
)
def test_seed_env_names(name: str, raw: str, key: str, value: object) -> None:
    loaded = load_settings(None, env={name: raw})
    got = flat_settings(loaded.settings)[key]
    assert got == value and type(got) is type(value)
    assert loaded.sources[key] == f"env {name}"


@pytest.mark.parametrize(
    ("name", "raw", "key", "value"),
    [
        ("PTIM_MASK__TYPE", "solid", "mask.type", "solid"),
        ("PTIM_DETECTOR__THRESHOLD", "0.6", "detector.threshold", 0.6),
        ("PTIM_TRACKER__HOLD_FRAMES", "12", "tracker.hold_frames", 12),
        ("PTIM_OUTPUT__KEEP_AUDIO", "true", "output.keep_audio", True),
        ("PTIM_MASK__COLOR", "[0, 0, 255]", "mask.color", (0, 0, 255)),
        ("PTIM_UI__SOURCE", "no", "ui.source", "no"),  # text stays raw: not YAML's False
        ("PTIM_DETECTOR__INPUT_SIZE", "640X360", "detector.input_size", "640x360"),
    ],
)
def test_generic_env_names(name: str, raw: str, key: str, value: object) -> None:
    loaded = load_settings(None, env={name: raw})
    assert flat_settings(loaded.settings)[key] == value
    assert loaded.sources[key] == f"env {name}"


def test_non_setting_ptim_names_are_ignored() -> None:
    env = {"PTIM_USERDATA_DIR": "/tmp/x", "PTIM_FAULTS": "camera", "PTIM_LOG": "1",
           "HOME": "/root", "ptim_mask__type": "banana"}
    assert load_settings(None, env=env).settings == Settings()


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"PTIM_TARGET_FPS": "fast"},
         ["env PTIM_TARGET_FPS", "performance.target_fps", "'fast'", "must be a number",
          "1.0 to 240.0"]),
        ({"PTIM_MASK__TYPE": "banana"},
         ["env PTIM_MASK__TYPE", "mask.type", "'banana'", "solid, pixelate, blur, image"]),
        ({"PTIM_NOPE__X": "1"},
         ["env PTIM_NOPE__X", "nope.x", "unknown section", "detector, tracker, mask"]),
        ({"PTIM_MASK__COLOUR": "1"},
         ["env PTIM_MASK__COLOUR", "mask.colour", "unknown key", "type, shape, scale"]),
        ({"PTIM_MAX_WORKERS": "3.5"},
         ["env PTIM_MAX_WORKERS", "'3.5'", "must be a whole number from 1 to 64"]),
        ({"PTIM_MAX_WORKERS": "0"}, ["'0'", "must be >= 1", "1 to 64"]),
        ({"PTIM_GPU_MEMORY_POOL_SIZE": ""}, ["PTIM_GPU_MEMORY_POOL_SIZE", "''", "whole number"]),
        ({"PTIM_TARGET_FPS": "30", "PTIM_PERFORMANCE__TARGET_FPS": "25"},
         ["PTIM_TARGET_FPS", "PTIM_PERFORMANCE__TARGET_FPS", "set only one"]),
    ],
)
def test_garbage_env_is_rejected_with_key_value_and_allowed(
    env: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env=env)
    assert len(problems(exc)) == 1
    for fragment in fragments:
        assert fragment in str(exc.value)


def test_every_problem_is_reported_one_line_each() -> None:
    env = {"PTIM_TARGET_FPS": "fast", "PTIM_MASK__TYPE": "banana", "PTIM_NOPE__X": "1"}
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env=env)
    lines = problems(exc)
    assert len(lines) == 3
    assert {ln.split(":")[0] for ln in lines} == {
        "env PTIM_TARGET_FPS", "env PTIM_MASK__TYPE", "env PTIM_NOPE__X"}
    assert isinstance(exc.value, UsageError) and exc.value.exit_code == 2


# ---------------------------------------------------------------------------- file errors

@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("mask:\n  scale: 9.0\n", ["mask.scale = 9.0", "must be <= 3.0", "0.5 to 3.0"]),
        ("mask:\n  scale: 0.1\n", ["mask.scale = 0.1", "must be >= 0.5"]),
        ("mask:\n  colour: [0, 0, 255]\n",
         ["mask.colour", "unknown key", "allowed: type, shape, scale, color"]),
        ("masks:\n  type: solid\n", ["masks", "unknown section", "allowed: detector"]),
        ("mask:\n  type: banana\n", ["mask.type = 'banana'", "one of: solid, pixelate"]),
        ("performance:\n  target_fps: fast\n",
         ["performance.target_fps = 'fast'", "must be a number from 1.0 to 240.0"]),
        ("performance:\n  max_processing_workers: yes\n",
         ["performance.max_processing_workers = true", "not true/false", "whole number"]),
        ("output:\n  crf: 2.5\n", ["output.crf = 2.5", "whole number from 0 to 51"]),
        ("output:\n  preset: turbo\n", ["output.preset = 'turbo'", "veryfast"]),
        ("output:\n  keep_audio: maybe\n", ["output.keep_audio = 'maybe'", "true or false"]),
        ("mask:\n  color: red\n", ["mask.color = 'red'", "list of 3 whole numbers"]),
        ("mask:\n  color: [0, 0, 300]\n", ["mask.color = [0, 0, 300]", "between 0 and 255"]),
        ("detector:\n  input_size: huge\n", ["detector.input_size = 'huge'", "WIDTHxHEIGHT"]),
        ("ui:\n  source: 5\n", ["ui.source = 5", "text"]),
        ("mask: solid\n", ["mask = 'solid'", "must be a mapping", "allowed: type, shape"]),
        ("mask:\n  type: [solid\n", ["not valid YAML", "line 3"]),
        ("mask:\n  scale: 1\n\ttype: solid\n", ["not valid YAML", "line 3"]),
        ("- mask\n- solid\n", ["must be a mapping of sections", "got a list"]),
        ("just text\n", ["must be a mapping of sections", "got text"]),
    ],
)
def test_bad_file_names_file_key_value_and_allowed(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    cfg = write(tmp_path / "config.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    for line in problems(exc):
        assert line.startswith(f"{cfg}: ")
    for fragment in fragments:
        assert fragment in str(exc.value)


def test_file_with_several_problems_lists_all(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.yaml",
                "mask:\n  scale: 9.0\n  colour: 1\n  type: banana\nnope: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert len(problems(exc)) == 4


def test_bad_file_value_is_reported_even_when_env_overrides_it(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.yaml", "performance:\n  target_fps: 999\n")
    with pytest.raises(ConfigError, match=r"config.yaml: performance.target_fps = 999"):
        load_settings(cfg, env={"PTIM_TARGET_FPS": "30"})


def test_not_utf8_and_unreadable(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(b"mask:\n  type: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(cfg, env={})
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(folder, env={})


def test_unknown_flag_key() -> None:
    with pytest.raises(ConfigError, match=r"flag --mask.colour: mask.colour: unknown key"):
        load_settings(None, env={}, overrides={"mask.colour": 1})
    with pytest.raises(ConfigError, match=r"flag --scale: mask.scale = 7.0: must be <= 3.0"):
        load_settings(None, env={}, overrides={"mask.scale": 7.0},
                      override_labels={"mask.scale": "--scale"})


# ---------------------------------------------------------------------------- show

def test_format_effective_lists_every_key_aligned(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.yaml", "mask:\n  type: solid\n")
    loaded = load_settings(cfg, env={"PTIM_TARGET_FPS": "25"})
    lines = format_effective(loaded).splitlines()
    assert [ln.split()[0] for ln in lines] == setting_keys()
    by_key = {ln.split()[0]: ln for ln in lines}
    assert by_key["mask.type"].split()[1:] == ["'solid'", str(cfg)]
    assert by_key["performance.target_fps"].split()[1:] == ["25.0", "env", "PTIM_TARGET_FPS"]
    assert by_key["mask.color"].endswith("default")
    value_cols = {ln.index(ln.split()[1], len(ln.split()[0])) for ln in lines}
    assert len(value_cols) == 1


# ---------------------------------------------------------------------------- saving

def test_save_writes_only_non_defaults_and_skips_env_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "config.yaml"
    env = {"PTIM_TARGET_FPS": "60"}
    loaded = load_settings(None, env=env, overrides={"mask.type": "solid",
                                                     "mask.color": (0, 0, 255)})
    env_keys = [k for k, s in loaded.sources.items() if s.startswith("env ")]
    digest = save_user_settings(cfg, loaded.settings, env_keys)
    data = cfg.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    doc = yaml.safe_load(data)
    assert doc == {"mask": {"type": "solid", "color": [0, 0, 255]}}
    assert load_settings(cfg, env={}).settings.performance.target_fps == 30.0
    assert data.startswith(b"#")


def test_save_of_defaults_is_an_empty_document(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    save_user_settings(cfg, Settings())
    assert yaml.safe_load(cfg.read_text()) is None
    assert load_settings(cfg, env={}).settings == Settings()


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_save_keeps_permissions_and_leaves_no_temp_files(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.yaml", "mask:\n  type: blur\n")
    os.chmod(cfg, 0o640)
    save_user_settings(cfg, load_settings(None, env={}, overrides={"mask.type": "solid"}).settings)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_save_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = write(tmp_path / "dotfiles.yaml", "")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    save_user_settings(link, load_settings(None, env={}, overrides={"mask.type": "solid"}).settings)
    assert link.is_symlink()
    assert yaml.safe_load(real.read_text()) == {"mask": {"type": "solid"}}


def test_save_is_atomic_for_a_concurrent_reader(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    variants = [load_settings(None, env={}, overrides={"mask.scale": 0.5 + i / 10,
                                                       "ui.source": "x" * 4000}).settings
                for i in range(10)]
    save_user_settings(cfg, variants[0])
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                s = load_settings(cfg, env={}, required=True).settings
            except ConfigError as exc:
                bad.append(str(exc))
                return
            if s not in variants:
                bad.append(repr(s.mask))
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(60):
            save_user_settings(cfg, variants[i % 10])
    finally:
        stop.set()
        t.join()
    assert bad == []


# ---------------------------------------------------------------------------- manager

def manager(tmp_path: Path, env: dict[str, str] | None = None, **kw: object) -> ConfigManager:
    return ConfigManager(tmp_path, env=env or {}, stats=ErrorStats(), **kw)  # type: ignore[arg-type]


def test_manager_update_swaps_saves_and_notifies(tmp_path: Path) -> None:
    mgr = manager(tmp_path)
    got: list[tuple[Settings, str | None]] = []
    mgr.subscribe(lambda s, e: got.append((s, e)))
    before = mgr.settings
    new = mgr.update({"mask.type": "solid", "tracker.hold_frames": 20})
    assert mgr.settings is new and new.mask.type == "solid" and new.tracker.hold_frames == 20
    assert before.mask.type == "pixelate"  # old snapshot untouched
    assert got == [(new, None)]
    assert mgr.sources["mask.type"] == str(user_config_path(tmp_path))
    doc = yaml.safe_load(user_config_path(tmp_path).read_text())
    assert doc == {"tracker": {"hold_frames": 20}, "mask": {"type": "solid"}}
    assert manager(tmp_path).settings == new


def test_manager_update_rejects_bad_values_and_keys(tmp_path: Path) -> None:
    mgr = manager(tmp_path)
    got: list[object] = []
    mgr.subscribe(lambda s, e: got.append(e))
    with pytest.raises(ConfigError, match=r"change: mask.scale = 9.0: must be <= 3.0"):
        mgr.update({"mask.scale": 9.0})
    with pytest.raises(ConfigError, match=r"mask.colour: unknown key"):
        mgr.update({"mask.colour": 1})
    assert mgr.settings == Settings() and got == []
    assert not user_config_path(tmp_path).exists()


def test_manager_never_writes_env_values_and_keeps_file_values_env_hides(tmp_path: Path) -> None:
    cfg = write(user_config_path(tmp_path), "performance:\n  max_processing_workers: 8\n")
    mgr = manager(tmp_path, {"PTIM_MAX_WORKERS": "4", "PTIM_TARGET_FPS": "60"})
    assert mgr.settings.performance.max_processing_workers == 4
    mgr.update({"mask.type": "solid"})
    doc = yaml.safe_load(cfg.read_text())
    assert doc == {"mask": {"type": "solid"}, "performance": {"max_processing_workers": 8}}
    assert mgr.settings.performance.target_fps == 60.0
    assert mgr.sources["performance.target_fps"] == "env PTIM_TARGET_FPS"


def test_manager_update_of_pinned_key_releases_the_pin(tmp_path: Path) -> None:
    mgr = manager(tmp_path, {"PTIM_TARGET_FPS": "60"}, overrides={"mask.type": "blur"})
    mgr.update({"performance.target_fps": 24, "mask.type": "solid"})
    assert mgr.settings.performance.target_fps == 24.0 and mgr.settings.mask.type == "solid"
    assert mgr.sources["performance.target_fps"] == str(mgr.config_file)
    doc = yaml.safe_load(mgr.config_file.read_text())
    assert doc == {"mask": {"type": "solid"}, "performance": {"target_fps": 24.0}}


def test_manager_rejects_bad_env_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PTIM_TARGET_FPS"):
        manager(tmp_path, {"PTIM_TARGET_FPS": "fast"})


def test_manager_explicit_config_file(tmp_path: Path) -> None:
    other = write(tmp_path / "other.yaml", "mask:\n  type: blur\n")
    mgr = manager(tmp_path, config_file=other)
    assert mgr.config_file == other and mgr.settings.mask.type == "blur"


def test_needs_restart() -> None:
    a = Settings()
    b = load_settings(None, env={}, overrides={"detector.provider": "cpu",
                                               "detector.precision": "fp32",
                                               "performance.max_processing_workers": 3,
                                               "mask.type": "solid"}).settings
    assert needs_restart(a, b) == ["detector.precision", "detector.provider",
                                   "performance.max_processing_workers"]
    assert ConfigManager.needs_restart(a, a) == []
    assert {"performance.max_processing_workers", "detector.provider",
            "detector.model_path", "detector.precision"} == ConfigManager.RESTART_KEYS


# ---------------------------------------------------------------------------- paths

def test_user_data_dir_precedence(tmp_path: Path) -> None:
    assert user_data_dir(tmp_path / "a", env={"PTIM_USERDATA_DIR": "/b"}) == tmp_path / "a"
    assert user_data_dir(None, env={"PTIM_USERDATA_DIR": str(tmp_path / "b")}) == tmp_path / "b"
    assert user_data_dir("~/x", env={}) == Path.home() / "x"
    default = user_data_dir(None, env={})
    assert default.name == "PlayaTewsIdentityMasker"
    assert user_data_dir("", env={"PTIM_USERDATA_DIR": ""}) == default
    assert user_config_path(tmp_path) == tmp_path / "config.yaml"
