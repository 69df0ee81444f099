#!/bin/sh
# run-fuzz.sh — run every libFuzzer target for a bounded time.
#
#   tests/fuzz/run-fuzz.sh [BUILD_DIR] [SECONDS] [TARGET ...]
#
# BUILD_DIR is a build tree configured with CC=clang --enable-fuzzing whose
# fuzzers are built (make tests/fuzz/fuzz_request ...); this script builds
# nothing. Default: $SL_FUZZ_BUILD, else build/fuzz under the source tree.
# SECONDS per target, default 20. TARGETs: request response config control
# (default: all).
#
# Each target runs on a scratch copy of corpus/TARGET plus regress/TARGET
# (new inputs it finds are not kept). Any crash, leak, timeout or
# out-of-memory input is copied to tests/fuzz/regress/TARGET/, where every
# "make check" replays it (replay_TARGET), and the script exits 1. Commit
# the input with the fix; the name says what went wrong (crash-SHA1, ...).
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_FUZZ_BUILD:-$top/build/fuzz}
seconds=20
targets=

for arg in "$@"; do
	case $arg in
	request | response | config | control)
		targets="$targets $arg"
		;;
	*[!0-9]* | '')
		if [ -d "$arg" ]; then
			build=$arg
		else
			echo "run-fuzz.sh: '$arg' is not a build directory," \
			    "a number of seconds or a target" >&2
			exit 2
		fi
		;;
	*)
		seconds=$arg
		;;
	esac
done
[ -n "$targets" ] || targets="request response config control"
build=$(cd "$build" 2>/dev/null && pwd) || {
	echo "run-fuzz.sh: no build directory $build" \
	    "(configure one with CC=clang --enable-fuzzing)" >&2
	exit 2
}

# Scratch space on tmpfs when there is one: fuzz_control writes (and
# fsyncs) its state file after every change, three times faster there.
tmp=${TMPDIR:-}
if [ -z "$tmp" ]; then
	tmp=/tmp
	[ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm
fi
work=$(mktemp -d "$tmp/sl-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

status=0
for t in $targets; do
	bin=$build/tests/fuzz/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "==> fuzz_$t: $bin is not built" \
		    "(make -C $build tests/fuzz/fuzz_$t)" >&2
		status=1
		continue
	fi
	dir=$work/$t
	mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
	cp "$top/tests/fuzz/corpus/$t/"* "$dir/corpus/" 2>/dev/null
	if [ -d "$top/tests/fuzz/regress/$t" ]; then
		cp "$top/tests/fuzz/regress/$t/"* "$dir/corpus/" 2>/dev/null
	fi
	echo "==> fuzz_$t: $seconds s on $(ls "$dir/corpus" | wc -l) seeds"
	# Leaks are reported at exit and per input; the control target
	# keeps its state file in $TMPDIR.
	TMPDIR=$dir/tmp ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	    "$bin" -max_total_time="$seconds" -timeout=30 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
	    >"$dir/log" 2>&1
	rc=$?
	grep -E '^#[0-9]+.*DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
	    "$dir/log" | sed 's/^/    /'
	found=$(ls "$dir/artifacts" 2>/dev/null)
	if [ $rc -ne 0 ] || [ -n "$found" ]; then
		status=1
		echo "==> fuzz_$t: FAILED (exit $rc); the end of its log:"
		grep -v '^#[0-9]' "$dir/log" | tail -n 40 | sed 's/^/    /'
		mkdir -p "$top/tests/fuzz/regress/$t"
		for f in $found; do
			kept=
			for old in "$top/tests/fuzz/regress/$t/"*; do
				if [ -f "$old" ] &&
				    cmp -s "$old" "$dir/artifacts/$f"; then
					kept=$old
				fi
			done
			if [ -n "$kept" ]; then
				echo "==> fuzz_$t: still fails on ${kept#$top/}"
				continue
			fi
			cp "$dir/artifacts/$f" "$top/tests/fuzz/regress/$t/$f"
			echo "==> fuzz_$t: kept tests/fuzz/regress/$t/$f" \
			    "(replay: $build/tests/fuzz/fuzz_$t" \
			    "tests/fuzz/regress/$t/$f)"
		done
	fi
done
if [ $status -eq 0 ]; then
	echo "==> fuzzing: no crash in $seconds s per target"
else
	echo "==> fuzzing FAILED: fix the code, keep the inputs in" \
	    "tests/fuzz/regress/ as regression tests"
fi
exit $status
