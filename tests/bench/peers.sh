#!/bin/bash
# pixmill against the real peers, in one run, as ratios (issue 6).
#
#   bash tests/bench/peers.sh [WORKLOAD...]        (default: a c d b)
#
# Workloads:
#   a  one thumbnail per photo: fit in 256x256, JPEG Q80, metadata stripped
#   b  srcset: widths 320/640/1280 x WebP+JPEG per photo (peers run once per output)
#   e  srcset: widths 320/640/1280 x WebP+AVIF per photo, every encoder at effort 4 (pixmill's
#      default), AVIF 4:2:0
# Workload a also times decoding alone, the bound: `djpeg -scale 1/8` on every photo, P at once
# (tool decode-only; it writes nothing). Workload c also times libvips alone (tool
# libvips-floor, tests/bench/floor.c): P processes, each thumbnailing every P-th file in a loop,
# as vipsthumbnail does per file, with no process start per file and nothing else; and the same
# as P threads of one process (libvips-floor-threads), with libvips' vector paths off as in
# pixmill (two threads would race in liborc).
#   c  many small files (PNG and JPEG under 100 KB) to 128 px JPEG Q80
#   d  a mixed set (progressive JPEG, large PNG, WebP, AVIF, HEIC) to 256 px JPEG Q80
# Environment (defaults in brackets): P parallelism [2], ROUNDS [3], PHOTO_COPIES [12] (x43
# photos = 516), SMALL [5000], SRCSET_PHOTOS [129], AVIF_PHOTOS [43], MIXED_PHOTOS [20] (x5
# kinds), CSV
# [tests/bench/results/peers.csv], TOOLS (only these, e.g. "pixmill vips-xargs"),
# CORPUS [~/.cache/pixmill-corpus/assembled], PIXMILL [./build/cli/pixmill].
#
# Tool pixmill-ref runs $PIXMILL_REF (another build of pixmill, e.g. the commit before a change)
# exactly as pixmill, to compare the two round by round in one run.
# pixmill runs one engine process a core (lanes); tool pixmill-one-process runs its batch as
# threads of one process (--no-isolate), for comparison (workloads a, c).
# Peers, all at parallelism P: vipsthumbnail in one process (libvips threads), vipsthumbnail
# via `xargs -P P -n K` with VIPS_CONCURRENCY=1 (and one process per file for workload c),
# ImageMagick `mogrify -thumbnail` naive (one process) and tuned (`-define jpeg:size`,
# MAGICK_THREAD_LIMIT=1, xargs -P P), sharp-cli from npm (its own libvips; UV_THREADPOOL_SIZE=P,
# VIPS_CONCURRENCY=1), and pixmill -j P. The page cache is warmed first; rounds are
# interleaved (tool order rotates each round); each figure is the median of the rounds. Peak
# RSS is the sum over the whole process tree, sampled every 10 ms (tests/bench/treepeak.c).
# Every output is counted and its dimensions read back with vipsheader.
#
# Installs what it needs: ImageMagick and djpeg from Debian, sharp-cli into
# ~/.cache/pixmill-bench/node.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
P=${P:-2}
ROUNDS=${ROUNDS:-3}
PHOTO_COPIES=${PHOTO_COPIES:-12}
SMALL=${SMALL:-5000}
SRCSET_PHOTOS=${SRCSET_PHOTOS:-129}
CORPUS=${CORPUS:-$HOME/.cache/pixmill-corpus/assembled}
PIXMILL=$(readlink -f "${PIXMILL:-$root/build/cli/pixmill}")
CSV=${CSV:-$here/results/peers.csv}
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(a c d b e)

# ---- what it needs ----
if [ ! -x /usr/bin/mogrify ] || ! /usr/bin/mogrify -version 2>/dev/null | grep -q ImageMagick; then
  apt-get install -y imagemagick >/dev/null || { echo "cannot install imagemagick" >&2; exit 2; }
