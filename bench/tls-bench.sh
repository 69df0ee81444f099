#!/usr/bin/env bash
# bench/tls-bench.sh — TLS termination: sluice against HAProxy 2.6, same
# run, same origin, same certificate (ECDSA P-256), same number of worker
# threads, both with keep-alive to a plain HTTP origin.
#
#   bench/tls-bench.sh            2 rounds, 5 s per measurement
#   bench/tls-bench.sh --quick    1 round, 3 s per measurement
#   bench/tls-bench.sh --help     every option
#
# Measures, interleaved (sluice haproxy, sluice haproxy, ...) and reported
# as medians over the rounds:
#   1. full handshakes per second, TLS 1.3 and TLS 1.2: --clients parallel
#      `openssl s_time -new` (a new connection and a full handshake each
#      time, no session reuse), and the proxy's CPU time per handshake;
#   2. keep-alive HTTPS requests per second: `wrk -t1 -c64` (64 TLS
#      connections made once, then requests back to back), and the proxy's
#      CPU time per request;
#   3. memory per idle keep-alive TLS connection: RSS before and after
#      --idle clients each made one request and stayed connected;
#   4. TLS to the origin: plain HTTP requests (`wrk -t1 -c16`) forwarded
#      over TLS to an nginx origin that closes the connection after each
#      answer (`keepalive_requests 1`), so every request opens a new TLS
#      connection to it: what a proxy's origin handshakes cost, with the
#      session resumption both do.
# CPU time is utime + stime of the proxy process from /proc, before and
# after each run: on a small machine the client may saturate its core
# before the proxy does, and CPU per handshake still compares the proxies
# fairly. Prints a markdown report and writes it to bench/out/tls-DATE.md.
# Everything listens on 127.0.0.1; every process started here is killed by
# pid when the script exits.
set -uo pipefail

cd "$(dirname "$0")/.."
top=$(pwd)

rounds=2
dur=5
workers=1
clients=8
idle_n=1000
pin=auto
build="$top/build-bench-tls"
outdir="$top/bench/out"
install=yes
cmdline="bench/tls-bench.sh${*:+ $*}"

usage() {
	cat <<EOF
usage: bench/tls-bench.sh [options]
  --quick          1 round, 3 s runs
  --rounds N       interleaved rounds; medians are over these ($rounds)
  --duration S     seconds per run ($dur)
  --workers N      worker threads of sluice and HAProxy ($workers)
  --clients N      parallel openssl s_time processes for handshakes ($clients)
  --idle N         idle TLS connections for the memory measurement ($idle_n)
  --no-pin         do not pin the proxies to CPUs 0..N-1 and the clients
                   and the origin to the other CPUs
  --build-dir DIR  where sluice is built, plain ./configure ($build)
  --out DIR        where the report goes ($outdir)
  --no-install     do not apt-get install haproxy and wrk when missing
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) rounds=1; dur=3 ;;
	--rounds) rounds=$2; shift ;;
	--duration) dur=$2; shift ;;
	--workers) workers=$2; shift ;;
	--clients) clients=$2; shift ;;
	--idle) idle_n=$2; shift ;;
	--no-pin) pin=no ;;
	--build-dir) build=$2; shift ;;
	--out) outdir=$2; shift ;;
	--no-install) install=no ;;
	-h | --help) usage; exit 0 ;;
	*) echo "tls-bench.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
for v in rounds dur workers clients idle_n; do
	case "${!v}" in
	'' | *[!0-9]* | 0) echo "tls-bench.sh: bad value '${!v}' for $v" >&2; exit 2 ;;
	esac
done

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

PROG=tls-bench.sh
# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

# ---------------------------------------------------------------------------
# Tools and the build.

install_missing haproxy nginx wrk openssl curl procps util-linux
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in "$HAPROXY" "$NGINX" wrk openssl curl taskset; do
	command -v "$t" >/dev/null || die "$t is missing"
done
build_plain sluice tests/origin/sl-origin
SLUICE="$build/sluice"
ORIGIN="$build/tests/origin/sl-origin"

# ---------------------------------------------------------------------------
# Processes: everything started here is killed by pid on exit (lib.sh).

ncpu=$(nproc)
PIN_PROXY=()
PIN_OTHER=()
pin_note="not pinned"
if [ "$pin" = auto ] && [ "$ncpu" -gt "$workers" ]; then
	PIN_PROXY=(taskset -c "0-$((workers - 1))")
	PIN_OTHER=(taskset -c "$workers-$((ncpu - 1))")
	pin_note="proxies pinned to CPU 0-$((workers - 1)); origin and clients to CPU $workers-$((ncpu - 1))"
