#!/bin/sh
# cd-rollout.sh — a CD pipeline step: roll VERSION out on SERVICE as a
# canary, let sluice's analyzer judge it, and fail the job unless it is
# promoted. Deploy VERSION's servers (and add its [version:] section, then
# reload) before this step.
#
#   contrib/cd-rollout.sh SERVICE VERSION [TIMEOUT_SECONDS]
#
# The job's lock keeps other pipelines and operators off SERVICE for the
# whole rollout; the running rollout sets it aside and gives it back when
# it ends, and the job releases it at the end however it went.
# Environment: SLUICE_SOCKET (default /run/sluice/control.sock),
# SLUICECTL (default sluicectl from PATH), CI_JOB_ID (the lock owner;
# default "cd-<pid>").
# Exit: 0 promoted, 1 reverted or aborted, 2 timed out (the rollout is
# aborted then), 3 could not start.
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 SERVICE VERSION [TIMEOUT_SECONDS]" >&2
	exit 3
fi
svc=$1
version=$2
timeout=${3:-1800}
owner=${CI_JOB_ID:-cd-$$}
ctl=${SLUICECTL:-sluicectl}

run() { "$ctl" --owner "$owner" "$@"; }

# Hold the service for the rollout plus a margin.
if ! run lock "$svc" "$owner" $((timeout + 300)); then
	echo "$0: cannot lock $svc (the reason is above)" >&2
	exit 3
fi
if ! run rollout start "$svc" "$version"; then
	run unlock "$svc" "$owner" >/dev/null
	exit 3
fi
run rollout wait "$svc" --timeout "$timeout"
rc=$?
if [ $rc -eq 2 ]; then
	echo "$0: no verdict within ${timeout}s: aborting the rollout" >&2
	run rollout abort "$svc" >/dev/null
fi
run unlock "$svc" "$owner" >/dev/null
case $rc in
0) echo "$version promoted on $svc" ;;
1) echo "$version not promoted on $svc" >&2 ;;
2) ;;
*) rc=3 ;;
esac
exit $rc