fi
if [ ! -x /usr/bin/djpeg ]; then
  apt-get install -y libjpeg-turbo-progs >/dev/null || { echo "cannot install djpeg" >&2; exit 2; }
fi
node_dir=$HOME/.cache/pixmill-bench/node
if [ ! -x "$node_dir/node_modules/.bin/sharp" ]; then
  mkdir -p "$node_dir"
  (cd "$node_dir" && npm install --no-audit --no-fund sharp-cli@6 >/dev/null) ||
    { echo "cannot install sharp-cli" >&2; exit 2; }
fi
SHARP=$node_dir/node_modules/.bin/sharp
if [ ! -d "$CORPUS/photos/jpeg" ]; then
  bash "$root/../shared/corpus/build-corpus.sh" || { echo "no corpus" >&2; exit 2; }
fi
[ -x "$PIXMILL" ] || { echo "build pixmill first (README)" >&2; exit 2; }
case " ${TOOLS:-} " in *" pixmill-ref "*)
  [ -x "${PIXMILL_REF:-}" ] || { echo "pixmill-ref needs PIXMILL_REF=another pixmill" >&2; exit 2; } ;;
esac
work=$(mktemp -d /tmp/pixmill-peers.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/treepeak" "$here/treepeak.c" || exit 2
# shellcheck disable=SC2046
cc -O2 -o "$work/floor" "$here/floor.c" $(pkg-config --cflags --libs vips) -lpthread || exit 2
mkdir -p "$(dirname "$CSV")"

# ---- the sets (copies, not links: pixmill makes a hard-linked file once) ----
mapfile -t photos < <(find "$CORPUS/photos/jpeg" -name '*.jpg' | sort)
mkdir -p "$work/photos"
for c in $(seq -w 1 "$PHOTO_COPIES"); do
  for p in "${photos[@]}"; do cp "$p" "$work/photos/c$c-$(basename "$p")"; done
done
# first_photos DIR N: the first N photos of the set, copied to DIR
first_photos() {
  mkdir -p "$1"
  find "$work/photos" -name '*.jpg' -print0 | sort -z | head -z -n "$2" | xargs -0 -r cp -t "$1"
}
first_photos "$work/srcset" "$SRCSET_PHOTOS"
first_photos "$work/avifset" "${AVIF_PHOTOS:-43}"
# small: 100 distinct images (43 photos at a few sizes, JPEG and PNG), copied to SMALL names
mkdir -p "$work/small-src" "$work/small"
i=0
for p in "${photos[@]}"; do
  for s in 200 280 360; do
    if [ $((i % 5)) -lt 2 ]; then
      vipsthumbnail "$p" -s "${s}x${s}" -o "$work/small-src/s$i.png[strip]" 2>/dev/null
    else
      vipsthumbnail "$p" -s "$((s + 100))x$((s + 100))" -o "$work/small-src/s$i.jpg[Q=85,strip]" 2>/dev/null
    fi
    i=$((i + 1))
  done
done
mapfile -t smalls < <(find "$work/small-src" -type f -size -100k | sort)
for k in $(seq 0 $((SMALL - 1))); do
  src=${smalls[$((k % ${#smalls[@]}))]}
  cp "$src" "$work/small/f$(printf %05d "$k").${src##*.}"
done
# mixed: from 20 photos, one of each kind
mkdir -p "$work/mixed"
for p in "${photos[@]:0:${MIXED_PHOTOS:-20}}"; do
  b=$(basename "$p" .jpg)
  # distinct stems: peers write STEM.jpg and would overwrite one another's outputs
  vips copy "$p" "$work/mixed/$b-prog.jpg[interlace,Q=90]"
  vips copy "$p" "$work/mixed/$b-big.png"
  vips copy "$p" "$work/mixed/$b-webp.webp[Q=90]"
  vips copy "$p" "$work/mixed/$b-avif.avif[Q=60,effort=2]"
  vips copy "$p" "$work/mixed/$b-heic.heic[Q=60,compression=hevc]"
done

# ---- running and checking ----
warm() { find "$1" -type f -exec cat {} + >/dev/null; }
# check DIR COUNT BOX: number of outputs and how many fit BOX on their long side (BOX-1..BOX,
# or smaller when the source is smaller, which none of these sets has)
check() {
  local dir=$1 want=$2 box=$3 got ok
  got=$(find "$dir" -type f -not -path '*/.pixmill/*' | wc -l)
  ok=$(find "$dir" -type f -not -path '*/.pixmill/*' -print0 | xargs -0 -r -n 200 vipsheader 2>/dev/null |
    awk -v box="$box" '{ split($2, d, "x"); w = d[1] + 0; h = d[2] + 0; m = w > h ? w : h;
                         if (m <= box && m >= box - 1) n++ } END { print n + 0 }')
  echo "$got $ok"
}

declare -A wall cpu peak outs
run_tool() { # run_tool WORKLOAD TOOL ROUND
  # A new folder for every run, nothing deleted until the end: on ext4 without a journal (this
  # machine's root) each file created within a minute of many deletions pays for them, since
  # the inode allocator skips every recently deleted inode one by one (recently_deleted() in
  # the kernel's ext4/ialloc.c). With one output folder emptied between runs, a run paid for
  # the previous run's files. pixmill creates two files a source (the output and its build
  # record), so it made twice the files, each past twice the deleted ones: 12 % of its CPU was
  # in that function on 1,000 small files (perf record).
  local wl=$1 tool=$2 r=$3 src box fmt
  local out="$work/out-$wl-$tool-$r"
  mkdir -p "$out"
  case $wl in
  a) src=$work/photos box=256 ;;
  b) src=$work/srcset box=1280 ;;
  e) src=$work/avifset box=1280 ;;
  c) src=$work/small box=128 ;;
  d) src=$work/mixed box=256 ;;
  esac
  local n_src k
  n_src=$(find "$src" -type f | wc -l)
  k=$(((n_src + P * 4 - 1) / (P * 4)))
  [ "$wl" = c ] && k=125
  local t="$work/treepeak" res="$work/res"
  local list="$work/list"
  find "$src" -type f -print0 | sort -z >"$list"
  case $tool in
  pixmill | pixmill-ref)
    local bin=$PIXMILL
    [ "$tool" = pixmill-ref ] && bin=$PIXMILL_REF
    if [ "$wl" = b ]; then
      "$t" "$res" "$bin" -q -j "$P" -s 320 -s 640 -s 1280 -f webp -f jpeg -Q 80 -o "$out" "$src"
    elif [ "$wl" = e ]; then
      "$t" "$res" "$bin" -q -j "$P" -s 320 -s 640 -s 1280 -f webp -f avif -Q 80 -o "$out" \
        "$src"
    else
      "$t" "$res" "$bin" -q -j "$P" -s "$box" -f jpeg -Q 80 -o "$out" "$src"
    fi ;;
  pixmill-one-process) # the batch as threads of one process, as before the lanes
    "$t" "$res" "$PIXMILL" --no-isolate -q -j "$P" -s "$box" -f jpeg -Q 80 -o "$out" "$src" ;;
  vips-serial)
    "$t" "$res" sh -c 'cd "$1" && shift && exec vipsthumbnail "$@"' sh "$src" -s "${box}x${box}" \
      -o "$out/%s.jpg[Q=80,strip]" $(cd "$src" && ls) ;;
  vips-xargs)
    if [ "$wl" = b ]; then
      VIPS_CONCURRENCY=1 "$t" "$res" sh -c '
        for w in 320 640 1280; do for f in webp jpg; do
          xargs -0 -P "$1" -n "$2" vipsthumbnail -s "${w}x${w}" -o "$3/%s-$w.$f[Q=80,strip]" <"$4" || exit 1
        done; done' sh "$P" "$k" "$out" "$list"
    elif [ "$wl" = e ]; then
      VIPS_CONCURRENCY=1 "$t" "$res" sh -c '
        for w in 320 640 1280; do for f in webp avif; do
          xargs -0 -P "$1" -n "$2" vipsthumbnail -s "${w}x${w}" -o "$3/%s-$w.$f[Q=80,effort=4,strip]" <"$4" || exit 1
        done; done' sh "$P" "$k" "$out" "$list"
    else
      VIPS_CONCURRENCY=1 "$t" "$res" xargs -0 -P "$P" -n "$k" -a "$list" vipsthumbnail \
        -s "${box}x${box}" -o "$out/%s.jpg[Q=80,strip]"
    fi ;;
  vips-per-file)
    VIPS_CONCURRENCY=1 "$t" "$res" xargs -0 -P "$P" -n 1 -a "$list" vipsthumbnail \
      -s "${box}x${box}" -o "$out/%s.jpg[Q=80,strip]" ;;
  libvips-floor)
    # P processes, each on every P-th file, doing only what vipsthumbnail does per file (no
    # process start a file, no temp, fsync or record): what libvips itself costs
    VIPS_CONCURRENCY=1 "$t" "$res" sh -c '
      for i in $(seq 0 $(($1 - 1))); do
        mkdir -p "$3/$i"
        tr "\0" "\n" <"$4" | awk -v i="$i" -v p="$1" "NR % p == i" | tr "\n" "\0" |
          "$5" "$3/$i" "$2" &
        pids="$pids $!"
      done
      rc=0
      for p in $pids; do wait "$p" || rc=1; done
      exit $rc' sh "$P" "$box" "$out" "$list" "$work/floor" ;;
  libvips-floor-threads)
    VIPS_CONCURRENCY=1 "$t" "$res" "$work/floor" "$out" "$box" "$P" <"$list" ;;
  decode-only)
    "$t" "$res" xargs -0 -P "$P" -n "$k" -a "$list" sh -c \
      'for f; do djpeg -scale 1/8 -outfile /dev/null "$f" || exit 1; done' sh ;;
  mogrify)
    "$t" "$res" xargs -0 -a "$list" /usr/bin/mogrify -path "$out" -format jpg \
      -thumbnail "${box}x${box}" -quality 80 -strip ;;
  mogrify-tuned)
    MAGICK_THREAD_LIMIT=1 "$t" "$res" xargs -0 -P "$P" -n "$k" -a "$list" /usr/bin/mogrify \
      -path "$out" -format jpg -define "jpeg:size=$((box * 2))x$((box * 2))" \
      -thumbnail "${box}x${box}" -quality 80 -strip ;;
  sharp-cli)
    if [ "$wl" = b ]; then
      UV_THREADPOOL_SIZE=$P VIPS_CONCURRENCY=1 "$t" "$res" sh -c '
        for w in 320 640 1280; do for f in webp jpeg; do
          mkdir -p "$3/$w-$f"
          xargs -0 -n 100000 -a "$4" "$1" -o "$3/$w-$f" -f "$f" -q 80 --autoOrient \
            resize "$w" "$w" --fit inside -i >/dev/null || exit 1
        done; done' sh "$SHARP" "$P" "$out" "$list"
    elif [ "$wl" = e ]; then
      UV_THREADPOOL_SIZE=$P VIPS_CONCURRENCY=1 "$t" "$res" sh -c '
        for w in 320 640 1280; do for f in webp avif; do
          mkdir -p "$3/$w-$f"
          xargs -0 -n 100000 -a "$4" "$1" -o "$3/$w-$f" -f "$f" -q 80 --effort 4 \
            --chromaSubsampling 4:2:0 --autoOrient resize "$w" "$w" --fit inside -i >/dev/null || exit 1
        done; done' sh "$SHARP" "$P" "$out" "$list"
    else
      UV_THREADPOOL_SIZE=$P VIPS_CONCURRENCY=1 "$t" "$res" sh -c '
        xargs -0 -n 100000 -a "$3" "$1" -o "$2" -f jpeg -q 80 --autoOrient \
          resize "$4" "$4" --fit inside -i >/dev/null' sh "$SHARP" "$out" "$list" "$box"
    fi ;;
  esac
  local rc=$? w c pk ex
  read -r w c pk ex <"$res"
  local want=$n_src
  [ "$wl" = b ] || [ "$wl" = e ] && want=$((n_src * 6))
  local got ok
  read -r got ok < <(check "$out" "$want" "$box")
  # srcset: only the 1280 outputs fit the 1280 box; count every output, check sizes by width
  if [ "$wl" = b ] || [ "$wl" = e ]; then ok=$got; fi
  echo "$wl,$tool,$r,$w,$c,$((pk / 1024)),$n_src,$got,$ok,$ex" >>"$CSV.tmp"
  printf '  %-2s %-14s round %d: %7.2f s  cpu %7.2f s  peak %5d MB  outputs %d/%d (%d fit)%s\n' \
    "$wl" "$tool" "$r" "$w" "$c" "$((pk / 1024))" "$got" "$want" "$ok" \
    "$([ "$ex" = 0 ] || echo "  exit $ex")"
}

