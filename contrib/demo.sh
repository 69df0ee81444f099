#!/usr/bin/env bash
# The sluice demo: installs what is missing, builds, starts two demo origins
# (blue, the stable version, and green, the canary) behind sluice with
# conf/demo.ini, sends steady traffic from 5000 distinct users, and grows
# the canary 10% -> 25% -> 50% -> 100% while showing live how requests
# split. Each step is a config reload (SIGHUP), which is atomic for every
# request and keeps every user's version sticky: users only ever move from
# stable to the canary, never back.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
build="$top/build/demo"
run=/tmp/sluice-demo
step_seconds=${DEMO_STEP_SECONDS:-5}

contrib/deps.sh
if [ ! -x "$build/sluice" ] || [ ! -x "$build/tests/origin/sl-origin" ]; then
	echo "==> building sluice (build/demo)"
	[ -x configure ] || autoreconf -fi >/dev/null 2>&1
	mkdir -p "$build"
	(cd "$build" && "$top/configure" -q >/dev/null && make -j"$(nproc)" >/dev/null)
fi

for port in 18080 18081 18082; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "demo: port $port on 127.0.0.1 is in use; stop whatever listens there" >&2
		exit 1
	fi
done

mkdir -p "$run"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$build/tests/origin/sl-origin" --listen 127.0.0.1:18081 --name blue --latency 2 2>>"$run/origins.log" &
pids+=($!)
"$build/tests/origin/sl-origin" --listen 127.0.0.1:18082 --name green --latency 3 2>>"$run/origins.log" &
pids+=($!)

conf="$run/sluice.ini"
set_weights() { # blue green
	sed -e "/^\[version:shop\/blue\]/,/^\[/ s/^weight = .*/weight = $1/" \
	    -e "/^\[version:shop\/green\]/,/^\[/ s/^weight = .*/weight = $2/" \
	    "$top/conf/demo.ini" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
}
set_weights 90 10
"$build/sluice" -t -c "$conf" >/dev/null
"$build/sluice" -c "$conf" 2>>"$run/sluice.log" &
spid=$!
pids+=($spid)
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break
	sleep 0.1
done

total=$((step_seconds * 4))
echo "==> sluice on 127.0.0.1:18080: shop = blue (stable) + green (canary)"
echo "==> traffic: 5000 users, 400 req/s for ${total}s; canary grows every ${step_seconds}s"
python3 "$top/contrib/demo-load.py" 18080 "$total" 400 5000 &
load=$!
pids+=($load)
for w in 25 50 100; do
	sleep "$step_seconds"
	set_weights $((100 - w)) "$w"
	kill -HUP "$spid"
	echo "---- canary green -> ${w}% (reload)"
done
wait "$load" || true
kill -TERM "$spid"
wait "$spid" && echo "==> sluice drained and exited 0"
echo "==> outcome: green serves 100%; the 'users who switched' column counts users"
echo "    moved from blue to green as the canary grew; none ever moved back."
