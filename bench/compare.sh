#!/usr/bin/env bash
# bench/compare.sh — sluice against HAProxy 2.6 and nginx 1.22, same run,
# same origins, same job (a sticky 90/10 split between two versions with
# keep-alive to the origins), same number of worker threads/processes.
#
#   bench/compare.sh            full run: 3 rounds, 10 s per measurement
#   bench/compare.sh --quick    smoke test: 1 round, 3 s per measurement
#   bench/compare.sh --help     every option
#
# Measures, interleaved (sluice haproxy nginx, sluice haproxy nginx, ...
# for --rounds rounds) and reported as medians over the rounds:
#   1. throughput, wrk -t1 closed loop, at 64 and 1000 connections, with
#      3-byte and 16 KiB responses;
#   2. CPU time per request of each proxy (utime + stime of the proxy's
#      processes from /proc, before and after each wrk run);
#   3. latency percentiles with sl-loadgen, open loop, at 50% and 80% of the
#      slowest proxy's median throughput (64 connections, small responses);
#   4. memory per idle keep-alive client connection: RSS of a freshly
#      started proxy before and after --idle clients each made one request
#      and stayed connected;
#   5. sluice with measure = yes against measure = no (one instance,
#      switched by a reload before each run), in ABBA pairs, uncapped and
#      (with --cap) under the CPU quota of 6, where the proxy and not the
#      generator is the bottleneck;
#   6. throughput with each proxy held to --cap percent of one CPU by the
#      kernel's CPU controller (cgroup cpu quota), wrk at 64 and 1000
#      connections: the proxy is then the bottleneck, with the load
#      generator and origins far from theirs, which on a 2-CPU machine is
#      the only way the proxy's own capacity shows in a closed loop;
#   7. latency as in 3, under the same quota, at 50% and 80% of the slowest
#      proxy's capped throughput: each proxy loaded relative to what it
#      can serve on the same share of a CPU, with the generator's core
#      short of saturation (uncapped, it is the bottleneck at 80%).
# Prints a markdown report and writes it to bench/out/report-DATE.md (raw
# numbers next to it, .tsv). Everything listens on 127.0.0.1 only; every
# process started here is killed by pid when the script exits.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
top=$(pwd)

rounds=3
dur=10
workers=1
idle_n=2000
pin=auto
build="$top/build-bench"
outdir="$top/bench/out"
install=yes
disturbed=10
retries=2
quiet_wait=20
cap=50
cmdline="bench/compare.sh${*:+ $*}"

usage() {
	cat <<EOF
usage: bench/compare.sh [options]
  --quick          1 round, 3 s runs, 500 idle connections (smoke test)
  --rounds N       interleaved rounds; medians are over these ($rounds)
  --duration S     seconds per wrk / sl-loadgen run ($dur)
  --workers N      worker threads (sluice, HAProxy) / processes (nginx) ($workers)
  --idle N         idle keep-alive connections for the memory test ($idle_n)
  --no-pin         do not pin the proxies to CPUs 0..N-1 and the origins
                   and load generators to the other CPUs
  --build-dir DIR  where sluice is built, plain ./configure ($build)
  --out DIR        where the report goes ($outdir)
  --no-install     do not apt-get install haproxy, nginx, wrk when missing
  --disturbed P    a run during which other processes used more than P% of
                   a CPU is run again ($disturbed)
  --retries N      at most N more attempts per run ($retries)
  --quiet-wait S   before each run, wait up to S seconds for the machine
                   to be quiet ($quiet_wait)
  --cap P          CPU quota for the capped throughput and latency runs,
                   percent of one CPU (0: skip them) ($cap)
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) rounds=1; dur=3; idle_n=500 ;;
	--rounds) rounds=$2; shift ;;
	--duration) dur=$2; shift ;;
	--workers) workers=$2; shift ;;
	--idle) idle_n=$2; shift ;;
	--no-pin) pin=no ;;
	--build-dir) build=$2; shift ;;
	--out) outdir=$2; shift ;;
	--no-install) install=no ;;
	--disturbed) disturbed=$2; shift ;;
	--retries) retries=$2; shift ;;
	--quiet-wait) quiet_wait=$2; shift ;;
	--cap) cap=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
for v in rounds dur workers idle_n disturbed quiet_wait; do
	case "${!v}" in
	'' | *[!0-9]* | 0) echo "compare.sh: bad value '${!v}' for $v" >&2; exit 2 ;;
	esac
done
case "$retries" in '' | *[!0-9]*) echo "compare.sh: bad value '$retries' for retries" >&2; exit 2 ;; esac
case "$cap" in '' | *[!0-9]*) echo "compare.sh: bad value '$cap' for cap" >&2; exit 2 ;; esac
[ "$cap" -le 100 ] || { echo "compare.sh: --cap is a percent of one CPU, at most 100" >&2; exit 2; }

PROG=compare.sh
# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

# ---------------------------------------------------------------------------
# Tools and builds.

install_missing haproxy nginx wrk python3 procps util-linux
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
for t in "$HAPROXY" "$NGINX" wrk "$PY" taskset; do
	command -v "$t" >/dev/null || die "$t is missing"
