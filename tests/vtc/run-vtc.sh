#!/bin/sh
# Conformance tests with varnishtest (Debian package "varnish").
#
# Every tests/vtc/*.vtc runs against a fresh sluice daemon. The .vtc file's
# "server s1" plays the origin, listening on ${origin_port}; its "client"
# entities talk to sluice on ${sluice_port}. This script picks both ports,
# writes a sluice config whose only service forwards everything to
# 127.0.0.1:${origin_port}, starts sluice, runs
#     varnishtest -t 10 -D origin_port=... -D sluice_port=... FILE.vtc
# and stops sluice (by pid) afterwards.
#
# Environment: SL_TOP_BUILDDIR (where the sluice binary is; default: the
# repository root), SL_TOP_SRCDIR (where tests/vtc is; default: the
# repository root), VARNISHTEST (default: varnishtest from PATH),
# VTC_VERBOSE=1 to pass -v. Arguments: .vtc files to run instead of all.
# Exit: 0 all passed, 1 any failed, 77 varnishtest missing (skip), 99 setup.

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${SL_TOP_BUILDDIR:-$root}
SRC=${SL_TOP_SRCDIR:-$root}
SLUICE=$BUILD/sluice
VARNISHTEST=${VARNISHTEST:-$(command -v varnishtest 2>/dev/null)}

if [ -z "$VARNISHTEST" ] || [ ! -x "$VARNISHTEST" ]; then
	echo "SKIP: varnishtest not found (install the Debian package varnish)"
	exit 77
fi
if [ ! -x "$SLUICE" ]; then
	echo "ERROR: no sluice binary at $SLUICE (set SL_TOP_BUILDDIR)"
	exit 99
fi

PY=
for p in "${PYTHON3:-}" /usr/bin/python3 python3; do
	if [ -n "$p" ] && command -v "$p" >/dev/null 2>&1; then
		PY=$p
		break
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-vtc.XXXXXX") || exit 99
sluice_pid=

stop_sluice() {
	if [ -n "$sluice_pid" ]; then
		if kill -0 "$sluice_pid" 2>/dev/null; then
			kill -TERM "$sluice_pid" 2>/dev/null
			i=0
			while kill -0 "$sluice_pid" 2>/dev/null && [ $i -lt 50 ]; do
				sleep 0.1
				i=$((i + 1))
			done
			kill -KILL "$sluice_pid" 2>/dev/null
		fi
		wait "$sluice_pid" 2>/dev/null
		sluice_pid=
	fi
}

cleanup() {
	stop_sluice
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	if [ -n "$PY" ]; then
		"$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
		return
	fi
	while :; do
		p=$(awk 'BEGIN { srand(); print 20000 + int(rand() * 40000) }')
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
		sleep 0.01
	done
}

# Is something listening on 127.0.0.1:$1?
listening() {
	if [ -n "$PY" ]; then
		"$PY" -c 'import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
except OSError:
    sys.exit(1)' "$1"
		return
	fi
	ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# start_sluice NAME ORIGIN_PORT SLUICE_PORT
start_sluice() {
	conf=$tmp/$1.ini
	cat >"$conf" <<EOF
[sluice]
workers = 2
control_socket = $tmp/$1.sock
state_file = $tmp/$1.state
header_timeout = 2s
body_timeout = 2s
response_timeout = 5s
max_header_size = 4k
max_headers = 50

[listener:main]
bind = 127.0.0.1:$3

[service:app]
path_prefix = /
stable = v1

[version:app/v1]
servers = 127.0.0.1:$2
weight = 100
EOF
	"$SLUICE" -c "$conf" >"$tmp/$1.sluice.log" 2>&1 &
	sluice_pid=$!
	i=0
	while [ $i -lt 100 ]; do
		if ! kill -0 "$sluice_pid" 2>/dev/null; then
			echo "sluice exited at startup:"
			cat "$tmp/$1.sluice.log"
			sluice_pid=
			return 1
		fi
		listening "$3" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "sluice is not listening on $3"
	return 1
}

if [ $# -gt 0 ]; then
	files="$*"
else
	files=$(ls "$SRC"/tests/vtc/*.vtc 2>/dev/null)
fi
if [ -z "$files" ]; then
	echo "ERROR: no .vtc files under $SRC/tests/vtc"
	exit 99
fi

vflag=
[ "${VTC_VERBOSE:-0}" = 1 ] && vflag=-v

passed=0
failed=0
failed_names=
for f in $files; do
	name=$(basename "$f" .vtc)
	origin_port=$(free_port)
	sluice_port=$(free_port)
	while [ "$sluice_port" = "$origin_port" ]; do
		sluice_port=$(free_port)
	done
	if ! start_sluice "$name" "$origin_port" "$sluice_port"; then
		echo "not ok - $name (sluice did not start)"
		failed=$((failed + 1))
		failed_names="$failed_names $name"
		continue
	fi
	log=$tmp/$name.vtc.log
	# -v: the full log goes to the file; it is printed only on failure.
	"$VARNISHTEST" -v -t 10 -D origin_port="$origin_port" \
	    -D sluice_port="$sluice_port" "$f" >"$log" 2>&1
	rc=$?
	alive=yes
	kill -0 "$sluice_pid" 2>/dev/null || alive=no
	stop_sluice
	if [ $rc -eq 0 ] && [ $alive = yes ]; then
		echo "ok - $name"
		[ -n "$vflag" ] && cat "$log"
		passed=$((passed + 1))
	else
		if [ $alive = no ]; then
			echo "not ok - $name (sluice died during the test)"
		else
			echo "not ok - $name (varnishtest exit $rc)"
		fi
		# The failing part of the log: the assertion and what led to it.
		grep -n -E -- '---- |^\*\*\*\*.*(rxhdr|txreq|rxresp|expect|EXPECT)' \
		    "$log" | tail -n 25 | sed 's/^/    /'
		if [ -n "$vflag" ]; then
			cat "$log"
		fi
		echo "    sluice log:"
		tail -n 5 "$tmp/$name.sluice.log" | sed 's/^/      /'
		failed=$((failed + 1))
		failed_names="$failed_names $name"
	fi
done

echo "$passed passed, $failed failed"
if [ $failed -ne 0 ]; then
	echo "failed:$failed_names"
	exit 1
fi
exit 0
