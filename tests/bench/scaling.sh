#!/bin/bash
# pixmill's scaling with workers: -j 1, 2 (and 4, 8 where the machine has the cores) against the
# ideal (the single-worker rate x workers), on the photo set of workload (a) in peers.sh.
#
#   bash tests/bench/scaling.sh            (env: ROUNDS [3], PHOTO_COPIES [12], CORPUS, PIXMILL)
#
# Medians of interleaved rounds; page cache warmed; wall time, images/s, CPU ms per image and
# peak RSS of the process tree (tests/bench/treepeak.c).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-3}
PHOTO_COPIES=${PHOTO_COPIES:-12}
CORPUS=${CORPUS:-$HOME/.cache/pixmill-corpus/assembled}
PIXMILL=$(readlink -f "${PIXMILL:-$root/build/cli/pixmill}")
if [ ! -d "$CORPUS/photos/jpeg" ]; then
  bash "$root/../shared/corpus/build-corpus.sh" || { echo "no corpus" >&2; exit 2; }
fi
work=$(mktemp -d /tmp/pixmill-scaling.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/treepeak" "$here/treepeak.c" || exit 2
mkdir -p "$work/photos"
for c in $(seq -w 1 "$PHOTO_COPIES"); do
  for p in "$CORPUS"/photos/jpeg/*.jpg; do cp "$p" "$work/photos/c$c-$(basename "$p")"; done
done
n=$(find "$work/photos" -type f | wc -l)
find "$work/photos" -type f -exec cat {} + >/dev/null
cores=$(nproc)
jobs=(1 2)
for j in 4 8; do [ "$cores" -ge "$j" ] && jobs+=("$j"); done
declare -A walls
for r in $(seq 1 "$ROUNDS"); do
  for j in "${jobs[@]}"; do
    rm -rf "$work/out"
    "$work/treepeak" "$work/res" "$PIXMILL" -q -j "$j" -s 256 -f jpeg -Q 80 -o "$work/out" \
      "$work/photos"
    read -r w c pk ex <"$work/res"
    made=$(find "$work/out" -name '*.jpg' | wc -l)
    [ "$ex" = 0 ] && [ "$made" = "$n" ] || echo "-j $j round $r: exit $ex, $made of $n outputs" >&2
    walls[$j]+="$w $c $pk;"
    printf '  -j %d round %d: %.2f s, cpu %.2f s, peak %d MB\n' "$j" "$r" "$w" "$c" $((pk / 1024))
  done
done
median() { tr ' ' '\n' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "| -j | wall s | images/s | ideal images/s | of ideal | CPU ms/image | peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
base=""
for j in "${jobs[@]}"; do
  w=$(echo "${walls[$j]}" | tr ';' '\n' | awk 'NF { print $1 }' | median)
  c=$(echo "${walls[$j]}" | tr ';' '\n' | awk 'NF { print $2 }' | median)
  pk=$(echo "${walls[$j]}" | tr ';' '\n' | awk 'NF { print $3 }' | median)
  rate=$(echo "$n / $w" | bc -l)
  [ -z "$base" ] && base=$rate
  ideal=$(echo "$base * $j" | bc -l)
  printf '| %d | %.2f | %.1f | %.1f | %.0f %% | %.0f | %d |\n' "$j" "$w" "$rate" "$ideal" \
    "$(echo "100 * $rate / $ideal" | bc -l)" "$(echo "1000 * $c / $n" | bc -l)" $((pk / 1024))
done
