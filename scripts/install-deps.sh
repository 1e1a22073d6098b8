#!/usr/bin/env bash
# Installs the Debian 12 packages stagedb needs to build, test and benchmark, when missing.
# Runs as root (or through sudo when present). Safe to run again: installs only what is absent.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libabsl-dev libboost-dev libcereal-dev liblmdb-dev
  nlohmann-json3-dev libssl-dev catch2 libbenchmark-dev libsqlite3-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "stagedb: installing ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "stagedb: need root to install ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
