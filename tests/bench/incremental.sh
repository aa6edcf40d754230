#!/bin/bash
# First build vs no-op rebuild of a 1,000-file tree (the build-step promise: an unchanged tree
# costs almost nothing, and a fresh clone's new mtimes cost only hashing).
#
#   bash tests/bench/incremental.sh [PIXMILL] [N]      (defaults: ./build/cli/pixmill, 1000)
#
# Two trees: N photos (samples/photos copied round-robin, 0.7-6.3 MP JPEGs) made into 3 widths
# x WebP+JPEG, and N small PNGs (64-256 px) into one 128 px WebP. For each: the first run, the
# no-op rerun (median of 3; the --json stream must show 0 decodes), and a rerun after `touch`
# on every source (same bytes: hashed, not rebuilt). Prints a table and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(readlink -f "${1:-$root/build/cli/pixmill}")
n=${2:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

secs() { # wall seconds of a command, stdout to $work/last.json
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/last.json" 2>"$work/last.err"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
decodes() { jq -s '[.[] | .decodes // 0] | add // 0' "$work/last.json"; }

mkdir -p "$work/photos"
mapfile -t photos < <(find "$root/samples/photos" -name '*.jpg' | sort)
for ((i = 0; i < n; i++)); do
  d="$work/photos/d$((i % 20))"
  mkdir -p "$d"
  cp "${photos[i % ${#photos[@]}]}" "$d/p$i.jpg"
done
mkdir -p "$work/small"
"$bin" -q -s 256 -f png -o "$work/seed" "${photos[@]}" # a few real PNGs to copy from
mapfile -t seeds < <(find "$work/seed" -name '*.png' | sort)
for ((i = 0; i < n; i++)); do
  d="$work/small/d$((i % 20))"
  mkdir -p "$d"
  cp "${seeds[i % ${#seeds[@]}]}" "$d/s$i.png"
done

printf '%-8s %10s %10s %10s %8s %8s\n' tree first_s noop_s touch_s noop% touch%
for tree in photos small; do
  if [ "$tree" = photos ]; then args=(-s 1280x -s 640x -s 320x -f webp -f jpeg)
  else args=(-s 128 -f webp); fi
  out="$work/out-$tree"
  first=$(secs "$bin" --json -j 2 -o "$out" "${args[@]}" "$work/$tree")
  [ "$(decodes)" = "$n" ] || { echo "first run decoded $(decodes) of $n"; exit 1; }
  noops=()
  for r in 1 2 3; do
    noops+=("$(secs "$bin" --json -j 2 -o "$out" "${args[@]}" "$work/$tree")")
    [ "$(decodes)" = 0 ] || { echo "no-op rerun decoded $(decodes)"; exit 1; }
  done
  noop=$(median3 "${noops[@]}")
  find "$work/$tree" -type f -exec touch -d '+1 hour' {} +
  touch_s=$(secs "$bin" --json -j 2 -o "$out" "${args[@]}" "$work/$tree")
  [ "$(decodes)" = 0 ] || { echo "touched rerun decoded $(decodes)"; exit 1; }
  printf '%-8s %10.2f %10.3f %10.3f %7.2f%% %7.2f%%\n' "$tree" "$first" "$noop" "$touch_s" \
    "$(echo "100 * $noop / $first" | bc -l)" "$(echo "100 * $touch_s / $first" | bc -l)"
done
echo "($n files per tree, -j 2, $(nproc) cores; no-op = median of 3; touch = every source's"
echo " mtime moved, bytes unchanged: each is hashed, none decoded)"
