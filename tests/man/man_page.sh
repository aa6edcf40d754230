#!/bin/bash
# The man page is the option reference: every option 'pixmill --help' lists has an entry in
# cli/pixmill.1 and every entry there is an option --help lists, and man renders the page
# without a warning at 80 columns.
#   bash man_page.sh PIXMILL MANPAGE
set -uo pipefail
bin=$1 page=$2
fail=0
command -v man >/dev/null || { echo "FAIL: man is not installed (.ci/deps.sh installs man-db)"; exit 1; }

# --help: the option column, lines that start with two spaces and a dash
help_opts=$("$bin" --help | grep -E '^  +-' | grep -oE '(^|[ ,])--?[A-Za-z0-9][A-Za-z0-9-]*' |
  sed 's/^[ ,]*//' | sort -u)
# the page: the tag line after each .TP that is an option (starts with .B, .BI or .BR \-)
page_opts=$(awk '/^\.TP/ {getline; if ($0 ~ /^\.B[IR]? +\\-/) print}' "$page" |
  sed 's/\\-/-/g; s/"//g' | grep -oE '(^|[ ,])--?[A-Za-z0-9][A-Za-z0-9-]*' | sed 's/^[ ,]*//' |
  sort -u)
[ -n "$help_opts" ] || { echo "FAIL: no options read from --help"; fail=1; }
[ -n "$page_opts" ] || { echo "FAIL: no options read from $page"; fail=1; }
missing=$(comm -23 <(echo "$help_opts") <(echo "$page_opts"))
extra=$(comm -13 <(echo "$help_opts") <(echo "$page_opts"))
[ -z "$missing" ] || { echo "FAIL: in --help, not in the man page:" $missing; fail=1; }
[ -z "$extra" ] || { echo "FAIL: in the man page, not in --help:" $extra; fail=1; }
echo "options: $(echo "$help_opts" | wc -l) in --help, $(echo "$page_opts" | wc -l) in the man page"

warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
[ -z "$warnings" ] || { echo "FAIL: man --warnings -l $page:"; echo "$warnings"; fail=1; }
lines=$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
[ "$lines" -gt 100 ] || { echo "FAIL: the page renders to $lines lines"; fail=1; }
# no rendered line wider than the terminal it was made for
wide=$(MANWIDTH=80 man -l "$page" 2>/dev/null | perl -CS -ne 'chomp; print "$_\n" if length($_) > 80' | head -3)
[ -z "$wide" ] || { echo "FAIL: lines over 80 columns:"; echo "$wide"; fail=1; }
[ $fail = 0 ] && echo "ok"
exit $fail
