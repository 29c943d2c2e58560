"""Security properties, checked on the code and on real runs.

- The code (apps backend ui config main.py bench) has no unsafe deserialisation or code
  evaluation (pickle, marshal, shelve, eval, exec, unsafe YAML), no shell commands, and
  the runtime packages open no network connections. Checked on the syntax tree, so the
  words in docstrings ("no pickle anywhere") do not count and aliases do.
- A model is only ever read as ONNX: parsed with ``onnx`` and handed to onnxruntime as
  bytes; a pickle posing as a model is refused without being unpickled.
- Paths from settings are expanded and checked: a folder or file of the wrong kind gets
  one clear line.
- Files are written atomically (temporary name, then rename) with the user's
  permissions (0o666 minus the umask), and ``process`` needs no network at all.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import ROOT, error_lines, run_ptim, temp_leftovers

SCANNED = ("apps", "backend", "ui", "config", "main.py", "bench")
RUNTIME = ("apps", "backend", "ui", "config", "main.py")  # shipped in the app
NEVER_IMPORT = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal",
                "shelve", "torch"}
NO_NETWORK = {"socket", "ssl", "urllib", "urllib3", "requests", "httpx", "aiohttp", "http",
              "ftplib", "smtplib", "telnetlib", "xmlrpc", "websocket", "websockets"}
NEVER_CALL = {"eval", "exec", "compile", "__import__"}
UNSAFE_YAML = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}


@dataclass(frozen=True)
class Finding:
    where: str
    what: str


def _files(parts: tuple[str, ...]) -> Iterator[Path]:
    for part in parts:
        p = ROOT / part
        if p.is_file():
            yield p
        else:
            yield from (f for f in sorted(p.rglob("*.py")) if "out" not in f.parts)


def _dotted(node: ast.AST) -> str:
    """'a.b.c' for a Name/Attribute chain, '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def scan(path: Path, runtime: bool) -> list[Finding]:
    """Forbidden constructs in one file, by its syntax tree."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    found: list[Finding] = []

    def add(node: ast.AST, what: str) -> None:
        found.append(Finding(f"{rel}:{getattr(node, 'lineno', 0)}", what))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in NEVER_IMPORT:
                    add(node, f"imports {name}")
                if runtime and top in NO_NETWORK:
                    add(node, f"imports {name} (network) in a runtime package")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yaml"):
                bad = {a.name for a in node.names} & UNSAFE_YAML
                if bad:
                    add(node, f"imports unsafe YAML {sorted(bad)}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            tail = name.rsplit(".", 1)[-1]
            kw = {k.arg: k.value for k in node.keywords}
            if isinstance(node.func, ast.Name) and node.func.id in NEVER_CALL:
                add(node, f"calls {node.func.id}()")
            if name in ("yaml.load", "yaml.load_all"):
                loader = _dotted(kw.get("Loader", node.args[1] if len(node.args) > 1 else
                                        ast.Constant(None)))
                if loader.rsplit(".", 1)[-1] not in ("SafeLoader", "CSafeLoader"):
                    add(node, f"{name} without SafeLoader")
            if name.startswith("yaml.") and tail in UNSAFE_YAML:
                add(node, f"calls {name}")
            shell = kw.get("shell")
            if shell is not None and not (isinstance(shell, ast.Constant)
                                          and shell.value is False):
                add(node, f"{name}(shell=...)")
            if name in ("os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl",
                        "pty.spawn", "commands.getoutput"):
                add(node, f"calls {name}")
            allow = kw.get("allow_pickle")
            if tail == "load" and isinstance(allow, ast.Constant) and allow.value is True:
                add(node, f"{name}(allow_pickle=True)")
            if tail == "InferenceSession" and rel != "backend/detect/session.py":
                add(node, "creates an onnxruntime session outside backend/detect/session.py")
        elif isinstance(node, (ast.Name, ast.Attribute)):
            ident = node.id if isinstance(node, ast.Name) else node.attr
            if ident in ("pickle", "marshal", "shelve", "unsafe_load"):
                add(node, f"uses {ident}")
    return found


def test_scanner_catches_what_it_should(tmp_path: Path) -> None:
    """The scanner itself: every forbidden form is reported, docstrings are not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""No pickle here: eval( and yaml.load( in a docstring do not count."""\n'
        "import pickle as p\nimport socket\nfrom yaml import FullLoader\nimport yaml\n"
        "import subprocess\nimport numpy as np\n"
        "eval('1')\nexec('x=1')\nyaml.load(s)\nyaml.load(s, Loader=yaml.Loader)\n"
        "yaml.unsafe_load(s)\nsubprocess.run('ls', shell=True)\nos.system('ls')\n"
        "np.load('x.npy', allow_pickle=True)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
        "ort.InferenceSession(b'')\n")
    got = {f.what for f in scan(bad, runtime=True)}
    want = {"imports pickle", "imports socket (network) in a runtime package",
            "imports unsafe YAML ['FullLoader']", "calls eval()", "calls exec()",
            "yaml.load without SafeLoader", "calls yaml.unsafe_load",
            "subprocess.run(shell=...)", "calls os.system", "np.load(allow_pickle=True)",
            "creates an onnxruntime session outside backend/detect/session.py",
            "uses unsafe_load"}
    assert got == want


def test_tree_has_no_unsafe_calls_and_runtime_has_no_network() -> None:
    runtime = {str(p) for p in _files(RUNTIME)}
    files = list(_files(SCANNED))
    assert len(files) > 40  # the scan really looked at the tree
    findings = [f for p in files for f in scan(p, str(p) in runtime)]
    assert findings == [], "\n".join(f"{f.where}: {f.what}" for f in findings)


def test_yaml_is_only_read_with_safe_load() -> None:
    """Every YAML read in the tree goes through yaml.safe_load (found by the AST)."""
    calls = []
    for p in _files(SCANNED):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func).startswith("yaml."):
                calls.append(_dotted(node.func))
    assert calls and set(calls) <= {"yaml.safe_load", "yaml.safe_dump"}, set(calls)


# -- models: ONNX only -----------------------------------------------------------------

def test_model_loading_goes_through_onnx_parsing_only() -> None:
    """session.py parses with onnx and gives onnxruntime the bytes it produced, never a path."""
    src = (ROOT / "backend" / "detect" / "session.py").read_text()
    tree = ast.parse(src)
    sessions = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and _dotted(n.func).endswith("InferenceSession")]
    assert sessions
    for call in sessions:  # first argument is the serialised, checked model: a name `data`
        assert isinstance(call.args[0], ast.Name) and call.args[0].id == "data"
    assert "onnx.load_from_string(data)" in src and "check_model" in src
    assert "def prepare_model" in src and "data = prepare_model(path)" in src


def test_a_pickle_posing_as_a_model_is_refused_not_unpickled(tmp_path: Path) -> None:
    from backend.detect import ModelError, create_session

    marker = tmp_path / "unpickled"
    # protocol-0 pickle that would call builtins.open(marker, "w") if anything unpickled it
    payload = f"cbuiltins\nopen\n(S'{marker}'\nS'w'\ntR.".encode()
    for name in ("model.onnx", "model.pkl", "model.pt"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ModelError, match="not an ONNX file"):
            create_session(tmp_path / name, "cpu")
    assert not marker.exists()


def test_external_weights_outside_the_model_folder_are_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from backend.detect import ModelError, create_session

    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1, 2, 3, 4])
    w.data_location = TensorProto.EXTERNAL
    del w.float_data[:]
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../../../../../etc/hostname"
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, "H", "W"])
    outs = [helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, ["N", c, "h", "w"])
            for i, c in enumerate((1, 2, 2, 10))]
    nodes = [helper.make_node("Identity", ["input.1"], [f"o{i}"]) for i in range(4)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, [w]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    assert onnx.load_from_string(path.read_bytes())  # a well-formed file otherwise
    with pytest.raises(ModelError, match="external weights refused") as err:
        create_session(path, "cpu")
    assert "\n" not in str(err.value)


# -- paths from settings ------------------------------------------------------------------

def test_paths_from_settings_are_expanded_and_checked(tmp_path: Path, monkeypatch) -> None:
    from backend.detect import ModelError, create_session, default_model_path
    from backend.mask.image import MaskImageError, load_mask_image
    from config.manager import ConfigError, load_settings

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(default_model_path(), tmp_path / "m.onnx")
    assert create_session("~/m.onnx", "cpu").provider == "cpu"  # ~ is the user's home
    with pytest.raises(ModelError, match="not a file"):
        create_session(tmp_path, "cpu")  # model_path naming a folder
    import cv2

    cv2.imwrite(str(tmp_path / "mask.png"), np.zeros((8, 8, 4), np.uint8))
    assert load_mask_image("~/mask.png").size == (8, 8)
    with pytest.raises(MaskImageError, match="is a folder"):
        load_mask_image(tmp_path)
    (tmp_path / "rec").write_text("a file")
    with pytest.raises(ConfigError, match=r"ui.record_dir .*is a file, expected a folder"):
        load_settings(None, env={"PTIM_UI__RECORD_DIR": str(tmp_path / "rec")})
    ok = load_settings(None, env={"PTIM_UI__RECORD_DIR": str(tmp_path / "new_folder")})
    assert ok.settings.ui.record_dir.endswith("new_folder")  # created on first recording


# -- files: atomic, with the user's permissions ------------------------------------------

@pytest.fixture
def umask_027() -> Iterator[int]:
    old = os.umask(0o027)
    try:
        yield 0o666 & ~0o027
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_recorder_is_atomic_and_uses_the_umask(tmp_path: Path, umask_027: int) -> None:
    from backend.sinks import VideoRecorder
    from backend.types import Frame

    final = tmp_path / "rec.mp4"
    rec = VideoRecorder(final, fps=30, size=(64, 48))
    for i in range(3):
        rec.write(Frame(i, i / 30, np.zeros((48, 64, 3), np.uint8)))
    assert not final.exists() and len(temp_leftovers(tmp_path)) == 1  # only the temp name
    rec.close()
    assert final.exists() and temp_leftovers(tmp_path) == []
    assert _mode(final) == umask_027


def test_image_sink_and_boxes_are_atomic_and_use_the_umask(tmp_path: Path, umask_027: int,
                                                           monkeypatch) -> None:
    from backend.batch import _AtomicText
    from backend.sinks import ImageSink
    from backend.types import Frame

    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):  # every final file appears by a rename of a complete temporary one
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    sink = ImageSink(tmp_path / "one.png")
    out = sink.write(Frame(0, 0.0, np.zeros((8, 8, 3), np.uint8)))
    boxes = _AtomicText(tmp_path / "b.jsonl")
    boxes.write("{}\n")
    assert not (tmp_path / "b.jsonl").exists()
    boxes.commit()
    assert renames == [(".one.ptim-tmp.png", "one.png"), (".b.jsonl.ptim-tmp", "b.jsonl")]
    assert _mode(out) == umask_027 and _mode(tmp_path / "b.jsonl") == umask_027
    assert temp_leftovers(tmp_path) == []


def test_config_save_is_atomic_and_uses_the_umask(tmp_path: Path, umask_027: int) -> None:
    from config.manager import ConfigManager

    mgr = ConfigManager(tmp_path, env={})
    mgr.update({"mask.type": "solid"})
    path = mgr.config_file
    assert path.read_text().count("type: solid") == 1
    assert _mode(path) == umask_027
    path.chmod(0o600)  # a user who locked the file down keeps it locked down
    mgr.update({"mask.type": "blur"})
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary left


def test_process_output_gets_the_callers_umask(tmp_path: Path, clip: Path) -> None:
    shutil.copy(clip, tmp_path / "in.mp4")
    env = {**os.environ, "PTIM_USERDATA_DIR": str(tmp_path / "ud")}
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "process", "in.mp4", "-o",
                        "out.mp4", "--boxes", "b.jsonl", "--quiet"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077))
    assert r.returncode == 0, r.stderr
    assert _mode(tmp_path / "out.mp4") == 0o600 and _mode(tmp_path / "b.jsonl") == 0o600


# -- no network ---------------------------------------------------------------------------

NO_NET_WRAPPER = '''
"""Run main.py with Python's network entry points replaced by ones that refuse."""
import runpy
import socket
import sys

class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network disabled by the test")

def _refuse(*args, **kwargs):
    raise OSError("network disabled by the test")

socket.socket = _NoNetwork
socket.create_connection = socket.getaddrinfo = socket.socketpair = _refuse
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


def test_process_runs_with_the_network_disabled(tmp_path: Path, clip: Path) -> None:
    wrapper = tmp_path / "nonet.py"
    wrapper.write_text(NO_NET_WRAPPER)
    shutil.copy(clip, tmp_path / "in.mp4")
    # and, where allowed, in a network namespace of its own: no interface at all
    prefix = ["unshare", "-n"] if _unshare_works() else []
    env = {**os.environ, "PTIM_USERDATA_DIR": str(tmp_path / "ud")}
    r = subprocess.run([*prefix, sys.executable, str(wrapper), str(ROOT / "main.py"),
                        "process", "in.mp4", "-o", "out.mp4", "--mask", "solid"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert error_lines(r.stderr) == [] and "30 frames" in r.stdout
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_config_file_with_yaml_tags_is_refused_not_executed(tmp_path: Path) -> None:
    """A YAML tag that an unsafe loader would turn into a call is just a parse error."""
    marker = tmp_path / "ran"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"mask: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    img = tmp_path / "p.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    r = run_ptim("process", str(img), "-o", str(tmp_path / "o.png"), "--config", str(cfg),
                 cwd=tmp_path)
    assert r.returncode == 2 and "evil.yaml" in r.stderr and "not valid YAML" in r.stderr
    assert not marker.exists()
