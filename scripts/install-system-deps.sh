#!/usr/bin/env bash
# Installs the system libraries napari's canvas needs for headless tests (Xvfb + Mesa
# OpenGL + the xcb libraries of Qt), on Debian/Ubuntu, only when some are missing.
set -euo pipefail
pkgs=(xvfb xauth libgl1 libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4
      libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0
      libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-system-deps: not a Debian-based system; install Xvfb and OpenGL (Mesa) yourself" >&2
  exit 0
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-system-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "install-system-deps: run as root or install: ${missing[*]}" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
