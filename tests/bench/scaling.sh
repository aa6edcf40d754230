#!/bin/bash
# Scaling with workers: -j 1, 2 (and 4, 8 where the machine has the cores) against the ideal
# (the single-worker rate x workers), on the photo set of workload (a) in peers.sh: pixmill,
# and the same parallelism for what bounds it, so the machine's own scaling is in the table:
#   vips-xargs    vipsthumbnail via `xargs -P j` (VIPS_CONCURRENCY=1), as in peers.sh
#   decode-only   `djpeg -scale 1/8` on every photo, j at once (decoding alone, writes nothing)
#   cpu-only      j processes sharing a loop of integer additions (1e6 a photo, in awk): no
#                 memory traffic, so it shows what the cores give when nothing is shared
#
#   bash tests/bench/scaling.sh            (env: ROUNDS [3], PHOTO_COPIES [12], CORPUS, PIXMILL,
#                                           TOOLS ["pixmill vips-xargs decode-only cpu-only"],
#                                           CSV [tests/bench/results/scaling.csv])
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
if [ ! -x /usr/bin/djpeg ]; then
  apt-get install -y libjpeg-turbo-progs >/dev/null || { echo "cannot install djpeg" >&2; exit 2; }
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
TOOLS=${TOOLS:-pixmill vips-xargs decode-only cpu-only}
read -r -a tools <<<"$TOOLS"
run_one() { # tool j -> $work/res
  local tool=$1 j=$2 t="$work/treepeak" res="$work/res" list="$work/list"
  local k=$(((n + j * 4 - 1) / (j * 4)))
  rm -rf "$work/out" && mkdir -p "$work/out"
  case $tool in
  pixmill)
    "$t" "$res" "$PIXMILL" -q -j "$j" -s 256 -f jpeg -Q 80 -o "$work/out" "$work/photos" ;;
  vips-xargs)
    VIPS_CONCURRENCY=1 "$t" "$res" xargs -0 -P "$j" -n "$k" -a "$list" vipsthumbnail \
      -s 256x256 -o "$work/out/%s.jpg[Q=80,strip]" 2>/dev/null ;;
  decode-only)
    "$t" "$res" xargs -0 -P "$j" -n "$k" -a "$list" sh -c \
      'for f; do djpeg -scale 1/8 -outfile /dev/null "$f" || exit 1; done' sh ;;
  cpu-only)
    "$t" "$res" xargs -0 -P "$j" -n "$k" -a "$list" sh -c \
      'exec awk -v n=$# "BEGIN { for (u = 0; u < n; u++) for (i = 0; i < 1e6; i++) s += i }"' sh ;;
  *) echo "unknown tool $tool" >&2; exit 2 ;;
  esac
  local made=$n
  case $tool in pixmill | vips-xargs) made=$(find "$work/out" -name '*.jpg' | wc -l) ;; esac
  read -r w c pk ex <"$res"
  [ "$ex" = 0 ] && [ "$made" = "$n" ] || echo "$tool -j $j: exit $ex, $made of $n outputs" >&2
}
find "$work/photos" -type f -print0 | sort -z >"$work/list"
CSV=${CSV:-$here/results/scaling.csv}
echo "tool,jobs,round,wall_s,cpu_s,peak_mb" >"$CSV.tmp"
declare -A walls
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((${#tools[@]} - 1))); do
    tool=${tools[$(((i + r - 1) % ${#tools[@]}))]}
    for j in "${jobs[@]}"; do
      run_one "$tool" "$j"
      walls[$tool,$j]+="$w $c $pk;"
      echo "$tool,$j,$r,$w,$c,$((pk / 1024))" >>"$CSV.tmp"
      printf '  %-11s -j %d round %d: %.2f s, cpu %.2f s, peak %d MB\n' "$tool" "$j" "$r" "$w" \
        "$c" $((pk / 1024))
    done
  done
done
mv "$CSV.tmp" "$CSV"
median() { tr ' ' '\n' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "| tool | -j | wall s | images/s | ideal images/s | of ideal | CPU ms/image | peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
for tool in "${tools[@]}"; do
  base=""
  for j in "${jobs[@]}"; do
    col() { echo "${walls[$tool,$j]}" | tr ';' '\n' | awk -v f="$1" 'NF { print $f }' | median; }
    w=$(col 1) c=$(col 2) pk=$(col 3)
    rate=$(echo "$n / $w" | bc -l)
    [ -z "$base" ] && base=$rate
    ideal=$(echo "$base * $j" | bc -l)
    printf '| %s | %d | %.2f | %.1f | %.1f | %.0f %% | %.0f | %d |\n' "$tool" "$j" "$w" "$rate" \
      "$ideal" "$(echo "100 * $rate / $ideal" | bc -l)" "$(echo "1000 * $c / $n" | bc -l)" \
      $((pk / 1024))
  done
done
