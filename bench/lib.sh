# bench/lib.sh — what compare.sh and tls-bench.sh share. Sourced after
# the caller set PROG (its name, for messages), top, build and install.
# shellcheck shell=bash

log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "$PROG: $*" >&2; exit 1; }

# free_ports N: N distinct loopback ports free right now, from below the
# kernel's ephemeral range (ip_local_port_range), so no outgoing
# connection of the run (wrk's 1000 among them) can take one before its
# daemon binds it; from bind(0) only if that range leaves no room.
free_ports() {
	"${PY:-python3}" - "$1" <<'EOF'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
ports = []
while len(ports) < int(sys.argv[1]):
    port = random.randint(10000, low - 1) if low > 12000 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
    except OSError:
        continue
    finally:
        s.close()
    if port not in ports:
        ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# Installs the Debian packages given that are missing (unless --no-install).
install_missing() {
	local p missing=() sudo=""
	[ "$install" = yes ] || return 0
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	log "installing ${missing[*]}"
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq &&
		$sudo apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >/dev/null ||
		die "could not install ${missing[*]}"
}

# Builds the make targets given in $build, a plain ./configure build
# (configured here if needed; a debug or ASan build is refused).
build_plain() {
	if [ -f "$build/config.status" ] &&
		grep -q -e '--enable-debug' -e '--enable-asan' "$build/config.status"; then
		die "$build was configured with --enable-debug or --enable-asan; use a plain ./configure build"
	fi
	if [ ! -f "$build/Makefile" ]; then
		log "configuring sluice in $build (plain ./configure)"
		mkdir -p "$build"
		(cd "$build" && "$top/configure" -q >/dev/null) || die "configure failed"
	fi
	log "building $* in $build"
	(cd "$build" && make -j"$(nproc)" "$@" >"$build/bench-make.log" 2>&1) ||
		die "build failed, see $build/bench-make.log"
}

# A scratch directory ($run) and the pids of everything started here
# (add to pids); on exit every one is killed and $run removed (kept when
# KEEP_RUN is set).
run=$(mktemp -d "/tmp/sluice-$PROG.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	! declare -F cleanup_hook >/dev/null || cleanup_hook
	[ -n "${KEEP_RUN:-}" ] || rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until something accepts on 127.0.0.1:$1 (10 s at most).
wait_port() {
	local i
	for i in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
