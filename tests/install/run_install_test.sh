#!/usr/bin/env bash
# Installs a built stagedb into a temporary prefix, checks that its shared libraries export no
# internal symbol, builds the outside project in tests/install against it twice (with
# find_package(stagedb) and with pkg-config) and runs both builds.
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
pc_file=$(find "$tmp/prefix" -name stagedb.pc -print -quit)
[ -n "$pc_file" ] || { echo "no stagedb.pc under $tmp/prefix" >&2; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc_file")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
libdir=$(pkg-config --variable=libdir stagedb)

echo "== checking the symbols the shared libraries export"
# Only the public API (STAGEDB_EXPORT): nothing of the engine's or the apps' internal namespaces.
# (Members of exported classes may still name internal types in their parameters.)
internal_namespace='stagedb::(internal|apps|[a-z]+::(internal|detail))::'
for lib in "$libdir"/libstagedb*.so; do
  exported=$(nm -DC --defined-only "$lib" | cut -d' ' -f3-)
  internal=$(grep -E "^((vtable|typeinfo|typeinfo name|VTT|guard variable) for )?$internal_namespace" \
               <<<"$exported" || true)
  echo "$(basename "$lib"): $(wc -l <<<"$exported") symbols"
  if [ -n "$internal" ]; then
    echo "$(basename "$lib") exports internal symbols:" >&2
    echo "$internal" >&2
    exit 1
  fi
done

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

echo "== building it again with pkg-config, and running it"
pc_packages="stagedb stagedb-stage stagedb-collab stagedb-covibe stagedb-codecourier"
# shellcheck disable=SC2046,SC2086  # pkg-config's output is a list of flags
g++ -std=c++20 -o "$tmp/pkg_config_consumer" "$source_dir/tests/install/main.cc" \
  -DSTAGEDB_SCHEMA_DIR="\"$(pkg-config --variable=schemadir stagedb)\"" \
  $(pkg-config --cflags --libs $pc_packages) -Wl,-rpath,"$libdir"
"$tmp/pkg_config_consumer"
