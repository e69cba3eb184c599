#!/usr/bin/env bash
# Installs what realizar builds and tests with, on Debian 12: the -dev packages of DESIGN.md §6 and
# the pinned Python reference packages. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  build-essential cmake ninja-build ccache pkg-config python3 python3-pip
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libpcre2-dev libutf8proc-dev
  libfmt-dev libspdlog-dev libssl-dev libcurl4-openssl-dev libgtest-dev libgmock-dev
  libbenchmark-dev libreadline-dev
  tmux  # tests/python/test_chat.py drives `apr chat` in a terminal
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

pip_flags=(-q --disable-pip-version-check)
# Debian's own python3 refuses system-wide pip installs unless told otherwise.
if python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
  pip_flags+=(--break-system-packages)
fi
python3 -m pip install "${pip_flags[@]}" -r tools/requirements.txt
