#!/usr/bin/env bash
# Install what is missing, build, and run the whole test suite twice:
# once with --enable-debug (warnings are errors) and once under
# AddressSanitizer + UndefinedBehaviorSanitizer; then run each libFuzzer
# target for SL_FUZZ_SECONDS (default 20). Exits non-zero on any failure.
# Build trees: build/debug, build/asan and build/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

contrib/deps.sh
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi

run_suite() {
	local name=$1
	shift
	local dir="$top/build/$name"
	echo "==> $name: configure $*"
	mkdir -p "$dir"
	(cd "$dir" && "$top/configure" -q "$@" >/dev/null)
	echo "==> $name: build"
	make -C "$dir" -j"$jobs" >/dev/null
	echo "==> $name: make check"
	if ! make -C "$dir" -j"$jobs" check; then
		echo "==> $name: FAILED; logs of failing tests:"
		for log in $(grep -l '^:test-result: \(FAIL\|ERROR\)' $(find "$dir" -name '*.trs') 2>/dev/null); do
			echo "---- ${log%.trs}.log"
			tail -n 60 "${log%.trs}.log"
		done
		return 1
	fi
}

status=0
run_suite debug --enable-debug || status=1
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	run_suite asan --enable-asan || status=1

# Fuzzing: every libFuzzer target for SL_FUZZ_SECONDS (default 20) s on top
# of its seed corpus; a crash fails the run and its input is kept in
# tests/fuzz/regress/ (replayed by every make check from then on).
fuzz_suite() {
	local dir="$top/build/fuzz"
	echo "==> fuzz: configure CC=clang --enable-fuzzing"
	mkdir -p "$dir"
	(cd "$dir" && "$top/configure" -q CC=clang --enable-fuzzing >/dev/null)
	make -C "$dir" -j"$jobs" tests/fuzz/fuzz_request tests/fuzz/fuzz_response \
		tests/fuzz/fuzz_config tests/fuzz/fuzz_control >/dev/null
	tests/fuzz/run-fuzz.sh "$dir" "${SL_FUZZ_SECONDS:-20}"
}
fuzz_suite || status=1

if [ $status -eq 0 ]; then
	echo "==> all suites passed (debug, asan and fuzzing)"
else
	echo "==> test suite FAILED"
fi
exit $status
