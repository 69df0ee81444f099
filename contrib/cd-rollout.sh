#!/bin/sh
# cd-rollout.sh — a CD pipeline step: roll VERSION out on SERVICE as a
# canary, let sluice's analyzer judge it, and fail the job unless it is
# promoted. Deploy VERSION's servers (and add its [version:] section, then
# reload) before this step.
#
#   contrib/cd-rollout.sh SERVICE VERSION [TIMEOUT_SECONDS]
#
# TIMEOUT_SECONDS: 1 to 604500 (default 1800); the job's lock lasts that
# plus 300 s, and a lock lasts at most 7 days.
# The job's lock keeps other pipelines and operators off SERVICE for the
# whole rollout; the running rollout sets it aside and gives it back when
# it ends, and the job releases it at the end however it went. A restart
# or a --takeover upgrade of sluice meanwhile is no failure: sluice resumes
# the rollout and `sluicectl rollout wait` reconnects.
# Environment: SLUICE_SOCKET (default /run/sluice/control.sock),
# SLUICECTL (default sluicectl from PATH), CI_JOB_ID (the lock owner;
# default "cd-<pid>").
# Exit: 0 promoted, 1 reverted or aborted, 2 timed out (the rollout is
# aborted then), 3 no verdict: could not start (bad arguments, checked
# before anything is touched; the lock or the start refused), or lost
# track of the rollout (sluice unreachable until the timeout, sluicectl
# failed; a rollout still running is aborted then). A verdict (0, 1, 2)
# is only reported when sluice says so.
set -u

prog=$0

# Print a message and exit 3, before or without a verdict.
fail() {
	echo "$prog: $*" >&2
	exit 3
}

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 SERVICE VERSION [TIMEOUT_SECONDS]" >&2
	exit 3
fi
svc=$1
version=$2
timeout=${3:-1800}
owner=${CI_JOB_ID:-cd-$$}
ctl=${SLUICECTL:-sluicectl}

# Every argument is checked before the service is touched: a bad one must
# not leave a locked service or a started rollout behind.
# Service and version names as the config takes them (1-63 of
# A-Za-z0-9_.-); a leading - would read as an option.
for name in "$svc" "$version"; do
	case $name in
	'' | -* | *[!A-Za-z0-9_.-]*)
		fail "bad name '$name': 1 to 63 of A-Za-z0-9_.- (not starting with -)"
		;;
	esac
	[ ${#name} -le 63 ] || fail "bad name '$name': longer than 63"
done
# Whole seconds, no sign, no leading zero (the shell's $(( )) reads 010 as
# octal), at most what a lock of 7 days covers with its 300 s margin.
case $timeout in
'' | *[!0-9]* | 0*)
	fail "bad TIMEOUT_SECONDS '$timeout': whole seconds, 1 to 604500"
	;;
esac
if [ ${#timeout} -gt 6 ] || [ "$timeout" -gt 604500 ]; then
	fail "bad TIMEOUT_SECONDS '$timeout': whole seconds, 1 to 604500"
fi
# The lock owner as sluice takes it; "rollout" is sluice's own.
case $owner in
'' | rollout | *[!A-Za-z0-9_.@:-]*)
	fail "bad lock owner '$owner' (CI_JOB_ID): 1 to 63 of A-Za-z0-9_.@:-, not 'rollout'"
	;;
esac
[ ${#owner} -le 63 ] || fail "bad lock owner '$owner' (CI_JOB_ID): longer than 63"

run() { "$ctl" --owner "$owner" "$@"; }

# The state of SERVICE's rollout of VERSION as sluice tells it now, or
# nothing when sluice cannot be asked or the last rollout is another's.
# (The rollout object's "canary" and "state" are its only string fields of
# those names: a verdict's checks have numbers under "canary".)
rollout_state() {
	json=$("$ctl" --json show rollout "$svc" 2>/dev/null) || return 0
	canary=$(printf '%s\n' "$json" |
		sed -n 's/.*"canary":"\([^"]*\)".*/\1/p')
	if [ "$canary" = "$version" ]; then
		printf '%s\n' "$json" | sed -n 's/.*"state":"\([a-z_]*\)".*/\1/p'
	fi
}

# Hold the service for the rollout plus a margin.
if ! run lock "$svc" "$owner" $((timeout + 300)); then
	fail "cannot lock $svc (the reason is above)"
fi
if ! run rollout start "$svc" "$version"; then
	run unlock "$svc" "$owner" >/dev/null
	fail "cannot start the rollout of $version on $svc (the reason is above)"
fi
# sluicectl's exit codes mix verdicts with its own failures (2 is also a
# usage error, 1 also a refusal, 3 a lost daemon): unless the wait saw the
# promotion, the verdict is what sluice says the rollout's state is. A
# wait that lost sluice (3: it was restarting when the wait began, or did
# not answer in time) while the rollout may run on is begun again.
started=$(date +%s)
elapsed=0
while :; do
	run rollout wait "$svc" --timeout $((timeout - elapsed))
	rc=$?
	elapsed=$(($(date +%s) - started))
	if [ $rc -eq 0 ]; then
		state=promoted
	else
		state=$(rollout_state)
	fi
	case $rc:$state in
	3:running | 3:paused | 3:) ;;
	*) break ;;
	esac
	[ $elapsed -lt "$timeout" ] || break
	echo "$prog: lost sluice while waiting: waiting again" >&2
	sleep 1
	elapsed=$(($(date +%s) - started))
	[ $elapsed -lt "$timeout" ] || break
done
case $state in
promoted)
	result=0
	;;
reverted | aborted)
	result=1
	;;
running | paused)
	if [ "$rc" -eq 2 ] && [ "$elapsed" -ge "$timeout" ]; then
		echo "$prog: no verdict within ${timeout}s: aborting the rollout" >&2
		result=2
	else
		echo "$prog: lost track of the rollout (sluicectl rollout wait" \
			"exited $rc), which is $state: aborting it" >&2
		result=3
	fi
	if ! run rollout abort "$svc" >/dev/null; then
		echo "$prog: could not abort the rollout of $version on $svc:" \
			"abort it by hand (sluicectl --owner $owner rollout abort $svc)" >&2
	fi
	;;
*)
	echo "$prog: cannot tell how the rollout of $version on $svc went" \
		"(sluicectl rollout wait exited $rc; sluice cannot be asked," \
		"or its last rollout is not this one): see sluicectl show" \
		"rollout $svc" >&2
	result=3
	;;
esac
run unlock "$svc" "$owner" >/dev/null
case $result in
0) echo "$version promoted on $svc" ;;
1) echo "$version not promoted on $svc" >&2 ;;
esac
exit $result
