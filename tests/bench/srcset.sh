#!/bin/bash
# Decode once, write many: pixmill making 3 widths x 2 formats per photo in one run, against
# vipsthumbnail run once per output (the way a build script drives it), both at parallelism P.
#   bash tests/bench/srcset.sh [PHOTO_DIR] [COPIES] [ROUNDS]
# PHOTO_DIR defaults to samples/photos; COPIES replicates it (default 6); ROUNDS default 3.
# Prints per-round times, the median of each, and the ratio. Not part of ctest.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
src=${1:-$top/samples/photos}
copies=${2:-6}
rounds=${3:-3}
P=${P:-$(nproc)}
pixmill=${PIXMILL:-$top/build/cli/pixmill}
command -v vipsthumbnail >/dev/null || { echo "needs vipsthumbnail (libvips-tools)"; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pixmill-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
for i in $(seq "$copies"); do mkdir -p "$work/in/c$i"; cp -r "$src"/. "$work/in/c$i/"; done
n=$(find "$work/in" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) | wc -l)
sizes=(1280 640 320)
formats=(webp jpg)
echo "srcset: $n photos x ${#sizes[@]} widths x ${#formats[@]} formats = $((n * 6)) outputs, P=$P"
find "$work/in" -type f -exec cat {} + >/dev/null  # warm the page cache

run_pixmill() {
  rm -rf "$work/pm"
  local args=()
  for s in "${sizes[@]}"; do args+=(-s "${s}x"); done
  "$pixmill" -q -j "$P" "${args[@]}" -f webp -f jpeg -Q 80 -o "$work/pm" "$work/in"
  test "$(find "$work/pm" -type f | wc -l)" -eq $((n * 6))
}

run_vipsthumbnail() {
  rm -rf "$work/vt"
  for s in "${sizes[@]}"; do for f in "${formats[@]}"; do
    mkdir -p "$work/vt/$s-$f"
    # one process per chunk of files, P at a time, libvips' own threads at 1 (the fast way)
    find "$work/in" -type f -print0 | VIPS_CONCURRENCY=1 xargs -0 -P "$P" -n 16 \
      vipsthumbnail -s "${s}x100000" -o "$work/vt/$s-$f/%s.$f[Q=80,strip]" 2>/dev/null || true
  done; done
}

t() { local a b; a=$(date +%s.%N); "$@"; b=$(date +%s.%N); awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b - a}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }
pm=(); vt=()
for r in $(seq "$rounds"); do
  pm+=("$(t run_pixmill)")
  vt+=("$(t run_vipsthumbnail)")
  echo "round $r: pixmill ${pm[-1]} s, vipsthumbnail ${vt[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mp=$(median "${pm[@]}"); mv=$(median "${vt[@]}")
echo "median: pixmill $mp s ($(div "$n" "$mp") photos/s), vipsthumbnail per output $mv s ($(div "$n" "$mv") photos/s)"
echo "ratio (vipsthumbnail / pixmill): $(div "$mv" "$mp")x"
