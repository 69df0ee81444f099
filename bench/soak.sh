#!/usr/bin/env bash
# Soak and fault run: bench/soak.sh [SECONDS] (default 600). Builds with
# plain ./configure in build/bench if needed, then runs bench/soak.py.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
build=${SL_TOP_BUILDDIR:-$top/build/bench}
contrib/deps.sh
if [ ! -x "$build/sluice" ]; then
	[ -x configure ] || autoreconf -fi >/dev/null 2>&1
	mkdir -p "$build"
	(cd "$build" && "$top/configure" -q >/dev/null && make -j"$(nproc)" >/dev/null)
fi
SL_TOP_BUILDDIR=$build SL_TOP_SRCDIR=$top exec /usr/bin/python3 "$top/bench/soak.py" "${1:-600}"
