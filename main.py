"""PlayaTews Identity Masker: command-line entry.

Only the standard library is imported at module level so ``--help`` answers at once;
every command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys

APP_NAME = "PlayaTewsIdentityMasker"
__version__ = "0.1.0"

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_OUTPUT, EXIT_PARTIAL = 0, 2, 3, 4, 5
EXIT_INTERRUPTED = 130

EPILOG = """exit codes: 0 ok, 2 usage or config error, 3 unreadable or unsupported input,
4 output not writable, 5 partial (some inputs failed, the others were written),
130 interrupted (no partial output left behind)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line grammar (stdlib only)."""
    p = _Parser(
        prog="ptim",
        description="Masks the identity of every face in live video and in video files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="start the desktop app (the default command)")
    run.add_argument("app", nargs="?", default=APP_NAME, choices=[APP_NAME], help="app name")
    _add_app_options(run)

    proc = sub.add_parser(
        "process", help="mask every face in video or image files (headless)",
        description="Mask every face in video files, image files or folders of them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proc.add_argument("inputs", nargs="+", metavar="INPUT",
                      help="video file, image file, folder of them, or 'demo' (built-in clip)")
    proc.add_argument("-o", "--output", metavar="OUTPUT",
                      help="output file (one input) or folder; default <name>_masked.<ext> "
                      "beside the input")
    proc.add_argument("--mask", choices=["solid", "pixelate", "blur", "image", "replace"],
                      help="mask type (default from config: pixelate)")
    proc.add_argument("--mask-image", metavar="PATH",
                      help="image for --mask image (PNG with alpha)")
    proc.add_argument("--replace-face", metavar="PATH|demo",
                      help="for --mask replace: a .dfm model, an inswapper .onnx model, a face "
                      "photo, or demo (the face in scikit-image's camera photo)")
    proc.add_argument("--source-face", metavar="PHOTO",
                      help="inswapper models: the photo whose face gives the identity")
    proc.add_argument("--recognition-model", metavar="PATH",
                      help="inswapper models: the ArcFace ONNX model for --source-face")
    proc.add_argument("--mask-shape", choices=["ellipse", "box"], help="mask shape")
    proc.add_argument("--mask-scale", type=float, metavar="S", help="mask size vs face box")
    proc.add_argument("--blur-strength", type=float, metavar="K", help="blur strength 0.05-1")
    proc.add_argument("--threshold", type=float, metavar="T", help="face score threshold 0.01-0.99")
    proc.add_argument("--detector-size", metavar="WxH|auto",
                      help="detector input size: an explicit override, one whole-frame pass")
    proc.add_argument("--min-face", type=float, metavar="PX",
                      help="smallest face to mask, in source pixels (default 12)")
    proc.add_argument("--fine-period", type=int, metavar="N",
                      help="frames over which the fine pass covers the frame (default 16)")
    proc.add_argument("--keep-audio", action="store_true", default=None,
                      help="copy the input's audio track")
    proc.add_argument("--boxes", metavar="FILE.jsonl",
                      help="write one JSON line of tracks per frame")
    proc.add_argument("--config", metavar="FILE", help="settings YAML (instead of the user's)")
    proc.add_argument("--provider", choices=["auto", "cpu", "cuda"], help="inference provider")
    proc.add_argument("--precision", choices=["auto", "fp32", "int8"],
                      help="detector precision (auto: int8 on CPU, fp32 on CUDA)")
    proc.add_argument("--cluster", metavar="local|auto|HOST:PORT",
                      help="run on a Ray cluster: local starts one on this machine; auto or "
                      "an address joins one (RAY_ADDRESS is honoured); inputs and outputs "
                      "must be on storage every node sees")
    proc.add_argument("--segment-seconds", type=float, metavar="S",
                      help="split long videos at keyframes into segments of about S seconds "
                      "(default 60 with --cluster), processed apart and joined exactly")
    again = proc.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="finish an interrupted --cluster/--segment-seconds run: redo only "
                       "the missing segments")
    again.add_argument("--restart", action="store_true",
                       help="forget an interrupted run's segments and start over")
    proc.add_argument("--quiet", action="store_true", help="print only errors")
    proc.add_argument("--verbose", action="store_true", help="debug log; tracebacks to the log")

    cfg = sub.add_parser("config", help="show the effective settings and where each came from")
    cfg.add_argument("action", choices=["show", "path"], help="show: every key; path: user YAML")
    cfg.add_argument("--config", metavar="FILE", help="settings YAML (instead of the user's)")
    cfg.add_argument("--userdata-dir", metavar="DIR", help="userdata folder")

    sc = sub.add_parser("install-shortcut", help="write a desktop launcher for the app")
    sc.add_argument("--dest", metavar="DIR", help="folder for the launcher (default: the menu)")
    sc.add_argument("--userdata-dir", metavar="DIR", help="userdata folder the launcher passes")
    return p


def _add_app_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--userdata-dir", metavar="DIR", help="folder for config, logs, reports")
    p.add_argument("--source", metavar="SPEC", help="camera:N, a file, a folder, or demo")
    p.add_argument("--verbose", action="store_true", help="debug log")


def _process(args: argparse.Namespace) -> int:
    """Run ``process``; Ctrl+C or SIGTERM at any moment ends it with exit 130, one line.

    ``run_process`` handles both once it runs; this covers the heavy imports before it
    (numpy, OpenCV, onnxruntime), where a signal would otherwise print a traceback
    (SIGINT) or kill the process without a word (SIGTERM).
    """
    import signal

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        prev = signal.signal(signal.SIGTERM, _on_term)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        prev = None
    try:
        from apps.process_cli import run_process

        return run_process(args)
    except KeyboardInterrupt:
        sys.stderr.write("ptim: error: interrupted; no partial output was left\n")
        return EXIT_INTERRUPTED
    finally:
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def _describe_detection(settings) -> str:
    """The detection lines of ``config show`` (the backend knows what runs)."""
    from backend.pipeline import describe_detection, schedule_for

    lines = [f"detection: {describe_detection(settings)}"]
    if schedule_for(settings) is not None:
        for w, h in ((1280, 720), (1920, 1080)):
            lines.append(f"  at {describe_detection(settings, w, h)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        argv = ["run", *argv]  # plain `main.py [--source ...]` starts the app
    args = parser.parse_args(argv)
    if args.command == "process":
        return _process(args)
    if args.command == "config":
        from config.cli import run_config

        return run_config(args, describe=_describe_detection)
    if args.command == "install-shortcut":
        from apps.PlayaTewsIdentityMasker.shortcut import install_shortcut

        return install_shortcut(args)
    if args.command == "run":
        from apps.PlayaTewsIdentityMasker.launch import run_app

        return run_app(args)
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
