#!/bin/bash
# The broad hostile-input sweep (issue 5): pixmill over the corpus' bad/ and edge/ sets from
# ../shared/corpus/build-corpus.sh, under the supervisor, as a user would run it.
#
#   bash tests/bench/sweep.sh [CORPUS] [PIXMILL]
#       CORPUS   the assembled corpus (default ~/.cache/pixmill-corpus/assembled)
#       PIXMILL  the binary (default ./build/cli/pixmill)
#
# For each set, at -j 2 into WebP + JPEG at 256 px, then again with TIFF allowed: the exit code
# must be 0 or 1 (never a crash of the batch, a usage or fatal error), every image-named file
# must be accounted for by exactly one event in the --json stream, no temp may remain, and the
# inputs must hash the same afterwards. Prints wall time and peak RSS of the process tree
# (GNU time's %M: the supervisor or its engine, whichever peaked), and the outcome counts by
# status. Exit 1 when any check fails.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
corpus=${1:-$HOME/.cache/pixmill-corpus/assembled}
bin=$(readlink -f "${2:-$root/build/cli/pixmill}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

inputs_digest() { find "$1" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum; }
images_in() { # what the walk takes: image extensions, no dot files
  (cd "$1" && find . -type f -not -path '*/.*' -regextype posix-extended \
    -iregex '.*\.(jpg|jpeg|jpe|jfif|png|webp|gif|tif|tiff|heic|heif|avif)' | wc -l)
}

printf '%-6s %-10s %5s %6s %6s %6s %9s %9s  %s\n' set allow files events done failed wall_s \
  peak_MB statuses
for set in bad edge; do
  src="$corpus/$set"
  if [ ! -d "$src" ]; then
    echo "no $src: run ../shared/corpus/build-corpus.sh first" >&2
    exit 2
  fi
  before=$(inputs_digest "$src")
  n=$(images_in "$src")
  for allow in default tiff; do
    out="$work/out-$set-$allow"
    extra=()
    [ "$allow" = tiff ] && extra=(--allow=tiff)
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" --json -j 2 -s 256 -f webp -f jpeg \
      "${extra[@]}" -o "$out" "$src" >"$work/events.json" 2>"$work/stderr"
    rc=$?
    read -r wall peak < <(tail -1 "$work/time") || true
    events=$(jq -s '[.[] | select(.event != null and .event != "summary")] | length' \
      "$work/events.json")
    done_n=$(jq -s '[.[] | select(.event == "done")] | length' "$work/events.json")
    failed=$(jq -s '[.[] | select(.event == "failed" or .event == "scan_error")] | length' \
      "$work/events.json")
    statuses=$(jq -rs '[.[] | select(.status != null and .status != "PM_OK") | .status] |
      group_by(.) | map("\(.[0] | sub("PM_ERR_"; ""))=\(length)") | join(",")' \
      "$work/events.json")
    printf '%-6s %-10s %5s %6s %6s %6s %9s %9s  %s\n' "$set" "$allow" "$n" "$events" \
      "$done_n" "$failed" "$wall" "$((peak / 1024))" "$statuses"
    if [ "$rc" -gt 1 ]; then
      echo "FAIL: $set/$allow exited $rc" >&2
      tail -5 "$work/stderr" >&2
      fail=1
    fi
    if [ "$events" -lt "$n" ]; then
      echo "FAIL: $set/$allow: $n image files but $events events" >&2
      fail=1
    fi
    temps=$(find "$out" -name '.pixmill-*.tmp' 2>/dev/null | wc -l)
    if [ "$temps" -ne 0 ]; then
      echo "FAIL: $set/$allow left $temps temps" >&2
      fail=1
    fi
    if grep -q 'the process died\|timed out' "$work/stderr"; then
      echo "note: $set/$allow: a file crashed or hung its engine (isolated):" >&2
      grep 'the process died\|timed out' "$work/stderr" >&2
    fi
  done
  if [ "$(inputs_digest "$src")" != "$before" ]; then
    echo "FAIL: $set inputs changed" >&2
    fail=1
  fi
done
[ "$fail" -eq 0 ] && echo "sweep: all checks passed" || echo "sweep: FAILED"
exit "$fail"