done
build_plain sluice tests/origin/sl-origin bench/sl-loadgen
SLUICE="$build/sluice"
# What was built: the tree as it is now (the report is written at the end).
git_rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$top" status --porcelain -- proxy conf analysis control llhttp.mk configure.ac 2>/dev/null |
	grep -q . && echo " + uncommitted changes to the daemon's sources")
ORIGIN="$build/tests/origin/sl-origin"
LOADGEN="$build/bench/sl-loadgen"

# ---------------------------------------------------------------------------
# Processes: started here, remembered by pid (lib.sh kills them on exit).

ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" -ge 4096 ] || die "open files limit $(ulimit -n) is too low"
[ "$(ulimit -n)" -gt $((idle_n + 200)) ] || die "--idle $idle_n needs a higher open files limit than $(ulimit -n)"

ncpu=$(nproc)
if [ "$pin" = auto ] && [ "$ncpu" -gt "$workers" ]; then
	proxy_cpus=0
	[ "$workers" -gt 1 ] && proxy_cpus="0-$((workers - 1))"
	other_cpus=$workers
	[ $((ncpu - 1)) -gt "$workers" ] && other_cpus="$workers-$((ncpu - 1))"
	PIN_PROXY=(taskset -c "$proxy_cpus")
	PIN_OTHER=(taskset -c "$other_cpus")
	pin_note="proxies pinned to CPU $proxy_cpus; origins, wrk and sl-loadgen to CPU $other_cpus"
else
	PIN_PROXY=()
	PIN_OTHER=()
	pin_note="no CPU pinning"
fi

# A CPU-quota group for the capped runs (cgroup v2 cpu.max, else the v1
# cpu controller): period 10 ms, quota $cap% of it. Sets cap_dir (the
# group) and cap_root (where its processes go back to), or leaves them
# empty and says why.
cap_dir=
cap_root=
cap_setup() {
	local period=10000 quota=$((cap * 100)) d
	if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		d=/sys/fs/cgroup/sluice-bench-$$
		grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null ||
			echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
		mkdir "$d" 2>/dev/null && echo "$quota $period" >"$d/cpu.max" 2>/dev/null &&
			{ cap_dir=$d; cap_root=/sys/fs/cgroup; return 0; }
		rmdir "$d" 2>/dev/null
	fi
	if [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
		d=/sys/fs/cgroup/cpu/sluice-bench-$$
		mkdir "$d" 2>/dev/null && echo "$period" >"$d/cpu.cfs_period_us" &&
			echo "$quota" >"$d/cpu.cfs_quota_us" &&
			{ cap_dir=$d; cap_root=/sys/fs/cgroup/cpu; return 0; }
		rmdir "$d" 2>/dev/null
	fi
	log "no writable CPU controller (cgroup v2 cpu.max or v1 cpu); capped runs skipped"
	return 1
}

cleanup_hook() { [ -z "$cap_dir" ] || rmdir "$cap_dir" 2>/dev/null; }

# Moves every process of proxy $1 into cgroup directory $2.
cap_move() {
	local p
	for p in $(proxy_pids "$1"); do echo "$p" >"$2/cgroup.procs" || return 1; done
}

read -r P_V1 P_V2 P_SLUICE P_HAPROXY P_NGINX <<<"$(free_ports 5)"

# Fills a config template: conf NAME TEMPLATE PORT MEASURE > file
conf() {
	sed -e "s|@WORKERS@|$workers|g" -e "s|@DIR@|$run|g" \
		-e "s|@NAME@|$1|g" -e "s|@PORT@|$3|g" -e "s|@MEASURE@|$4|g" \
		-e "s|@V1@|$P_V1|g" -e "s|@V2@|$P_V2|g" "$top/bench/configs/$2"
}

declare -A PID PORT
PORT[sluice]=$P_SLUICE
PORT[haproxy]=$P_HAPROXY
PORT[nginx]=$P_NGINX

# Starts proxy $1 (sluice, haproxy, nginx); sets PID[$1].
start_proxy() {
	local name=$1 port=${PORT[$1]}
	case "$name" in
	sluice)
		conf sluice sluice.ini "$port" yes >"$run/sluice.ini"
		"${PIN_PROXY[@]}" "$SLUICE" -c "$run/$name.ini" >>"$run/$name.log" 2>&1 &
		;;
	haproxy)
		conf haproxy haproxy.cfg "$port" - >"$run/haproxy.cfg"
		"${PIN_PROXY[@]}" "$HAPROXY" -db -f "$run/haproxy.cfg" >>"$run/haproxy.log" 2>&1 &
		;;
	nginx)
		conf nginx nginx.conf "$port" - >"$run/nginx.conf"
		"${PIN_PROXY[@]}" "$NGINX" -c "$run/nginx.conf" -e "$run/nginx-error.log" >>"$run/nginx.log" 2>&1 &
		;;
	esac
	PID[$name]=$!
	pids+=("$!")
	wait_port "$port" || die "$name did not start; see $run/$name.log"
	# nginx workers are children of the master: remember them too.
	local c
	for c in $(pgrep -P "${PID[$name]}"); do pids+=("$c"); done
}

