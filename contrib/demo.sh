#!/usr/bin/env bash
# The sluice demo: installs what is missing, builds, and runs a canary
# rollout judged by sluice's embedded analyzer, twice:
#
#   1. green, a good build, grows 10% -> 25% -> 50% and is promoted;
#   2. red, a bad build (5% of its requests fail), is reverted at once.
#
# Three demo origins (blue, green, red) sit behind sluice with
# conf/demo.ini; 5000 users send steady traffic; `sluicectl watch` shows
# the split, error rates and latencies live; the verdict and its evidence
# are printed at the end of each rollout.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
build="$top/build/demo"
run=/tmp/sluice-demo

contrib/deps.sh
if [ ! -x "$build/sluice" ] || [ ! -x "$build/sluicectl" ] ||
	[ "$(find "$top/proxy" "$top/control" "$top/analysis" "$top/conf" -newer "$build/sluice" -name '*.[ch]' | head -1)" ]; then
	echo "==> building sluice (build/demo)"
	[ -x configure ] || autoreconf -fi >/dev/null 2>&1
	mkdir -p "$build"
	(cd "$build" && { [ -f Makefile ] || "$top/configure" -q >/dev/null; } &&
		make -j"$(nproc)" sluice sluicectl tests/origin/sl-origin >/dev/null)
fi

for port in 18080 18081 18082 18083 18091; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "demo: port $port on 127.0.0.1 is in use; stop whatever listens there" >&2
		exit 1
	fi
done

rm -rf "$run"
mkdir -p "$run"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -t 1 ] && printf '\033[?25h' # the cursor, if watch was interrupted
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

origin() { # name port args...
	local name=$1 port=$2
	shift 2
	"$build/tests/origin/sl-origin" --listen 127.0.0.1:$port --name $name "$@" 2>>"$run/origins.log" &
	pids+=($!)
}
# 3-13 ms per answer. The wide jitter is what real services have; it also
# keeps a few hundred µs of scheduling delay on a busy machine (the canary's
# origin serves a ninth of the stable's load and wakes up for each request)
# from reading as a latency shift: with 2 ms of jitter under a parallel
# build, green was slower in 57% of pairs and held at its first step.
origin blue 18081 --latency 3 --jitter 10 --error-rate 0.001
origin green 18082 --latency 3 --jitter 10 --error-rate 0.001
origin red 18083 --latency 3 --jitter 10 --error-rate 0.05

"$build/sluice" -c "$top/conf/demo.ini" 2>>"$run/sluice.log" &
pids+=($!)
export SLUICE_SOCKET=$run/control.sock
ctl="$build/sluicectl"
for _ in $(seq 50); do
	[ -S "$SLUICE_SOCKET" ] && "$ctl" show services >/dev/null 2>&1 && break
	sleep 0.1
done

python3 "$top/contrib/demo-load.py" 18080 600 300 5000 >"$run/load.log" 2>&1 &
pids+=($!)
sleep 2

declare -A outcome
rollout() { # version
	local v=$1 watch rc=0
	echo
	echo "==> sluicectl rollout start shop $v"
	"$ctl" rollout start shop "$v"
	sleep 0.5
	if [ -t 1 ]; then
		"$ctl" watch shop --interval 1 &
	else
		"$ctl" watch shop --interval 2 --count 40 &
	fi
	watch=$!
	"$ctl" rollout wait shop --timeout 120 >"$run/wait-$v.log" 2>&1 || rc=$?
	kill "$watch" 2>/dev/null || true
	wait "$watch" 2>/dev/null || true
	echo
	case $rc in
	0)
		echo "==> $v PROMOTED: it is the stable version now, at 100%"
		outcome[$v]=promoted
		;;
	1) # reverted by the analyzer, or aborted by someone
		outcome[$v]=$("$ctl" show rollout shop | awk '$1 == "state:" { print $2 }')
		if [ "${outcome[$v]}" = reverted ]; then
			echo "==> $v REVERTED by the analyzer: back to 0%, the stable version has 100%"
		else
			echo "==> $v: rollout ${outcome[$v]}"
		fi
		;;
	2)
		echo "==> $v: no verdict within 120 s (the analyzer held it, see the last verdicts): aborting the rollout"
		"$ctl" rollout abort shop >/dev/null || true
		outcome[$v]=held
		;;
	*)
		echo "==> $v: sluicectl rollout wait failed (exit $rc): $(tail -n 1 "$run/wait-$v.log")"
		outcome[$v]="unknown (sluicectl exit $rc)"
		;;
	esac
	echo "---- evidence (sluicectl show rollout shop):"
	"$ctl" show rollout shop | tail -n 12
	echo "---- weights now:"
	"$ctl" show services
}

echo "==> sluice on 127.0.0.1:18080 (admin http://127.0.0.1:18091/metrics), 300 req/s from 5000 users"
"$ctl" show services
rollout green
rollout red

echo
echo "==> last events (sluicectl show events 6):"
"$ctl" show events 6
echo
if [ "${outcome[green]}" = promoted ] && [ "${outcome[red]}" = reverted ]; then
	echo "==> demo done: green was promoted on evidence, red was reverted on evidence."
	status=0
else
	echo "==> demo done, not as expected: green ${outcome[green]} (expected promoted), red ${outcome[red]} (expected reverted)."
	echo "    The evidence is above; a machine busy with other work can slow one origin enough to matter."
	status=1
fi
echo "    Logs: $run/sluice.log, state: $run/state.ini"
exit $status
