#!/bin/bash
# Installs what pixmill needs to build and test on Debian 12: the one list, used by the
# README's first command and by .ci/run. Uses sudo when not root.
set -euo pipefail
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config libvips-dev libvips-tools libglib2.0-dev libjson-glib-dev libxxhash-dev jq \
  check libpng-dev libjpeg-dev libwebp-dev libheif-dev libtiff-dev gifsicle strace man-db \
  valgrind clang libclang-rt-14-dev >/dev/null