fi

free_port() { free_ports 1; }


# Certificates: a CA and an ECDSA P-256 server certificate.
log "making certificates in $run"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$run/ca.key" -out "$run/ca.pem" -days 2 -subj "/CN=bench CA" \
	>/dev/null 2>&1 || die "openssl req (CA) failed"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$run/server.key" -out "$run/server.csr" -subj "/CN=bench.test" \
	>/dev/null 2>&1 || die "openssl req failed"
printf 'subjectAltName=DNS:bench.test,IP:127.0.0.1\n' >"$run/server.ext"
openssl x509 -req -in "$run/server.csr" -CA "$run/ca.pem" -CAkey "$run/ca.key" \
	-CAcreateserial -out "$run/server.pem" -days 2 -extfile "$run/server.ext" \
	>/dev/null 2>&1 || die "openssl x509 failed"
cat "$run/server.pem" "$run/server.key" >"$run/haproxy.pem"

origin_port=$(free_port)
"${PIN_OTHER[@]}" "$ORIGIN" --listen "127.0.0.1:$origin_port" --name o1 \
	>"$run/origin.log" 2>&1 &
pids+=($!)
wait_port "$origin_port" || die "nothing listening on port $origin_port"

# The TLS origin of measurement 4: closes each connection after one answer.
tls_origin_port=$(free_port)
mkdir -p "$run/nginx"
cat >"$run/nginx-origin.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $run/nginx/nginx.pid;
error_log $run/nginx/error.log;
events {}
http {
    access_log off;
    client_body_temp_path $run/nginx;
    proxy_temp_path $run/nginx;
    fastcgi_temp_path $run/nginx;
    uwsgi_temp_path $run/nginx;
    scgi_temp_path $run/nginx;
    server {
        listen 127.0.0.1:$tls_origin_port ssl;
        ssl_certificate $run/server.pem;
        ssl_certificate_key $run/server.key;
        keepalive_requests 1;
        location / { return 200 "ok"; }
    }
}
EOF
"${PIN_OTHER[@]}" "$NGINX" -p "$run/nginx" -c "$run/nginx-origin.conf" \
	>"$run/nginx/out.log" 2>&1 &
pids+=($!)
wait_port "$tls_origin_port" || die "nginx (TLS origin) is not listening"

sl_port=$(free_port)
sl_plain=$(free_port)
sl_admin=$(free_port)
cat >"$run/sluice.ini" <<EOF
[sluice]
workers = $workers
control_socket = $run/ctl.sock
state_file = $run/state.ini
admin = 127.0.0.1:$sl_admin
upstream_keepalive = 64
max_connections = 8000

[listener:tls]
bind = 127.0.0.1:$sl_port
tls_cert = $run/server.pem
tls_key = $run/server.key

[listener:plain]
bind = 127.0.0.1:$sl_plain

[service:tlsorigin]
path_prefix = /tlso/
stable = v1
tls = yes
tls_ca = $run/ca.pem

[version:tlsorigin/v1]
servers = 127.0.0.1:$tls_origin_port

[service:bench]
stable = v1

[version:bench/v1]
servers = 127.0.0.1:$origin_port
EOF
"${PIN_PROXY[@]}" "$SLUICE" -c "$run/sluice.ini" >"$run/sluice.log" 2>&1 &
sl_pid=$!
pids+=($sl_pid)
wait_port "$sl_port" || die "nothing listening on port $sl_port"

ha_port=$(free_port)
ha_plain=$(free_port)
cat >"$run/haproxy.cfg" <<EOF
global
    nbthread $workers
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always

frontend fe
    bind 127.0.0.1:$ha_port ssl crt $run/haproxy.pem alpn http/1.1
    # the headers sluice adds, as bench/configs/haproxy.cfg
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request add-header Via "1.1 haproxy"
    http-response add-header Via "1.1 haproxy"
    default_backend be

backend be
    server o1 127.0.0.1:$origin_port

# measurement 4: plain in, TLS to the origin (HAProxy resumes sessions to
# servers by default, as sluice does)
frontend fe_plain
    bind 127.0.0.1:$ha_plain
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request add-header Via "1.1 haproxy"
    http-response add-header Via "1.1 haproxy"
    default_backend be_tls

