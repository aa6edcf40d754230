#!/bin/bash
# Builds and runs the whole ctest suite under ASan+UBSan (gcc) and under TSan (clang), with the
# suppressions libvips/GLib need (see tests/tsan.supp and LIBVIPS-NOTES). Heavy loads are scaled
# down (PM_TEST_ITEMS); peak-RSS and Helgrind tests run only in the plain build.
#   bash tests/sanitize.sh [asan|tsan]...      (default: both)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(asan tsan)
status=0
for kind in "${which[@]}"; do
  case $kind in
    asan)
      cmake -S . -B build-asan -DPM_WERROR=ON -DPM_SANITIZE=address,undefined \
            -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc >/dev/null
      cmake --build build-asan -j"$jobs" >/dev/null
      export ASAN_OPTIONS=fast_unwind_on_malloc=0:detect_leaks=1:abort_on_error=0:exitcode=66
      export LSAN_OPTIONS=suppressions=$top/tests/lsan.supp:print_suppressions=0
      export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      export G_SLICE=always-malloc G_DEBUG=gc-friendly PM_TEST_ITEMS=10000 CK_TIMEOUT_MULTIPLIER=4
      export PMT_MODEL_STEPS=15
      echo "== ASan+UBSan"
      ctest --test-dir build-asan --output-on-failure -j1 || status=1
      unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
      ;;
    tsan)
      cmake -S . -B build-tsan -DPM_WERROR=ON -DPM_SANITIZE=thread \
            -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang >/dev/null
      cmake --build build-tsan -j"$jobs" >/dev/null
      export TSAN_OPTIONS="suppressions=$top/tests/tsan.supp:halt_on_error=1:exitcode=66:second_deadlock_stack=1"
      export G_SLICE=always-malloc PM_TEST_ITEMS=5000 CK_TIMEOUT_MULTIPLIER=10 PMT_MODEL_STEPS=15
      echo "== TSan"
      ctest --test-dir build-tsan --output-on-failure -j1 || status=1
      unset TSAN_OPTIONS
      ;;
    *) echo "unknown: $kind (asan or tsan)" >&2; exit 2 ;;
  esac
done
exit $status
