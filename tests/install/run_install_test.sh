#!/usr/bin/env bash
# Installs a built stagedb into a temporary prefix, builds the outside project in tests/install
# against it with find_package(stagedb), and runs it.
# Usage: run_install_test.sh <stagedb build dir> <stagedb source dir>
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <build dir> <source dir>" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stagedb-install-test-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "== installing $build_dir into $tmp/prefix"
cmake --install "$build_dir" --prefix "$tmp/prefix"

echo "== building $source_dir/tests/install against it"
cmake -S "$source_dir/tests/install" -B "$tmp/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
# The package must come from the prefix, not from the build tree or the system.
found=$(sed -n 's/^stagedb_DIR:PATH=//p' "$tmp/build/CMakeCache.txt")
case "$found" in
  "$tmp/prefix"/*) ;;
  *) echo "stagedb was found in '$found', not under $tmp/prefix" >&2; exit 1 ;;
esac
cmake --build "$tmp/build" -j2

echo "== running the consumer"
"$tmp/build/stagedb_install_consumer"