backend be_tls
    server o2 127.0.0.1:$tls_origin_port ssl verify required ca-file $run/ca.pem
EOF
"${PIN_PROXY[@]}" "$HAPROXY" -db -f "$run/haproxy.cfg" >"$run/haproxy.log" 2>&1 &
ha_pid=$!
pids+=($ha_pid)
wait_port "$ha_port" || die "nothing listening on port $ha_port"

port_of() { [ "$1" = sluice ] && echo "$sl_port" || echo "$ha_port"; }
plain_port_of() { [ "$1" = sluice ] && echo "$sl_plain" || echo "$ha_plain"; }
pid_of() { [ "$1" = sluice ] && echo "$sl_pid" || echo "$ha_pid"; }

# utime + stime of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

for p in sluice haproxy; do
	curl -sk "https://127.0.0.1:$(port_of $p)/" -o /dev/null -w '%{http_code}' |
		grep -q 200 || die "$p does not answer 200 over HTTPS"
done

# Full handshakes: CLIENTS parallel s_time -new for DUR seconds.
# Prints "handshakes/s cpu_us_per_handshake".
run_handshakes() {
	local p=$1 ver=$2 port pid c0 c1 i total=0 n t0 t1 clis=()
	port=$(port_of "$p")
	pid=$(pid_of "$p")
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s.%N)
	for i in $(seq "$clients"); do
		"${PIN_OTHER[@]}" openssl s_time -connect "127.0.0.1:$port" -new \
			"$ver" -time "$dur" >"$run/stime.$i" 2>&1 &
		clis+=($!)
	done
	wait "${clis[@]}"
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	for i in $(seq "$clients"); do
		n=$(awk '/connections in .*s;/ { print $1; exit }' "$run/stime.$i")
		total=$((total + ${n:-0}))
	done
	awk -v n="$total" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$hz" \
		'BEGIN { d = t1 - t0; printf "%.0f %.1f\n", n / d, n ? c * 1e6 / hz / n : 0 }'
}

# wrk -t1 with CONNS connections against URL, while proxy P's CPU time is
# taken. Prints "requests/s cpu_us_per_request" ("0 0" when wrk failed or
# got anything but 2xx).
run_wrk() {
	local p=$1 url=$2 conns=$3 pid c0 c1 out rps reqs
	pid=$(pid_of "$p")
	c0=$(cpu_ticks "$pid")
	out=$("${PIN_OTHER[@]}" wrk -t1 -c"$conns" -d"${dur}s" "$url" 2>&1)
	c1=$(cpu_ticks "$pid")
	rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
	reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
	if [ -z "$rps" ] || echo "$out" | grep -q 'Non-2xx'; then
		log "wrk failed against $p ($url): $out"
		echo "0 0"
		return
	fi
	awk -v r="$rps" -v n="$reqs" -v c="$((c1 - c0))" -v hz="$hz" \
		'BEGIN { printf "%.0f %.1f\n", r, n ? c * 1e6 / hz / n : 0 }'
}

# Keep-alive HTTPS: 64 connections.
run_keepalive() {
	run_wrk "$1" "https://127.0.0.1:$(port_of "$1")/" 64
}

# TLS to an origin that closes after each answer: 16 connections of plain
# HTTP in, a new TLS connection to the origin per request.
run_origin_tls() {
	run_wrk "$1" "http://127.0.0.1:$(plain_port_of "$1")/tlso/" 16
}

# Memory per idle keep-alive TLS connection: N clients each make one
# request and stay connected; (RSS after - RSS before) / N, in KiB.
idle_mem() {
	local p=$1
	"${PIN_OTHER[@]}" python3 - "$(pid_of "$p")" "$(port_of "$p")" "$idle_n" <<'PY'
import socket, ssl, sys, time
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def one():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 10))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    return s
for _ in range(20):
    one().close()
time.sleep(0.5)
before = rss()
socks = [one() for _ in range(n)]
time.sleep(1)
print("%.1f" % ((rss() - before) / n))
for s in socks:
    s.close()
PY
}

