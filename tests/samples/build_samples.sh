#!/bin/bash
# Runs the build samples in samples/build/ as a user would, against samples/photos, with the
# pixmill under test: the Makefile (twice: the second run must make nothing), the CMake project,
# the npm "images" script's command, and manifest-to-html.sh. Fails on the first wrong result.
# Usage: build_samples.sh PIXMILL_BIN SAMPLES_DIR
set -euo pipefail
bin=$(readlink -f "$1")
samples=$(readlink -f "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
ln -s "$bin" "$work/bin/pixmill"
export PATH="$work/bin:$PATH"
fail() { echo "FAIL: $*" >&2; exit 1; }
n_photos=$(find "$samples/photos" -type f -name '*.jpg' | wc -l)

# make: first run builds, second makes nothing, a touched source re-runs pixmill which rebuilds
# nothing (same bytes)
cp -r "$samples/photos" "$work/src"
make -s -f "$samples/build/Makefile" SRC="$work/src" OUT="$work/make-out" 2>"$work/make1.err"
grep -q "$n_photos processed, 0 up to date" "$work/make1.err" || fail "make: $(cat "$work/make1.err")"
jq -e ".sources | length == $n_photos" "$work/make-out/manifest.json" >/dev/null || fail "manifest"
out=$(make -f "$samples/build/Makefile" SRC="$work/src" OUT="$work/make-out" 2>&1)
echo "$out" | grep -q "Nothing to be done" || fail "make re-ran: $out"
sleep 1
touch "$work/src/animals/LadyBird.jpg"
make -s -f "$samples/build/Makefile" SRC="$work/src" OUT="$work/make-out" 2>"$work/make2.err"
grep -q "0 processed, $n_photos up to date" "$work/make2.err" || fail "touch: $(cat "$work/make2.err")"
echo "make: ok ($n_photos photos, rerun made nothing, touched source not rebuilt)"

# CMake
cmake -S "$samples/build" -B "$work/cmake-build" -DIMG_SRC="$work/src" \
  -DIMG_OUT="$work/cmake-out" >/dev/null
cmake --build "$work/cmake-build" >"$work/cmake.log" 2>&1 || fail "cmake: $(cat "$work/cmake.log")"
[ "$(find "$work/cmake-out" -name '*-480.webp' | wc -l)" = "$n_photos" ] || fail "cmake outputs"
echo "cmake: ok"

# npm script's command, run from a project laid out as the script expects
mkdir -p "$work/site/src" "$work/site/public/img"
cp -r "$samples/photos" "$work/site/src/img"
cp "$samples/build/web.ini" "$samples/build/manifest-to-html.sh" "$work/site/"
(cd "$work/site" && sh -c "$(jq -r .scripts.images "$samples/build/package.json")" 2>/dev/null)
(cd "$work/site" && sh -c "$(jq -r '.scripts["images:html"]' "$samples/build/package.json")")
html="$work/site/public/img/pictures.html"
[ "$(grep -c '<picture>' "$html")" = "$n_photos" ] || fail "html: $(head "$html")"
grep -q '<source type="image/webp" srcset="/img/animals/LadyBird-480.webp 480w, ' "$html" ||
  fail "no webp srcset: $(head -5 "$html")"
grep -q '<img src="/img/animals/LadyBird-1600.jpg" srcset=' "$html" || fail "no img fallback"
# the 1200x630 social card is a crop: never a srcset candidate
! grep -q 'srcset="[^"]*cards/' "$html" || fail "a cropped card is in a srcset"
# every file the HTML names exists
grep -o '/img/[^ "]*\.\(webp\|jpg\)' "$html" | sort -u | while read -r url; do
  [ -s "$work/site/public${url}" ] || fail "HTML names missing $url"
done
echo "npm + html: ok"
echo "build samples: all ok"
