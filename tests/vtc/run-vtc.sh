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

# Can a socket bind 127.0.0.1:$1 right now?
bindable() {
	if [ -n "$PY" ]; then
		"$PY" -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
		return
	fi
	! ss -Htan "sport = :$1" 2>/dev/null | grep -q .
}

# claim_port FD: set $claimed to a free TCP port on 127.0.0.1 and hold it
# with an flock on file descriptor FD (release: exec FD>&-). Ports come
# from below the ephemeral range, where no outgoing connection can take
# one before sluice or varnishtest binds it, and the lock keeps the
# integration tests running in parallel (harness.free_port, same lock
# files) off it.
claim_port() {
	lockdir=${TMPDIR:-/tmp}/sluice-test-ports
	mkdir -p "$lockdir" 2>/dev/null
	chmod 1777 "$lockdir" 2>/dev/null
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	case $low in '' | *[!0-9]*) low=32768 ;; esac
	hi=$((low - 1))
	tries=0
	while [ $tries -lt 200 ] && [ $hi -gt 12000 ]; do
		tries=$((tries + 1))
		r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
		claimed=$((10000 + r % (hi - 10000 + 1)))
		eval "exec $1>\"\$lockdir/\$claimed\"" 2>/dev/null || continue
		if flock -n "$1" 2>/dev/null && bindable "$claimed"; then
			return 0
		fi
		eval "exec $1>&-"
	done
	# No room below the ephemeral range: take one the kernel hands out.
	claimed=$("${PY:-python3}" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
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

# start_sluice NAME ORIGIN_PORT SLUICE_PORT [VTC]: a line "# service: KEY =
# VALUE" in the .vtc adds KEY to its [service:app].
start_sluice() {
	conf=$tmp/$1.ini
	service_extra=
	[ -n "${4:-}" ] && service_extra=$(sed -n 's/^# service: //p' "$4")
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
$service_extra

[version:app/v1]
servers = 127.0.0.1:$2
weight = 100
EOF
	"$SLUICE" -c "$conf" >"$tmp/$1.sluice.log" 2>&1 7>&- 8>&- &
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
	claim_port 7
	origin_port=$claimed
	claim_port 8
	sluice_port=$claimed
	if ! start_sluice "$name" "$origin_port" "$sluice_port" "$f"; then
		echo "not ok - $name (sluice did not start)"
		failed=$((failed + 1))
		failed_names="$failed_names $name"
		continue
	fi
	log=$tmp/$name.vtc.log
	# -v: the full log goes to the file; it is printed only on failure.
	"$VARNISHTEST" -v -t 10 -D origin_port="$origin_port" \
	    -D sluice_port="$sluice_port" "$f" >"$log" 2>&1 7>&- 8>&-
	rc=$?
	alive=yes
	kill -0 "$sluice_pid" 2>/dev/null || alive=no
	stop_sluice
	exec 7>&- 8>&-
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
