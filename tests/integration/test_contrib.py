#!/usr/bin/env python3
"""contrib/ works against the real daemon: the CD pipeline step promotes a
healthy canary (exit 0) and fails the job on a bad one (exit 1), holding
and then releasing its lock; every metric the Grafana dashboard queries
exists in /metrics; the systemd unit's command lines are ones sluice
accepts; the sample config shows every key sluice knows."""

import json
import os
import re
import signal
import subprocess
import threading
import http.client
import urllib.request

import harness
from harness import (BUILD, SLUICE, SRC, Origin, Sluice, check, config, done,
                     free_port)

# The healthy canary's origins answer in 5 ms, like the stable's: answers
# in tens of µs are ordered by the scheduler on a loaded machine (an origin
# preempted for a few ms is slower than the other for a whole interval), a
# real latency shift the analyzer would rightly revert on. Each service has
# origins of its own, so canary and stable carry the same load.
blue = Origin("blue", "--latency", "5")
green = Origin("green", "--latency", "5")
blue2 = Origin("blue2")
bad = Origin("bad", "--error-rate", "0.5", "--seed", "3")
port, admin = free_port(), free_port()
ROLLOUT = ("[rollout:%s]\nsteps = 50 100\nstep_time = 1s\ninterval = 250ms\n"
           "min_requests = 20\nlatency_quantile = 0.9\n")
# "calm" gets no traffic: its rollouts stay inconclusive at their first
# step (step_time far beyond any test's pauses) until a verdict is forced.
CALM = ("[rollout:calm]\nsteps = 50 100\nstep_time = 600s\n"
        "interval = 1s\n")
text = config(port, {
    "shop": {"path_prefix": "/shop", "stable": "blue",
             "sticky": "header:X-User-Id",
             "versions": {"blue": ([blue.addr], 100),
                          "green": ([green.addr], 0)}},
    "risky": {"path_prefix": "/risky", "stable": "blue",
              "sticky": "header:X-User-Id",
              "versions": {"blue": ([blue2.addr], 100),
                           "green": ([bad.addr], 0)}},
    "calm": {"path_prefix": "/calm", "stable": "blue",
             "versions": {"blue": ([blue2.addr], 100),
                          "green": ([green.addr], 0)}},
}, sluice_extra="admin = 127.0.0.1:%d\n" % admin)
# On a machine loaded by other work, an origin preempted for tens of ms
# still shifts a window's p90 (23.5 against 7.5 ms, seen): the healthy
# canary's pipeline is about the CD step, not about latency, so latencies
# within 50 ms are a tie there (latency_tolerance).
text += ROLLOUT % "shop" + "latency_tolerance = 50ms\n" + ROLLOUT % "risky" + \
    CALM
sl = Sluice(text=text, port=port)

stop = threading.Event()


def load(prefix):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    while not stop.is_set():
        i += 1
        try:
            c.request("GET", prefix + "/x",
                      headers={"X-User-Id": "%s%d" % (prefix, i)})
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


threads = [threading.Thread(target=load, args=(p,), daemon=True)
           for p in ("/shop", "/shop", "/risky", "/risky")]
for t in threads:
    t.start()

SCRIPT = os.path.join(SRC, "contrib", "cd-rollout.sh")
ENV = dict(os.environ, SLUICECTL=os.path.join(BUILD, "sluicectl"),
           SLUICE_SOCKET=sl.ctl_path, CI_JOB_ID="job-7")


