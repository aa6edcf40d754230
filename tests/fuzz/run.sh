#!/bin/bash
# Builds a fuzz target with clang's libFuzzer (+ASan/UBSan) and runs it for SECONDS (default 20)
# on a copy of its corpus. Usage: bash tests/fuzz/run.sh [SECONDS] [template|options|decode|jpegdc]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-20}
target=${2:-template}
command -v clang >/dev/null || { echo "fuzz: clang not found, nothing to do"; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2046
if [ "$target" = decode ]; then
  # the whole library, instrumented, around pixmill's own job
  # shellcheck disable=SC2046
  clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -DPM_BUILDING_LIBRARY -I"$root/lib/include" -I"$root/lib/src" "$here/fuzz_decode.c" \
    "$root"/lib/src/*.c \
    $(pkg-config --cflags --libs vips glib-2.0 json-glib-1.0 libxxhash) -lm -lpthread \
    -o "$work/fuzz_$target"
  export ASAN_OPTIONS=detect_leaks=0 # libvips/GLib keep type data alive on purpose
elif [ "$target" = jpegdc ]; then
  # the progressive-JPEG DC decoder alone (no libvips in the process)
  # shellcheck disable=SC2046
  clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -DPM_BUILDING_LIBRARY -I"$root/lib/include" -I"$root/lib/src" $(pkg-config --cflags vips) \
    "$here/fuzz_jpegdc.c" "$root/lib/src/jpegdc.c" $(pkg-config --libs glib-2.0) \
    -o "$work/fuzz_$target"
else
  # shellcheck disable=SC2046
  clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$root/lib/include" -I"$root/lib/src" $(pkg-config --cflags glib-2.0) \
    -DPM_BUILDING_LIBRARY "$here/fuzz_$target.c" "$root/lib/src/template.c" \
    "$root/lib/src/options.c" "$here/stubs.c" $(pkg-config --cflags --libs vips) \
    $(pkg-config --libs glib-2.0) \
    -o "$work/fuzz_$target"
fi
mkdir "$work/corpus"
cp "$here"/corpus/"$target"/* "$work/corpus/"
before=$(ls "$work/corpus" | wc -l)
maxlen=512; [ "$target" = decode ] || [ "$target" = jpegdc ] && maxlen=4096
"$work/fuzz_$target" -max_total_time="$secs" -max_len=$maxlen -print_final_stats=1 "$work/corpus" \
  2>"$work/log" || { tail -40 "$work/log"; exit 1; }
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/log" || true
echo "fuzz $target: corpus $before -> $(ls "$work/corpus" | wc -l) inputs, no crash in ${secs}s"
