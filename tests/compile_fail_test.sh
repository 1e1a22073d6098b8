#!/bin/bash
# Compile-fail checks of the public headers: a function given to Database::Mutate, Query or
# Subscribe that breaks the return-type rule (a lambda without a return statement returns void)
# must fail with exactly one error, the static_assert that names the rule, not a page of
# template errors.
#
# Usage: compile_fail_test.sh CXX INCLUDE_DIR...   (the include directories of the stagedb
# headers: the source tree's include/ and the build's generated include/)
set -u
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CXX INCLUDE_DIR..." >&2
  exit 2
fi
cxx=$1
shift
flags=(-std=c++20 -fsyntax-only)
for dir in "$@"; do flags+=("-I$dir"); done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# A control: correct code compiles with the same flags, so a missing header is not mistaken
# for the expected failure.
cat >"$work/ok.cc" <<'EOF'
#include <stagedb/stagedb.h>
absl::Status F(stagedb::Database& db) {
  absl::StatusOr<stagedb::DocumentId> id =
      db.Mutate([](stagedb::Transaction& tx) { return tx.Insert("t", {}); });
  absl::StatusOr<std::vector<stagedb::Document>> all =
      db.Query([](stagedb::Reader& r) { return r.Table("t").Collect(); });
  absl::StatusOr<stagedb::Subscription> sub =
      db.Subscribe([](stagedb::Reader& r) { return r.Table("t").Collect(); },
                   [](const stagedb::QueryUpdate&) {});
  return db.Mutate([](stagedb::Transaction&) { return absl::OkStatus(); });
}
EOF
if ! "$cxx" "${flags[@]}" "$work/ok.cc" >"$work/ok.log" 2>&1; then
  echo "FAIL: the control does not compile:"
  cat "$work/ok.log"
  exit 1
fi

# expect NAME BODY MESSAGE: BODY (inside F, returning absl::Status) must fail with one error
# containing MESSAGE.
expect() {
  local name=$1 body=$2 message=$3
  printf '#include <stagedb/stagedb.h>\nabsl::Status F(stagedb::Database& db) {\n%s\n}\n' \
    "$body" >"$work/$name.cc"
  if "$cxx" "${flags[@]}" "$work/$name.cc" >"$work/$name.log" 2>&1; then
    echo "FAIL $name: compiled, expected the static_assert"
    failures=$((failures + 1))
    return
  fi
  local errors
  errors=$(grep -c 'error:' "$work/$name.log")
  if [[ $errors -ne 1 ]] || ! grep -qF "$message" "$work/$name.log"; then
    echo "FAIL $name: expected one error containing: $message; got $errors:"
    cat "$work/$name.log"
    failures=$((failures + 1))
    return
  fi
  echo "ok $name: one error ($(wc -l <"$work/$name.log") lines of output)"
}

expect void_mutate \
  '  return db.Mutate([](stagedb::Transaction& tx) { (void)tx.Insert("t", {}); });' \
  'the function given to Mutate must return absl::Status or absl::StatusOr<T>'
expect void_query \
  '  return db.Query([](stagedb::Reader& r) { (void)r.Table("t").Collect(); });' \
  'the function given to Query must return absl::Status or absl::StatusOr<T>'
expect void_subscribe \
  '  return db.Subscribe([](stagedb::Reader& r) { (void)r.Table("t").Collect(); },
                      [](const stagedb::QueryUpdate&) {}).status();' \
  'the query must return absl::StatusOr<std::vector<Document>>'

exit $((failures > 0))
