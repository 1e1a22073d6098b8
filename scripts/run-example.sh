#!/usr/bin/env bash
# Installs the dependencies (Debian 12, as root), builds the main example and runs it.
# Usage: bash scripts/run-example.sh   (from any directory)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2 --target quickstart
build/examples/quickstart
