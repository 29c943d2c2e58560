#!/usr/bin/env bash
# `make screenshots`: run the app in a real X window under Xvfb and capture the window and
# the performance dashboard from the X server into docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="xvfb libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libegl1
libgl1 libfontconfig1 libdbus-1-3"
if ! command -v Xvfb >/dev/null || ! ldconfig -p | grep -q libxcb-cursor.so.0; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PKGS
  else
    echo "screenshots need Xvfb and Qt's xcb libraries: sudo apt-get install $PKGS" >&2
    exit 2
  fi
fi
mkdir -p docs
export DISPLAY=:87
Xvfb "$DISPLAY" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
XPID=$!
trap 'kill $XPID 2>/dev/null || true' EXIT
sleep 1
QT_QPA_PLATFORM=xcb PTIM_SCREENSHOT_DIR=docs PTIM_USERDATA_DIR="$(mktemp -d)" \
  .venv/bin/python main.py run PlayaTewsIdentityMasker --source demo
ls -l docs/screenshot-*.png