def pipeline(*args, env=None, timeout=200):
    """Run the script; (exit code, output), or (-1, ...) if it is still
    running after TIMEOUT s (then it and its sluicectl are killed)."""
    p = subprocess.Popen(["sh", SCRIPT] + list(args), env=env or ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    harness._procs.append(p)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return -1, out + "\n(still running after %d s)" % timeout
    return p.returncode, out


rc, out = pipeline("shop", "green", "120")
svc = sl.ctl("show service shop")["service"]
check(rc == 0 and "green promoted on shop" in out,
      "cd-rollout.sh: a healthy canary is promoted, exit 0 (%d: %s; %s)"
      % (rc, out.strip().splitlines()[-1:],
         (sl.ctl("show rollout shop")["rollout"]["verdicts"] or
          [{"summary": "no verdict"}])[-1]["summary"]))
check(svc["stable"] == "green" and svc["lock"] is None,
      "green is stable and the job's lock is released (%r)" % svc["lock"])
events = [e for e in sl.ctl("show events 1000")["events"]
          if e["who"].get("owner") == "job-7"]
check([e["command"].split()[0] for e in events][:2] == ["lock", "rollout"],
      "the job locked the service before starting the rollout, as job-7")

rc, out = pipeline("risky", "green", "120")
r = sl.ctl("show rollout risky")["rollout"]
check(rc == 1 and r["state"] == "reverted" and
      sl.ctl("show service risky")["service"]["lock"] is None,
      "a canary failing half its requests is reverted: exit 1, lock "
      "released (%d, %s)" % (rc, r["state"]))
rc, out = pipeline("shop")
check(rc == 3 and "usage" in out, "cd-rollout.sh without a version: exit 3")
rc, out = pipeline("nope", "green", "5")
check(rc == 3, "cd-rollout.sh on an unknown service: exit 3 (%s)"
      % out.strip().splitlines()[-1:])
stop.set()
for t in threads:
    t.join(5)


def job_events():
    return [e for e in sl.ctl("show events 1000")["events"]
            if e["who"].get("owner") == "job-7"]


def calm():
    """calm's rollout state (None if none ran) and lock."""
    svc = sl.ctl("show service calm")["service"]
    return ((svc["rollout"] or {}).get("state"), svc["lock"])


# Bad arguments are refused before anything is touched: no lock, no
# rollout (a TIMEOUT of 0 once locked, started, and then aborted the
# rollout as if it had timed out; "abc" died in the shell's arithmetic).
before = len(job_events())
for args, env, what in (
        (("calm", "green", "0"), None, "TIMEOUT_SECONDS '0'"),
        (("calm", "green", "abc"), None, "TIMEOUT_SECONDS 'abc'"),
        (("calm", "green", "010"), None, "TIMEOUT_SECONDS '010'"),
        (("calm", "green", "604501"), None, "TIMEOUT_SECONDS '604501'"),
        (("calm", "gr een", "5"), None, "name 'gr een'"),
        (("-calm", "green", "5"), None, "name '-calm'"),
        (("calm", "green", "5"), dict(ENV, CI_JOB_ID="job 7"),
         "lock owner 'job 7'")):
    rc, out = pipeline(*args, env=env, timeout=30)
    check(rc == 3 and what in out and "Illegal" not in out and
          len(job_events()) == before and calm() == (None, None),
          "cd-rollout.sh %s: exit 3 with a clear message, the service "
          "untouched (%d, %r)" % (" ".join(args), rc, out.strip()))

# No verdict within TIMEOUT: exit 2, the rollout aborted, the lock back.
rc, out = pipeline("calm", "green", "2")
check(rc == 2 and "no verdict within 2s" in out and
      calm() == ("aborted", None),
      "cd-rollout.sh with no verdict in time: exit 2, rollout aborted, "
      "lock released (%d, %r, %r)" % (rc, out.strip(), calm()))

# sluicectl failing in the wait is no verdict, whatever its exit code (2
# is also its usage error, 1 a refusal): exit 3, the rollout aborted.
shim = os.path.join(harness.TMP, "sluicectl-shim")
with open(shim, "w") as f:
    f.write('#!/bin/sh\nfor a; do [ "$a" = wait ] && exit "$SHIM_RC"; done\n'
            'exec "%s" "$@"\n' % os.path.join(BUILD, "sluicectl"))
os.chmod(shim, 0o755)
# (A wait that lost sluice, 3, is begun again until the timeout: the
# rollout may run on.)
for code, timeout in (("2", "60"), ("1", "60"), ("3", "3")):
    rc, out = pipeline("calm", "green", timeout,
                       env=dict(ENV, SLUICECTL=shim, SHIM_RC=code))
    check(rc == 3 and "lost track of the rollout" in out and
          "promoted" not in out and calm() == ("aborted", None) and
          ("waiting again" in out) == (code == "3"),
          "cd-rollout.sh: rollout wait failing with %s is no verdict: exit "
          "3, the running rollout aborted, lock released (%d, %r)"
          % (code, rc, out.strip()))

# A wait that lost sluice once (as when sluice restarts just before the
# wait connects) is begun again and ends in a real verdict: here the
# timeout, exit 2.
once = os.path.join(harness.TMP, "shim-once")
with open(shim, "w") as f:
    f.write('#!/bin/sh\nfor a; do [ "$a" = wait ] && ! [ -e "%s" ] && '
            ': > "%s" && exit 3; done\nexec "%s" "$@"\n'
            % (once, once, os.path.join(BUILD, "sluicectl")))
rc, out = pipeline("calm", "green", "4", env=dict(ENV, SLUICECTL=shim))
check(rc == 2 and out.count("waiting again") == 1 and
      "no verdict within 4s" in out and calm() == ("aborted", None),
      "cd-rollout.sh: a wait that lost sluice once is begun again, then "
      "times out: exit 2 (%d, %r)" % (rc, out.strip()))

# A restart of sluice in the middle of the job: the wait reconnects, and
# the operator's abort through the new sluice is the verdict (exit 1). It
# used to end with exit 3 and the rollout left running, its lock aside.
job = subprocess.Popen(["sh", SCRIPT, "calm", "green", "300"], env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
harness._procs.append(job)
# The lock's, the start's, then rollout wait's first line: it is waiting.
head = ""
while "calm: step" not in head:
    line = job.stdout.readline()
    if not line:
        break
    head += line
check("calm: step 1/2 at 50.00%: running" in head,
      "cd-rollout.sh is waiting (%r)" % head)
check(sl.restart() == 0, "sluice stopped mid-job exits 0")
check(calm()[0] == "running", "the restarted sluice resumed the rollout")
r = sl.ctl("rollout abort calm")
check(not r["ok"] and "locked by 'job-7'" in r["error"],
      "the job's lock keeps others from aborting it (%r)" % r)
check(sl.ctl("as job-7 rollout abort calm")["ok"],
      "an operator aborts it as the job's owner")
try:
    out, err = job.communicate(timeout=60)
except subprocess.TimeoutExpired:
    job.kill()
    out, err = job.communicate()
check(job.returncode == 1 and "green not promoted on calm" in err and
      "reconnected" in err and calm() == ("aborted", None),
      "cd-rollout.sh through a restart: exit 1 on the abort, lock released "
      "(%d, %r, %r)" % (job.returncode, out, err))

# Every metric family the dashboard queries is in a real scrape.
with open(os.path.join(SRC, "contrib", "grafana-dashboard.json")) as f:
    dash = json.load(f)
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
names = set()
for e in exprs:
    for n in re.findall(r"\bsluice_[a-z_]+", e):
        names.add(re.sub(r"_(bucket|sum|count)$", "", n)
                  if "duration" in n else n)
scrape = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin,
                                timeout=10).read().decode()
types = set(re.findall(r"^# TYPE (\S+) ", scrape, re.M))
missing = sorted(n for n in names
                 if n not in types and re.sub(r"_total$", "", n) not in types)
check(len(dash["panels"]) >= 6 and not missing,
      "the Grafana dashboard queries %d metric families, all in /metrics "
      "(missing: %r)" % (len(names), missing))

# The systemd unit's sluice command lines, with this test's config.
with open(os.path.join(SRC, "contrib", "sluice.service")) as f:
    unit = f.read()
cmds = re.findall(r"^Exec(?:StartPre|Start|Reload)=(/usr/local/bin/sluice .*)$",
                  unit, re.M)
check(len(cmds) == 3, "the unit runs sluice in ExecStartPre, ExecStart and "
      "ExecReload (%d)" % len(cmds))
for line in cmds:
    args = line.split()[1:]
    if "-t" not in args:
        continue
    args = [sl.path if a == "/etc/sluice/sluice.ini" else a for a in args]
    p = subprocess.run([SLUICE] + args, capture_output=True, text=True,
                       timeout=30)
    check(p.returncode == 0 and "configuration ok" in p.stdout + p.stderr,
          "the unit's check line works: sluice %s" % " ".join(args))
check("ExecReload=/bin/kill -HUP $MAINPID" in unit and
      "KillSignal=SIGTERM" in unit,
      "the unit reloads with SIGHUP and stops with SIGTERM")

# The sample config is "the commented reference with every key" (README):
# every key the loader knows is in it, set or commented out, and in the
# README's tables; and sluice accepts it. 19 keys were missing.
with open(os.path.join(SRC, "conf", "load.c")) as f:
    known = sorted(set(re.findall(r'\.name = "([a-z_0-9]+)"', f.read())))
with open(os.path.join(SRC, "conf", "sluice.ini")) as f:
    sample = f.read()
with open(os.path.join(SRC, "README.md")) as f:
    readme = f.read()
check(len(known) > 60, "the loader's keys are found (%d)" % len(known))
missing = [k for k in known
           if not re.search(r"^(; ?)?%s *=" % k, sample, re.M)]
check(not missing, "conf/sluice.ini shows every key (missing: %s)"
      % " ".join(missing))
missing = [k for k in known if "`%s`" % k not in readme]
check(not missing, "README names every key (missing: %s)"
      % " ".join(missing))
p = subprocess.run([SLUICE, "-t", "-c", os.path.join(SRC, "conf",
                    "sluice.ini")], capture_output=True, text=True, timeout=30)
check(p.returncode == 0, "sluice -t accepts conf/sluice.ini (%s)"
      % (p.stdout + p.stderr).strip())

check(sl.stop() == 0, "sluice exits 0")
done()
