#!/usr/bin/env python3
"""contrib/ works against the real daemon: the CD pipeline step promotes a
healthy canary (exit 0) and fails the job on a bad one (exit 1), holding
and then releasing its lock; every metric the Grafana dashboard queries
exists in /metrics; the systemd unit's command lines are ones sluice
accepts."""

import json
import os
import re
import subprocess
import threading
import http.client
import urllib.request

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
text = config(port, {
    "shop": {"path_prefix": "/shop", "stable": "blue",
             "sticky": "header:X-User-Id",
             "versions": {"blue": ([blue.addr], 100),
                          "green": ([green.addr], 0)}},
    "risky": {"path_prefix": "/risky", "stable": "blue",
              "sticky": "header:X-User-Id",
              "versions": {"blue": ([blue2.addr], 100),
                           "green": ([bad.addr], 0)}},
}, sluice_extra="admin = 127.0.0.1:%d\n" % admin)
# On a machine loaded by other work, an origin preempted for tens of ms
# still shifts a window's p90 (23.5 against 7.5 ms, seen): the healthy
# canary's pipeline is about the CD step, not about latency, so latencies
# within 50 ms are a tie there (latency_tolerance).
text += ROLLOUT % "shop" + "latency_tolerance = 50ms\n" + ROLLOUT % "risky"
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


def pipeline(*args):
    p = subprocess.run(["sh", SCRIPT] + list(args), env=ENV,
                       capture_output=True, text=True, timeout=200)
    return p.returncode, p.stdout + p.stderr


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
check(sl.stop() == 0, "sluice exits 0")
done()