# Stops proxy $1 and waits for it to go.
stop_proxy() {
	local p=${PID[$1]} i
	kill "$p" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}

# The pids of proxy $1: its process and its children (nginx workers).
proxy_pids() {
	echo "${PID[$1]}" $(pgrep -P "${PID[$1]}")
}

# CPU time of proxy $1 so far, in clock ticks (utime + stime, all threads).
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
	local p t=0 f
	for p in $(proxy_pids "$1"); do
		# Fields after the ")" of the command name: utime is 12th, stime 13th.
		f=$(sed -e 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

# Resident memory of proxy $1, KiB (its process and children).
rss_kib() {
	local p t=0 v
	for p in $(proxy_pids "$1"); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# Busy ticks of the CPUs the origins and load generators run on (all CPUs
# when not pinned), to show when the generator side is the bottleneck.
gen_cpu_ticks() {
	awk -v list=",$gen_cpus," '
		/^cpu[0-9]/ { c = substr($1, 4); if (list == ",all," || index(list, "," c ","))
			b += $2 + $3 + $4 + $7 + $8 + $9 }
		END { print b + 0 }' /proc/stat
}
if [ ${#PIN_OTHER[@]} -gt 0 ]; then
	gen_cpus=$(seq -s, "$workers" $((ncpu - 1)))
	gen_ncpu=$((ncpu - workers))
else
	gen_cpus=all
	gen_ncpu=$ncpu
fi

results="$run/results.tsv"
: >"$results"
rec="$results" # where record() writes; measured() points it elsewhere
# record TEST PROXY ROUND METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$rec"; }

# CPU ticks the whole machine has used (user, nice, system, steal; not the
# irq/softirq columns, which on loopback are mostly this run's own traffic).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9 }' /proc/stat; }

# CPU ticks used by this run's processes: proxies and origins (and their
# children), and this shell with every child it has waited for (wrk,
# sl-loadgen).
own_ticks() {
	local p c t=0 f
	declare -A seen=()
	for p in "${pids[@]}"; do
		for c in "$p" $(pgrep -P "$p"); do
			[ -n "${seen[$c]:-}" ] && continue
			seen[$c]=1
			f=$(sed -e 's/^.*) //' "/proc/$c/stat" 2>/dev/null) || continue
			set -- $f
			t=$((t + ${12} + ${13}))
		done
	done
	f=$(sed -e 's/^.*) //' "/proc/$$/stat")
	set -- $f
	echo $((t + ${12} + ${13} + ${14} + ${15}))
}

# Percent of one CPU used by other processes between two samples:
# foreign_pct M0 O0 T0 M1 O1 T1 (machine ticks, own ticks, seconds).
foreign_pct() {
	awk -v m=$(($4 - $1)) -v o=$(($5 - $2)) -v t0="$3" -v t1="$6" -v hz="$CLK_TCK" \
		'BEGIN { f = (m - o) * 100 / ((t1 - t0) * hz); printf "%.0f", (f < 0 ? 0 : f) }'
}

# Waits (up to --quiet-wait seconds) until other processes use less than
# --disturbed percent of a CPU over one second.
wait_quiet() {
	local i m0 o0 t0 f
	for i in $(seq "$quiet_wait"); do
		m0=$(machine_ticks) o0=$(own_ticks) t0=$(date +%s.%N)
		sleep 1
		f=$(foreign_pct "$m0" "$o0" "$t0" "$(machine_ticks)" "$(own_ticks)" "$(date +%s.%N)")
		[ "$f" -lt "$disturbed" ] && return 0
		[ "$i" = 1 ] && log "  waiting for the machine to quieten (others use $f% of a CPU)"
	done
	log "  still busy after ${quiet_wait}s (others use $f% of a CPU); measuring anyway"
}

# Runs one measurement ("$@": run_wrk or run_loadgen and its arguments)
# after wait_quiet; if other processes used more than --disturbed percent
# of a CPU meanwhile, runs it again, --retries times at most. Keeps the
# last attempt, with its "foreign" percentage.
disturbed_runs=0
measured() {
	local a m0 o0 t0 f t p r
	for a in $(seq 0 "$retries"); do
		wait_quiet
		rec="$run/attempt.tsv"
		: >"$rec"
		m0=$(machine_ticks) o0=$(own_ticks) t0=$(date +%s.%N)
		"$@"
		f=$(foreign_pct "$m0" "$o0" "$t0" "$(machine_ticks)" "$(own_ticks)" "$(date +%s.%N)")
		rec="$results"
		[ "$f" -lt "$disturbed" ] && break
		if [ "$a" -lt "$retries" ]; then
			log "  disturbed: other processes used $f% of a CPU; again"
		else
			log "  disturbed: other processes used $f% of a CPU; kept"
			disturbed_runs=$((disturbed_runs + 1))
		fi
	done
	if [ -s "$run/attempt.tsv" ]; then
		cat "$run/attempt.tsv" >>"$results"
		read -r t p r _ <"$run/attempt.tsv"
		record "$t" "$p" "$r" foreign "$f"
	fi
}

# wrk script: one X-User-Id per request over 1000 users, so that the 90/10
# split really splits (without it every request has the same key).
cat >"$run/users.lua" <<'EOF'
local reqs, n, i = {}, 1000, 0
function init(args)
	for u = 0, n - 1 do
		reqs[u] = wrk.format(nil, nil, {["X-User-Id"] = "u" .. u})
	end
end
function request()
	i = (i + 1) % n
	return reqs[i]
end
EOF

# One wrk run against proxy $1: run_wrk PROXY CONNS PATH TEST ROUND
run_wrk() {
	local name=$1 conns=$2 path=$3 test=$4 round=$5 out c0 c1 reqs rps errs
	local who=${RECORD_AS:-$1} # recorded under this name
	c0=$(cpu_ticks "$name")
	out=$(timeout $((dur + 30)) "${PIN_OTHER[@]}" wrk -t1 -c"$conns" -d"${dur}s" \
		-s "$run/users.lua" "http://127.0.0.1:${PORT[$name]}$path" 2>&1)
	c1=$(cpu_ticks "$name")
	reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
	errs=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }
		/Non-2xx/ { print $NF }' <<<"$out" | awk '{ s += $1 } END { print s + 0 }')
	if [ -z "$reqs" ] || [ -z "$rps" ]; then
		log "wrk failed against $name: $out"
		return
	fi
	record "$test" "$who" "$round" rps "$rps"
	record "$test" "$who" "$round" load1 "$(cut -d' ' -f1 /proc/loadavg)"
	record "$test" "$who" "$round" errors "$errs"
	record "$test" "$who" "$round" cpu_us \
		"$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" \
			'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }')"
	log "  $test $who: $rps req/s, $errs errors, $(((c1 - c0) * 1000 / CLK_TCK)) ms CPU"
}

# One sl-loadgen run: run_loadgen PROXY RATE TEST ROUND
run_loadgen() {
	local name=$1 rate=$2 test=$3 round=$4 out c0 c1 g0 g1 t0 t1
	c0=$(cpu_ticks "$name")
	g0=$(gen_cpu_ticks) t0=$(date +%s.%N)
	out=$(timeout $((dur + 40)) "${PIN_OTHER[@]}" "$LOADGEN" \
		--url "http://127.0.0.1:${PORT[$name]}/" --rate "$rate" \
		--duration "$dur" --warmup 1 --connections 64 --threads 1 \
		--header 'X-User-Id: u{n}' --users 1000 --json 2>&1)
	c1=$(cpu_ticks "$name")
	g1=$(gen_cpu_ticks) t1=$(date +%s.%N)
	record "$test" "$name" "$round" gen_busy \
		"$(awk -v g=$((g1 - g0)) -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v n="$gen_ncpu" \
			'BEGIN { printf "%.0f", g * 100 / ((t1 - t0) * hz * n) }')"
	if ! grep -q '"latency_ms"' <<<"$out"; then
		log "sl-loadgen failed against $name: $out"
		return
	fi
	"$PY" - "$test" "$name" "$round" "$out" $((c1 - c0)) "$CLK_TCK" >>"$rec" <<'EOF'
import json, sys
test, name, rnd, out, ticks, hz = sys.argv[1:7]
r = json.loads(out)
rows = [("rate", r["rate"]), ("errors", r["errors"])]
if r["completed"]:
    rows += [("cpu_us", "%.2f" % (int(ticks) * 1e6 / int(hz) / r["completed"]))]
rows += [("load1", open("/proc/loadavg").read().split()[0])]
rows += [(k, v) for k, v in r["latency_ms"].items()]
rows += [("lag_p99", r["send_lag_ms"]["p99"])]
for k, v in rows:
    print(f"{test}\t{name}\t{rnd}\t{k}\t{v}")
EOF
	log "  $test $name: $(grep -o '"p99":[0-9.]*' <<<"$out" | head -1), $(grep -o '"errors":[0-9]*' <<<"$out")"
}

# Memory per idle connection for proxy $1: fresh start, a short warm-up,
# RSS, then $idle_n clients each make one request and stay connected.
run_idle() {
	local name=$1 round=$2 before after hp i
	start_proxy "$name"
	"${PIN_OTHER[@]}" wrk -t1 -c8 -d1s -s "$run/users.lua" \
		"http://127.0.0.1:${PORT[$name]}/" >/dev/null 2>&1
	sleep 0.5
	before=$(rss_kib "$name")
	: >"$run/idle.out"
	"$PY" - "${PORT[$name]}" "$idle_n" >"$run/idle.out" 2>&1 <<'EOF' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks, bad = [], 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nX-User-Id: idle%d\r\n\r\n" % i)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        d = s.recv(65536)
        if not d:
            break
        body += d
    if not head.startswith(b"HTTP/1.1 200") or len(body) < length:
        bad += 1
    socks.append(s)
print("ready", n, "bad", bad, flush=True)
time.sleep(3600)
EOF
	hp=$!
	pids+=("$hp")
	for i in $(seq 600); do
		grep -q ready "$run/idle.out" && break
		kill -0 "$hp" 2>/dev/null || break
		sleep 0.1
	done
	sleep 0.5
	after=$(rss_kib "$name")
	grep -q ready "$run/idle.out" || log "idle clients failed: $(cat "$run/idle.out")"
	kill "$hp" 2>/dev/null
	wait "$hp" 2>/dev/null
	record idle "$name" "$round" rss_before_kib "$before"
	record idle "$name" "$round" rss_after_kib "$after"
	record idle "$name" "$round" bytes_per_conn \
		"$(awk -v a="$after" -v b="$before" -v n="$idle_n" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')"
	log "  idle $name: RSS $before -> $after KiB over $idle_n connections ($(awk '/ready/ { print $4 }' "$run/idle.out") bad)"
	stop_proxy "$name"
}

# ---------------------------------------------------------------------------
# The run.

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
stamp=$(date -u '+%Y%m%d-%H%M%S')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "run dir $run; ports v1 $P_V1 v2 $P_V2 sluice $P_SLUICE haproxy $P_HAPROXY nginx $P_NGINX"
log "$pin_note; load average $load_start"

"${PIN_OTHER[@]}" "$ORIGIN" --listen "127.0.0.1:$P_V1" --name v1 >>"$run/origins.log" 2>&1 &
pids+=("$!")
"${PIN_OTHER[@]}" "$ORIGIN" --listen "127.0.0.1:$P_V2" --name v2 >>"$run/origins.log" 2>&1 &
pids+=("$!")
wait_port "$P_V1" && wait_port "$P_V2" || die "origins did not start"

PROXIES=(sluice haproxy nginx)
for p in "${PROXIES[@]}"; do start_proxy "$p"; done

# Each proxy must split: ~10% of 1000 users on v2.
for p in "${PROXIES[@]}"; do
	v2=$("$PY" - "${PORT[$p]}" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
n = 0
for u in range(1000):
    c.request("GET", "/", headers={"X-User-Id": "u%d" % u})
    r = c.getresponse()
    n += r.read().strip() == b"v2"
print(n)
EOF
)
	log "split check $p: $v2 of 1000 users on v2"
	record split "$p" 0 v2_per_1000 "$v2"
done

# Warm-up: one short run each.
for p in "${PROXIES[@]}"; do
	"${PIN_OTHER[@]}" wrk -t1 -c64 -d1s -s "$run/users.lua" \
		"http://127.0.0.1:${PORT[$p]}/" >/dev/null 2>&1
done

log "throughput and CPU per request (wrk, ${dur}s runs, $rounds rounds)"
for conns in 64 1000; do
	for size in small 16k; do
		path=/
		[ "$size" = 16k ] && path='/?size=16384'
		for r in $(seq "$rounds"); do
			for p in "${PROXIES[@]}"; do
				measured run_wrk "$p" "$conns" "$path" "wrk_c${conns}_$size" "$r"
			done
		done
	done
done

# The slowest proxy's median requests/s in test $1 (whole number).
median_min() {
	awk -F'\t' -v t="$1" '$1 == t && $4 == "rps" { print $2, $5 }' "$results" |
		sort -k1,1 -k2,2g | awk '
		{ v[$1] = v[$1] " " $2; n[$1]++ }
		END {
			min = -1
			for (p in v) {
				split(substr(v[p], 2), a, " ")
				m = (n[p] % 2) ? a[(n[p] + 1) / 2] : (a[n[p] / 2] + a[n[p] / 2 + 1]) / 2
				if (min < 0 || m < min) min = m
			}
			if (min >= 0) printf "%.0f", min
		}'
}

# Capacity: the slowest proxy's median at 64 connections, small responses.
capacity=$(median_min wrk_c64_small)
[ -n "$capacity" ] && [ "$capacity" -gt 0 ] 2>/dev/null || die "no throughput measured"
log "slowest proxy's capacity: $capacity req/s"

# measured, with the proxy ($2: run_wrk and run_loadgen take it first)
# in the CPU quota group for the run.
capped() {
	local p=$2
	cap_move "$p" "$cap_dir" || { log "could not move $p into $cap_dir"; return; }
	measured "$@"
	cap_move "$p" "$cap_root"
}

# Open-loop runs at 50% and 80% of CAPACITY, each through RUNNER
# (measured or capped): latency_runs TEST CAPACITY RUNNER
latency_runs() {
	local test=$1 capacity=$2 runner=$3 pct rate r p
	for pct in 50 80; do
		rate=$((capacity * pct / 100))
		record "${test}_$pct" all 0 target_rate "$rate"
		for r in $(seq "$rounds"); do
			for p in "${PROXIES[@]}"; do
				"$runner" run_loadgen "$p" "$rate" "${test}_$pct" "$r"
			done
		done
	done
}

log "latency at fixed rate (sl-loadgen, open loop)"
latency_runs lat "$capacity" measured

if [ "$cap" -gt 0 ] && cap_setup; then
	log "capped throughput: each proxy held to $cap% of one CPU ($cap_dir)"
	for conns in 64 1000; do
		for r in $(seq "$rounds"); do
			for p in "${PROXIES[@]}"; do
				capped run_wrk "$p" "$conns" / "cap_c$conns" "$r"
			done
		done
	done
	record cap all 0 percent "$cap"
	# Latency under the same quota, at 50% and 80% of the slowest capped
	# proxy's capacity: load relative to what each proxy can do on its
	# share of a CPU, while the generator's core stays far from saturation
	# (the uncapped latency runs above saturate it at 80%).
	cap_capacity=$(median_min cap_c64)
	if [ -n "$cap_capacity" ] && [ "$cap_capacity" -gt 0 ] 2>/dev/null; then
		log "capped latency: $cap% of one CPU each, slowest capped capacity $cap_capacity req/s"
		latency_runs cap_lat "$cap_capacity" capped
	fi
fi

log "inline measurement: sluice measure = yes vs no, alternating"
# One instance, its measure setting switched by a reload before each run:
# two instances differ by more than measuring does (an A/A pair of
# identical sluices, each under the quota, 12 ABBA pairs: 3.4% apart in
# requests/s, always the same one faster). Fresh: the instance that ran
# every test above keeps up to 1024 idle origin connections per origin
# from the 1000-connection runs.
stop_proxy sluice
start_proxy sluice

# Sets the sluice's measure = $1 by a reload (SIGHUP), and waits for it.
set_measure() {
	local n i
	n=$(grep -c "reloaded " "$run/sluice.log")
	conf sluice sluice.ini "${PORT[sluice]}" "$1" >"$run/sluice.ini"
	kill -HUP "${PID[sluice]}"
	for i in $(seq 100); do
		[ "$(grep -c "reloaded " "$run/sluice.log")" -gt "$n" ] && return 0
		sleep 0.1
	done
	die "sluice did not reload to measure = $1; see $run/sluice.log"
}

# One run with measure = $4 through runner $1 (measured or capped), test
# $2, round $3; measure = no is recorded as "sluice_off".
measure_run() {
	set_measure "$4"
	if [ "$4" = yes ]; then
		"$1" run_wrk sluice 64 / "$2" "$3"
	else
		RECORD_AS=sluice_off "$1" run_wrk sluice 64 / "$2" "$3"
	fi
}

# 2 x --rounds pairs, in ABBA order (yes, no; no, yes; ...) so that
# neither setting always runs first. The report gives the median of the
# pairwise ratios (a slow drift of the machine cancels within a pair)
# next to the ratio of the medians.
measure_pairs() {
	local runner=$1 test=$2 r
	for r in $(seq $((rounds * 2))); do
		if [ $((r % 2)) = 1 ]; then
			measure_run "$runner" "$test" "$r" yes
			measure_run "$runner" "$test" "$r" no
		else
			measure_run "$runner" "$test" "$r" no
			measure_run "$runner" "$test" "$r" yes
		fi
	done
}
measure_pairs measured measure
# Uncapped, the generator's core is the bottleneck (see the capped step),
# so a throughput difference there is mostly the generator's: under the
# quota the proxy is the bottleneck and its cost shows as requests/s.
if [ -n "$cap_dir" ]; then
	log "inline measurement under the CPU quota ($cap% of one CPU)"
	measure_pairs capped cap_measure
	rmdir "$cap_dir" 2>/dev/null
fi
set_measure yes

log "memory per idle keep-alive connection ($idle_n connections, fresh processes)"
for p in "${PROXIES[@]}"; do stop_proxy "$p"; done
for r in $(seq "$rounds"); do
	for p in "${PROXIES[@]}"; do
		run_idle "$p" "$r"
	done
done

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
finished=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# ---------------------------------------------------------------------------
# The report.

mkdir -p "$outdir"
report="$outdir/report-$stamp.md"
cp "$results" "$outdir/report-$stamp.tsv"

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
sluice_v=$("$SLUICE" -V 2>&1 | head -1)
haproxy_v=$("$HAPROXY" -v 2>&1 | head -1 | awk '{ print $3 }')
nginx_v=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')
wrk_v=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')

"$PY" - "$results" >"$run/tables.md" <<'EOF'
import statistics, sys
from collections import defaultdict

vals = defaultdict(list)
byround = defaultdict(dict)
for line in open(sys.argv[1]):
    test, proxy, rnd, metric, value = line.rstrip("\n").split("\t")
    vals[(test, proxy, metric)].append(float(value))
    byround[(test, proxy, metric)][rnd] = float(value)

def med(test, proxy, metric):
    v = vals.get((test, proxy, metric))
    return statistics.median(v) if v else None

def best(test, proxy, metric):
    v = vals.get((test, proxy, metric))
    return min(v) if v else None

def fmt(x, d=0):
    return "—" if x is None else f"{x:,.{d}f}"

def ratio(a, b):
    return "—" if a is None or not b else f"{a / b:.2f}×"

P = ["sluice", "haproxy", "nginx"]
H = "| | sluice | HAProxy | nginx |"

split = {p: med("split", p, "v2_per_1000") for p in P}
print("Split check, users of 1000 sent to v2 (10% expected): " +
      ", ".join(f"{p} {fmt(v)}" for p, v in split.items()) + "\n")

print("## Throughput (wrk -t1, closed loop), requests/s, median\n")
print(H + " sluice / best other |")
print("|---|---:|---:|---:|---:|")
rows = [("64 conns, 3 B", "wrk_c64_small"), ("64 conns, 16 KiB", "wrk_c64_16k"),
        ("1000 conns, 3 B", "wrk_c1000_small"), ("1000 conns, 16 KiB", "wrk_c1000_16k")]
for label, t in rows:
    m = {p: med(t, p, "rps") for p in P}
    others = [m[p] for p in P[1:] if m[p] is not None]
    print(f"| {label} | " + " | ".join(fmt(m[p]) for p in P) +
          f" | {ratio(m['sluice'], max(others) if others else None)} |")
errs = {(t, p): med(t, p, "errors") for _, t in rows for p in P}
if any(e for e in errs.values()):
    print("\nErrors (median per run): " + ", ".join(
        f"{t} {p} {e:.0f}" for (t, p), e in errs.items() if e))
print()

print("## CPU time per request, µs (proxy's utime + stime / requests), median\n")
print(H + " sluice / HAProxy |")
print("|---|---:|---:|---:|---:|")
for label, t in rows:
    m = {p: med(t, p, "cpu_us") for p in P}
    print(f"| {label} | " + " | ".join(fmt(m[p], 2) for p in P) +
          f" | {ratio(m['sluice'], m['haproxy'])} |")
print()

cap = med("cap", "all", "percent")
if cap is not None:
    print(f"## Throughput with each proxy held to {cap:.0f}% of one CPU (cgroup CPU quota), requests/s, median\n")
    print("The proxy is the bottleneck here and the load generator is not "
          "(it has the rest of the machine): the proxies' own capacity per "
          "core, compared under the same closed loop (wrk -t1, 3 B).\n")
    print(H + " sluice / best other |")
    print("|---|---:|---:|---:|---:|")
    for label, t in (("64 conns, 3 B", "cap_c64"), ("1000 conns, 3 B", "cap_c1000")):
        m = {p: med(t, p, "rps") for p in P}
        others = [m[p] for p in P[1:] if m[p] is not None]
        print(f"| {label} | " + " | ".join(fmt(m[p]) for p in P) +
              f" | {ratio(m['sluice'], max(others) if others else None)} |")
    print()

def latency_tables(prefix, what):
    for pct in (50, 80):
        t = f"{prefix}_{pct}"
        rate = med(t, "all", "target_rate")
        print(f"**{pct}% of the slowest {what}capacity: {fmt(rate)} requests/s**\n")
        print("| | p50 | p90 | p99 | p99.9 | max | p99, best round | generator send lag p99 | achieved req/s | errors | proxy CPU µs/req | generator CPUs busy |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in P:
            print(f"| {p} | " + " | ".join(fmt(med(t, p, q), 3) for q in
                  ("p50", "p90", "p99", "p99.9", "max")) +
                  f" | {fmt(best(t, p, 'p99'), 3)}" +
                  f" | {fmt(med(t, p, 'lag_p99'), 3)}" +
                  f" | {fmt(med(t, p, 'rate'))} | {fmt(med(t, p, 'errors'))} |"
                  f" {fmt(med(t, p, 'cpu_us'), 2)} | {fmt(med(t, p, 'gen_busy'))}% |")
        print("\n(generator send lag: how late sl-loadgen itself sent requests, "
              "from their due time to the socket, because its core was busy; "
              "it counts in the latency, and it is not time the proxy held "
              "the request.)")
        s = med(t, "sluice", "p99")
        o = [x for x in (med(t, "haproxy", "p99"), med(t, "nginx", "p99")) if x is not None]
        sb = best(t, "sluice", "p99")
        ob = [x for x in (best(t, "haproxy", "p99"), best(t, "nginx", "p99")) if x is not None]
        print(f"\np99 sluice / best other: {ratio(s, min(o) if o else None)} "
              f"(medians), {ratio(sb, min(ob) if ob else None)} (best rounds: "
              "the least disturbed run of each, since tails are what a busy "
              "neighbour moves most)\n")

print("## Latency at a fixed rate (sl-loadgen, open loop, 64 connections), ms, median\n")
latency_tables("lat", "proxy's ")

if cap is not None and med("cap_lat_50", "all", "target_rate") is not None:
    print(f"## Latency at a fixed rate, each proxy held to {cap:.0f}% of one CPU, ms, median\n")
    print("The same open-loop runs with each proxy under the CPU quota of the "
          "capped throughput runs, at 50% and 80% of the slowest proxy's capped "
          "capacity: load relative to what each proxy can serve on the same "
          "share of a CPU, with the generator's core well short of saturation. "
          "A proxy that needs more CPU per request runs closer to its quota "
          "and is throttled (held for the rest of a 10 ms period) more often.\n")
    latency_tables("cap_lat", "capped proxy's ")

print("## Memory per idle keep-alive client connection (fresh process), median\n")
print("| | RSS before, KiB | RSS after, KiB | bytes / connection |")
print("|---|---:|---:|---:|")
for p in P:
    print(f"| {p} | {fmt(med('idle', p, 'rss_before_kib'))} | "
          f"{fmt(med('idle', p, 'rss_after_kib'))} | "
          f"{fmt(med('idle', p, 'bytes_per_conn'))} |")
print()

def pairwise(test, metric):
    """Median over rounds of measure=yes / measure=no in the same round."""
    on, off = byround.get((test, "sluice", metric), {}), byround.get((test, "sluice_off", metric), {})
    r = [on[k] / off[k] for k in on if k in off and off[k]]
    return statistics.median(r) if r else None

cost = lambda x: "—" if x is None else f"{x * 100:+.1f}%"

def measure_table(test, title):
    on_r, off_r = med(test, "sluice", "rps"), med(test, "sluice_off", "rps")
    if on_r is None:
        return
    on_c, off_c = med(test, "sluice", "cpu_us"), med(test, "sluice_off", "cpu_us")
    pr, pc = pairwise(test, "rps"), pairwise(test, "cpu_us")
    print(f"### {title}\n")
    print("| | measure = yes | measure = no | cost, ratio of medians | cost, median of pairs |")
    print("|---|---:|---:|---:|---:|")
    print(f"| requests/s | {fmt(on_r)} | {fmt(off_r)} | "
          f"{cost(None if not off_r else 1 - on_r / off_r)} | "
          f"{cost(None if pr is None else 1 - pr)} |")
    print(f"| CPU µs / request | {fmt(on_c, 2)} | {fmt(off_c, 2)} | "
          f"{cost(None if on_c is None or not off_c else on_c / off_c - 1)} | "
          f"{cost(None if pc is None else pc - 1)} |")
    print()

print("## Inline measurement: sluice measure = yes vs no (wrk -c64, 3 B)\n")
print("Pairs of runs in ABBA order; a pair's ratio cancels a slow drift of "
      "the machine, so the median of the pairs is the steadier number.\n")
measure_table("measure", "Uncapped (the generator's core is the bottleneck)")
measure_table("cap_measure", "Each instance held to the CPU quota (the proxy is the bottleneck)")
print("(+ means measuring costs that much throughput or CPU; target: "
      "at most 3% throughput.)")
print()

print("## Every run, in round order\n")
print("others: percent of a CPU used by processes outside this run during "
      "the run; load1: the 1-minute load average after it.\n")
print("| test | proxy | result | CPU µs/request | errors | others % | load1 |")
print("|---|---|---|---|---|---|---|")
main = {"rps": "req/s", "p99": "p99 ms", "bytes_per_conn": "B/conn"}
runs = lambda t, p, m: ", ".join(f"{x:g}" for x in vals.get((t, p, m), []))
seen = []
for (test, proxy, metric) in vals:
    if test not in ("split",) and proxy != "all" and (test, proxy) not in seen:
        seen.append((test, proxy))
for test, proxy in seen:
    m = next((k for k in main if (test, proxy, k) in vals), None)
    if m is None:
        continue
    lag = runs(test, proxy, "lag_p99")
    lag = f"; send lag p99 ms: {lag}" if lag else ""
    print(f"| {test} | {proxy} | {main[m]}: {runs(test, proxy, m)}{lag} | "
          f"{runs(test, proxy, 'cpu_us')} | {runs(test, proxy, 'errors')} | "
          f"{runs(test, proxy, 'foreign')} | {runs(test, proxy, 'load1')} |")
EOF

{
	echo "# sluice vs HAProxy vs nginx — $started"
	echo
	echo "- command: \`$cmdline\`"
	echo "- started $started, finished $finished"
	echo "- machine: $ncpu CPUs ($cpu_model), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
	echo "- load average (1, 5, 15 min) at start: $load_start; at end: $load_end"
	echo "- versions: $sluice_v (git $git_rev$git_dirty, plain ./configure: $(grep -m1 '^CFLAGS =' "$build/Makefile" | cut -d= -f2-)), HAProxy $haproxy_v, nginx $nginx_v, wrk $wrk_v"
	echo "- disturbance: before each run the script waits (up to ${quiet_wait} s) until other processes use less than $disturbed% of a CPU, and repeats a run during which they used more (up to $retries times); $disturbed_runs run(s) stayed disturbed (\"others %\" in Every run)"
	echo "- setup: $workers worker thread(s)/process(es) per proxy; $pin_note; two sl-origin (1 thread each), v1 90% and v2 10% of users by a hash of X-User-Id; keep-alive to the origins; logging off; $rounds round(s) of ${dur} s runs, interleaved sluice, HAProxy, nginx"
	echo
	cat "$run/tables.md"
} >"$report"
cat "$report"
log "report written to $report"
