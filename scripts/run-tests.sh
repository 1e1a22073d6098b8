#!/usr/bin/env bash
# Installs the dependencies (Debian 12, as root), builds everything and runs the test suite
# (all tests but the long `stress` ones; run those with `ctest --test-dir build -L stress`).
# Usage: bash scripts/run-tests.sh   (from any directory)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2 -LE stress
