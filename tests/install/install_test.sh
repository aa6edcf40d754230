#!/bin/bash
# Installs the build into a temporary prefix, then builds and runs a consumer three ways:
# pkg-config, CMake find_package (shared), find_package (static). Also checks that the shared
# library exports only public pm_ symbols, and that the man page is installed.  install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/pixmill-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
prefix=$work/prefix
libdir=$(dirname "$(find "$prefix" -name pixmill.pc)")/..
test -x "$prefix/bin/pixmill"
test -f "$prefix/include/pixmill/pixmill.h"
"$prefix/bin/pixmill" --version | grep -q '^pixmill '
# the man page, where man looks for it below the prefix
test -f "$prefix/share/man/man1/pixmill.1"
MANPATH=$prefix/share/man man -w pixmill | grep -q "^$prefix/share/man/man1/pixmill.1"

# 1. pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -o "$work/c_pc" "$src/consumer.c" $(pkg-config --cflags --libs pixmill)
LD_LIBRARY_PATH=$libdir "$work/c_pc"

# 2 and 3. find_package, shared and static
cmake -S "$src" -B "$work/cb" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cb" >/dev/null
LD_LIBRARY_PATH=$libdir "$work/cb/consumer_shared"
"$work/cb/consumer_static"

# Only public symbols leave the shared library.
so=$(find "$prefix" -name 'libpixmill.so.*.*' | head -n 1)
leaked=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^pm_[a-z]' || true)
if [ -n "$leaked" ]; then echo "non-public symbols exported: $leaked"; exit 1; fi
nm -D --defined-only "$so" | grep -q ' pm_batch_run$'
echo "install test: 5 passed, 0 failed"
