#!/bin/bash
# Two checkers on end-to-end runs of the built pixmill (plain build; run by ctest):
# 1. valgrind memcheck on the engine (--no-isolate) over good, bad and truncated inputs, at -j 2,
#    several formats: any memcheck error or definite leak fails. libvips' modules are not loaded
#    (VIPSHOME points at an empty folder): libhwy, pulled in by the JPEG XL module, runs an
#    instruction valgrind 3.19 cannot emulate (SIGILL at load). AVIF/HEIC need that module, so
#    they are left to the second check.
# 2. VIPS_LEAK=1 over the same inputs plus AVIF/HEIC output, a rerun (up to date), a dry run and
#    a crash-isolated run: libvips' own leak report at shutdown must be clean ("objects alive",
#    leftover allocations, open files).
# Usage: memcheck.sh PIXMILL_BIN
set -euo pipefail
bin=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in/sub" "$work/novips"
vips black "$work/in/black.png" 120 80 --bands 3
vips gaussnoise "$work/noise.v" 200 150
vips cast "$work/noise.v" "$work/in/noise.jpg" uchar
vips copy "$work/in/noise.jpg" "$work/in/sub/noise.webp"
vips bandjoin_const "$work/in/black.png" "$work/in/sub/alpha.png" 128
printf 'garbage' > "$work/in/garbage.jpg"
head -c 2000 "$work/in/noise.jpg" > "$work/in/truncated.jpg"
fail=0

echo "== valgrind memcheck"
if VIPSHOME="$work/novips" valgrind -q --error-exitcode=99 --leak-check=full \
     --errors-for-leak-kinds=definite --show-leak-kinds=definite \
     --suppressions="$here/valgrind.supp" \
     "$bin" --no-isolate -j 2 -s 100 -s 40 -f webp -f jpeg -f png -o "$work/vg" "$work/in" \
     >"$work/vg.log" 2>&1; then
  rc=0
else
  rc=$?
fi
# 1 is the expected exit: two of the inputs are broken on purpose
if [ "$rc" != 1 ] || grep -q '^==[0-9]*==' "$work/vg.log"; then
  echo "memcheck: exit $rc"; cat "$work/vg.log"; fail=1
else
  echo "memcheck: clean ($(find "$work/vg" -name '*.webp' | wc -l) WebP among the outputs)"
fi

echo "== VIPS_LEAK"
leak_run() {
  local name=$1; shift
  VIPS_LEAK=1 "$bin" "$@" >"$work/$name.out" 2>"$work/$name.err" || true
  if grep -Eq 'objects alive|allocations, |open files|vips_buffer|vips_window' "$work/$name.err"; then
    echo "VIPS_LEAK: $name"; cat "$work/$name.err"; fail=1
  else
    echo "VIPS_LEAK: $name clean"
  fi
}
leak_run all-formats -j 2 -s 100 -s 40 -f webp -f avif -f heif -f gif -f tiff -o "$work/lk" "$work/in"
leak_run rerun -j 2 -s 100 -s 40 -f webp -f avif -f heif -f gif -f tiff -o "$work/lk" "$work/in"
leak_run dry-run --dry-run -s 300 -o "$work/lk2" "$work/in"
leak_run one-process --no-isolate --json -s 64 -o "$work/lk3" "$work/in"
exit $fail