tools_for() {
  case $1 in
  a) echo "pixmill pixmill-one-process vips-xargs vips-serial sharp-cli mogrify-tuned mogrify decode-only" ;;
  d) echo "pixmill vips-xargs vips-serial sharp-cli mogrify-tuned mogrify" ;;
  b | e) echo "pixmill vips-xargs sharp-cli" ;;
  c) echo "pixmill pixmill-one-process vips-xargs vips-per-file sharp-cli mogrify-tuned libvips-floor libvips-floor-threads" ;;
  esac
}

echo "workload,tool,round,wall_s,cpu_s,peak_mb,sources,outputs,outputs_fit,exit" >"$CSV.tmp"
for wl in "${workloads[@]}"; do
  case $wl in a) warm "$work/photos" ;; b) warm "$work/srcset" ;; c) warm "$work/small" ;; d) warm "$work/mixed" ;; e) warm "$work/avifset" ;; esac
  read -r -a tools <<<"${TOOLS:-$(tools_for "$wl")}"
  echo "workload $wl:"
  for r in $(seq 1 "$ROUNDS"); do
    n=${#tools[@]}
    for j in $(seq 0 $((n - 1))); do
      run_tool "$wl" "${tools[$(((j + r - 1) % n))]}" "$r"
    done
  done
done
mv "$CSV.tmp" "$CSV"

# ---- the table: medians per (workload, tool), and ratios to the best peer ----
python3 - "$CSV" "$P" <<'EOF' 2>/dev/null || awk -F, 'NR > 1 { print }' "$CSV"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
p = sys.argv[2]
by = {}
for r in rows:
    by.setdefault((r["workload"], r["tool"]), []).append(r)
print(f"| workload | tool (P={p}) | wall s | images/s | CPU ms/image | peak RSS MB | outputs (fit) | vs pixmill |")
print("|---|---|---|---|---|---|---|---|")
for wl in sorted({k[0] for k in by}):
    med = {}
    for (w, tool), rs in by.items():
        if w != wl:
            continue
        wall = statistics.median(float(r["wall_s"]) for r in rs)
        cpu = statistics.median(float(r["cpu_s"]) for r in rs)
        peak = statistics.median(int(r["peak_mb"]) for r in rs)
        n = int(rs[0]["sources"])
        med[tool] = (wall, cpu, peak, n, rs[0]["outputs"], rs[0]["outputs_fit"])
    pm = med.get("pixmill", (None,))[0]
    for tool, (wall, cpu, peak, n, outs, fit) in sorted(med.items(), key=lambda kv: kv[1][0]):
        ratio = f"{wall / pm:.2f}x" if pm else ""
        print(f"| {wl} | {tool} | {wall:.2f} | {n / wall:.1f} | {1000 * cpu / n:.0f} | {peak} | {outs} ({fit}) | {ratio} |")
EOF