metric() {
	curl -s "http://127.0.0.1:$sl_admin/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

load_before=$(cut -d' ' -f1 /proc/loadavg)
tsv="$run/results.tsv"
: >"$tsv"
full0=$(metric sluice_tls_handshakes_total)
resumed0=$(metric sluice_tls_resumed_total)
opened0=$(metric sluice_upstream_connections_opened_total)
oresumed0=$(metric sluice_upstream_tls_resumed_total)
for r in $(seq "$rounds"); do
	for p in sluice haproxy; do
		for ver in -tls1_3 -tls1_2; do
			log "round $r: $p full handshakes ${ver#-}"
			echo -e "$p\thandshakes${ver}\t$r\t$(run_handshakes "$p" "$ver" | tr ' ' '\t')" >>"$tsv"
		done
		log "round $r: $p keep-alive HTTPS"
		echo -e "$p\tkeepalive\t$r\t$(run_keepalive "$p" | tr ' ' '\t')" >>"$tsv"
		log "round $r: $p to a TLS origin closing after each answer"
		echo -e "$p\torigin_tls\t$r\t$(run_origin_tls "$p" | tr ' ' '\t')" >>"$tsv"
	done
done
for p in sluice haproxy; do
	log "$p: memory per idle TLS connection ($idle_n connections)"
	echo -e "$p\tidle_kib\t1\t$(idle_mem "$p")\t0" >>"$tsv"
done
full1=$(metric sluice_tls_handshakes_total)
resumed1=$(metric sluice_tls_resumed_total)
opened1=$(metric sluice_upstream_connections_opened_total)
oresumed1=$(metric sluice_upstream_tls_resumed_total)
load_after=$(cut -d' ' -f1 /proc/loadavg)

# ---------------------------------------------------------------------------
# Report: medians over the rounds.

median() { # TEST PROXY COLUMN
	awk -F'\t' -v t="$1" -v p="$2" -v c="$3" '$1 == p && $2 == t { print $c }' "$tsv" |
		sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

mkdir -p "$outdir"
report="$outdir/tls-$(date +%Y%m%d-%H%M%S).md"
{
	echo "# TLS: sluice vs HAProxy ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "\`$cmdline\`: $rounds round(s), ${dur}s per run, $workers worker thread(s) each, $ncpu CPUs, $pin_note."
	echo "sluice $("$SLUICE" -V | awk '{ print $2 }') (plain ./configure), $("$HAPROXY" -v | head -1 | awk '{ print $1, $3 }'), $(openssl version | awk '{ print $1, $2 }'), ECDSA P-256 certificate, default TLS 1.3 suites; origin: sl-origin, plain HTTP, keep-alive from both proxies. Load average $load_before before, $load_after after."
	echo
	echo "| measurement | sluice | HAProxy | sluice / HAProxy |"
	echo "|---|---:|---:|---:|"
	for t in handshakes-tls1_3 handshakes-tls1_2 keepalive origin_tls; do
		case $t in
		handshakes-tls1_3) label="full handshakes/s, TLS 1.3 ($clients × openssl s_time -new)"; unit="µs CPU per handshake" ;;
		handshakes-tls1_2) label="full handshakes/s, TLS 1.2 ($clients × openssl s_time -new)"; unit="µs CPU per handshake" ;;
		keepalive) label="keep-alive HTTPS requests/s (wrk -t1 -c64)"; unit="µs CPU per request" ;;
		origin_tls) label="requests/s to a TLS origin closing after each answer (wrk -t1 -c16, plain HTTP in)"; unit="µs CPU per request (one origin handshake each)" ;;
		esac
		s=$(median "$t" sluice 4)
		h=$(median "$t" haproxy 4)
		echo "| $label | $s | $h | $(ratio "$s" "$h") |"
		s=$(median "$t" sluice 5)
		h=$(median "$t" haproxy 5)
		echo "| $unit | $s | $h | $(ratio "$s" "$h") |"
	done
	s=$(median idle_kib sluice 4)
	h=$(median idle_kib haproxy 4)
	echo "| KiB of RSS per idle keep-alive TLS connection ($idle_n) | $s | $h | $(ratio "$s" "$h") |"
	echo
	echo "sluice counted $((full1 - full0)) handshakes during the runs, $((resumed1 - resumed0)) of them resumed (s_time -new never resumes; wrk resumes nothing either: it keeps its 64 connections)."
	echo "To the TLS origin sluice opened $((opened1 - opened0)) connections, $((oresumed1 - oresumed0)) of them resumed a session."
	echo
	echo "Every run (proxy, test, round, rate, CPU µs per operation):"
	echo
	echo '```'
	cat "$tsv"
	echo '```'
} >"$report"
cat "$report"
log "report written to $report"
