#!/bin/bash
# Turns a pixmill manifest into one <picture> per source: a <source> per modern format (AVIF,
# then WebP) and an <img> with the JPEG/PNG srcset as the fallback, width and height set from
# the largest output so the page does not jump. Needs jq.
#   bash manifest-to-html.sh public/img/manifest.json /img/ > pictures.html
# Names in the manifest's srcset are already percent-escaped; BASE is prefixed as given.
set -euo pipefail
manifest=${1:?usage: manifest-to-html.sh MANIFEST [BASE_URL] [SIZES]}
base=${2:-}
sizes=${3:-100vw}
jq -r --arg base "$base" --arg sizes "$sizes" '
  def esc: gsub("&"; "&amp;") | gsub("\""; "&quot;") | gsub("<"; "&lt;") | gsub(">"; "&gt;");
  def prefixed: split(", ") | map($base + .) | join(", ");
  .sources[]
  | select(.status == "ok" and (.outputs | length) > 0)
  | . as $s
  # whole-image renditions only (the aspect of the source within rounding, as the srcset
  # takes them): a cropped card is no fallback for the picture
  | [.outputs[] | select((((.width * $s.source_height) - (.height * $s.source_width)) | fabs) * 2
                         <= ($s.source_width + $s.source_height))] as $whole
  | ([$whole[] | select(.format == "jpeg" or .format == "png")] | sort_by(.width) | last) as $fb
  | ($fb // ($whole | sort_by(.width) | last) // (.outputs | sort_by(.width) | last)) as $img
  | "<picture>",
    (["avif", "webp"][] as $f | $s.srcset[$f] // empty
      | "  <source type=\"image/\($f)\" srcset=\"\(prefixed | esc)\" sizes=\"\($sizes | esc)\">"),
    "  <img src=\"\(($base + $img.url) | esc)\""
      + (if ($s.srcset[$img.format] // "") != "" then
           " srcset=\"\($s.srcset[$img.format] | prefixed | esc)\" sizes=\"\($sizes | esc)\""
         else "" end)
      + " width=\"\($img.width)\" height=\"\($img.height)\" alt=\"\" loading=\"lazy\" decoding=\"async\">",
    "</picture>"
' "$manifest"
