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
! echo "$out" | grep -q -- "--recipe" || fail "make re-ran: $out"
sleep 1
touch "$work/src/animals/LadyBird.jpg"
make -s -f "$samples/build/Makefile" SRC="$work/src" OUT="$work/make-out" 2>"$work/make2.err"
grep -q "0 processed, $n_photos up to date" "$work/make2.err" || fail "touch: $(cat "$work/make2.err")"
# a corrupt source: make fails, and the next make runs pixmill again and fails again (the
# manifest target of a failed run is deleted, not left as "done")
printf 'not a jpeg' > "$work/src/broken.jpg"
mk() { make -f "$samples/build/Makefile" SRC="$work/src" OUT="$work/make-out" "$@"; }
if mk >"$work/make3.out" 2>&1; then fail "make with a corrupt source succeeded"; fi
if mk >"$work/make4.out" 2>&1; then fail "second make with a corrupt source succeeded"; fi
grep -q "broken.jpg" "$work/make4.out" || fail "second make did not run pixmill: $(cat "$work/make4.out")"
rm "$work/src/broken.jpg"
mk -s 2>"$work/make5.err" || fail "make after the fix: $(cat "$work/make5.err")"
# a renamed source, a deleted one and a name with spaces: each makes make run pixmill
mv "$work/src/animals/LadyBird.jpg" "$work/src/animals/Lady Bird.jpg"
mk -s 2>"$work/make6.err" || fail "rename: $(cat "$work/make6.err")"
grep -q "1 processed" "$work/make6.err" || fail "rename did not rebuild: $(cat "$work/make6.err")"
[ -s "$work/make-out/animals/Lady Bird-480.webp" ] || fail "no output for the name with a space"
[ ! -e "$work/make-out/animals/LadyBird-480.webp" ] || fail "the old name's output stayed"
out=$(mk 2>&1); ! echo "$out" | grep -q -- "--recipe" || fail "make re-ran: $out"
victim=$(find "$work/src" -type f -name '*.jpg' ! -name 'Lady*' | head -1)
rm "$victim"
mk -s 2>"$work/make7.err" || fail "delete: $(cat "$work/make7.err")"
grep -q "pruned" "$work/make7.err" || fail "delete did not prune: $(cat "$work/make7.err")"
jq -e ".sources | length == $((n_photos - 1))" "$work/make-out/manifest.json" >/dev/null ||
  fail "manifest after delete"
echo "make: ok ($n_photos photos, rerun made nothing, touched source not rebuilt, a failed run reruns, rename, space and delete rerun)"

# CMake
cmake -S "$samples/build" -B "$work/cmake-build" -DIMG_SRC="$work/src" \
  -DIMG_OUT="$work/cmake-out" >/dev/null
cmake --build "$work/cmake-build" >"$work/cmake.log" 2>&1 || fail "cmake: $(cat "$work/cmake.log")"
[ "$(find "$work/cmake-out" -name '*-480.webp' | wc -l)" = "$(find "$work/src" -name '*.jpg' | wc -l)" ] ||
  fail "cmake outputs"
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
# a source 1200 px wide or less: its fallback <img> is a whole-image rendition, not the card,
# and its card is still 1200x630 (the card may enlarge)
vips resize "$samples/photos/animals/LadyBird.jpg" "$work/site/src/img/narrow.jpg" 0.4 >/dev/null 2>&1 ||
  vipsthumbnail "$samples/photos/animals/LadyBird.jpg" -s 1024x -o "$work/site/src/img/narrow.jpg"
nw=$(vipsheader -f width "$work/site/src/img/narrow.jpg")
[ "$nw" -le 1200 ] || fail "narrow source is $nw wide"
(cd "$work/site" && sh -c "$(jq -r .scripts.images "$samples/build/package.json")" 2>/dev/null)
(cd "$work/site" && sh -c "$(jq -r '.scripts["images:html"]' "$samples/build/package.json")")
grep -q '<img src="/img/narrow-[0-9]*\.jpg"' "$html" || fail "narrow fallback: $(grep narrow "$html")"
! grep -q '<img src="/img/cards/' "$html" || fail "a card is an <img> fallback"
card="$work/site/public/img/cards/narrow.jpg"
[ "$(vipsheader -f width "$card")x$(vipsheader -f height "$card")" = 1200x630 ] ||
  fail "card of a $nw-wide source is $(vipsheader -f width "$card")x$(vipsheader -f height "$card")"
# every file the HTML names exists
grep -o '/img/[^ "]*\.\(webp\|jpg\)' "$html" | sort -u | while read -r url; do
  [ -s "$work/site/public${url}" ] || fail "HTML names missing $url"
done
echo "npm + html: ok"
echo "build samples: all ok"
