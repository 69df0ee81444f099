#!/usr/bin/env python3
"""The analyzer judges the requests the weights routed, not those an
override or a pin sent to a version: a QA group pinned to the canary, or a
preview, is not drawn at random from the users, so its failures (or its
slow pages) are not the canary's against the stable version. Here every
request a pin or a proven override sends to the canary fails slowly,
while the users the weights send there are served like the stable
version's: the rollouts are promoted, each verdict says how many requests
it left out, and the version's own counters still show every failure.
With the same settings, a canary failing a third of the requests the
weights send it is reverted."""

import http.client
import os
import re
import subprocess
import threading
import time

from harness import (BUILD, Origin, Sluice, admin_metrics, check, config,
                     done, free_port, metric_value, wait_until)

blue = Origin("blue", "--latency", "2")
green = Origin("green", "--latency", "2")
green_bad = Origin("green-bad", "--latency", "2", "--error-rate", "0.3",
                   "--seed", "5")
port, admin = free_port(), free_port()
SECRET = "qa-preview-secret-0123456789"


def service(prefix, canary=green, **keys):
    return dict(keys, path_prefix=prefix, stable="blue",
                sticky="header:X-User-Id",
                versions={"blue": ([blue.addr], 100),
                          "green": ([canary.addr], 0)})


text = config(port, {
    "pin": service("/pin"),
    "ovr": service("/ovr", override_secret=SECRET),
    "split": service("/split", green_bad)},
    sluice_extra="admin = 127.0.0.1:%d\n" % admin, workers=1)
text += """
[pin:pin/qa]
match = header:X-QA=1
version = green
"""
ROLLOUT = """
[rollout:%s]
steps = 50 100
step_time = 1s
interval = 250ms
min_requests = 40
max_error_rate = 1%%
"""
text += "".join(ROLLOUT % s for s in ("pin", "ovr", "split"))
sl = Sluice(text=text, port=port)
stop = threading.Event()
sent = {"qa": 0, "users": 0}


def client(kind, target, headers, pause):
    """Requests for TARGET, each with its own user key, until stop."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    while not stop.is_set():
        h = dict(headers, **{"X-User-Id": "%s%d" % (target, i)})
        try:
            c.request("GET", target, headers=h)
            c.getresponse().read()
            sent[kind] += 1
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i += 1
        time.sleep(pause)


def users(prefix, n):
    """Users the weights route: each its own key, served alike."""
    client("users", "%s/x%d" % (prefix, n), {}, 0.003)


def qa(prefix, headers):
    """The QA group: every request fails, slowly (500 after 30 ms)."""
    client("qa", "%s/x?status=500&delay=30" % prefix, headers, 0)


def rollout(svc):
    return sl.ctl("show rollout %s" % svc)["rollout"]


for svc in ("pin", "ovr"):
    check(sl.ctl("rollout start %s green" % svc)["ok"],
          "rollout of %s started" % svc)
threads = [threading.Thread(target=users, args=(p, n), daemon=True)
           for n, p in enumerate(["/pin", "/pin", "/ovr", "/ovr"])]
threads += [threading.Thread(target=qa, args=a, daemon=True) for a in (
    ("/pin", {"X-QA": "1"}),
    ("/ovr", {"X-Sluice-Version": "green", "X-Sluice-Secret": SECRET}))]
for t in threads:
    t.start()
check(wait_until(lambda: all(rollout(s)["state"] != "running"
                             for s in ("pin", "ovr")), 90),
      "the rollouts end (%s, %s after %r)"
      % (rollout("pin")["state"], rollout("ovr")["state"], sent))
for svc, rule, art in (("pin", "pin", "a pin"),
                       ("ovr", "override", "an override")):
    r = sl.ctl("show rollout %s" % svc)["rollout"]
    check(r["state"] == "promoted",
          "%s: the canary the weights' users found as good as the stable "
          "version is promoted, though every request %s sent it failed "
          "(%s: %s)" % (svc, art, r["state"], r["reason"]))
    left = [v["unjudged"]["canary"] for v in r["verdicts"]]
    check(left and max(left) > 0 and
          all(v["unjudged"]["stable"] == 0 for v in r["verdicts"]),
          "%s: the verdicts say how many canary requests they left out "
          "(%r), none of the stable version's" % (svc, left[-3:]))
    st = sl.ctl("show stats %s" % svc)["versions"]["green"]
    check(st["requests_by_rule"][rule] > 0 and
          st["responses"]["5xx"] >= st["requests_by_rule"][rule] - 2,
          "%s: green's own counters still have the %s's requests and "
          "their 500s (%r, %r)" % (svc, rule, st["requests_by_rule"],
                                   st["responses"]))
p = subprocess.run([os.path.join(BUILD, "sluicectl"), "-s", sl.ctl_path,
                    "show", "rollout", "pin"], capture_output=True,
                   text=True, timeout=10)
check(p.returncode == 0 and
      re.search(r"not judged: [1-9]\d* canary and 0 stable requests an "
                r"override or a pin routed", p.stdout),
      "sluicectl show rollout says what each verdict left out (%r)"
      % [l for l in p.stdout.splitlines() if "judged" in l][-1:])
stop.set()
for t in threads:
    t.join(10)
m = admin_metrics(admin)
check((metric_value(m, "sluice_requests_total", service="pin",
                    version="green", code_class="5xx") or 0) > 0,
      "and /metrics counts green's 500s")

# The control, with the same rollout settings: a canary that fails a third
# of the requests the weights send it is reverted, and nothing is left out.
stop.clear()
check(sl.ctl("rollout start split green")["ok"], "rollout of split started")
threads = [threading.Thread(target=users, args=("/split", n), daemon=True)
           for n in (7, 8)]
for t in threads:
    t.start()
check(wait_until(lambda: rollout("split")["state"] != "running", 60),
      "the split rollout ends (%s)" % rollout("split")["state"])
stop.set()
for t in threads:
    t.join(10)
r = sl.ctl("show rollout split")["rollout"]
check(r["state"] == "reverted",
      "split: a canary failing the users the weights send it is reverted "
      "(%s: %s)" % (r["state"], r["reason"]))
check(r["verdicts"] and
      all(v["unjudged"] == {"stable": 0, "canary": 0} for v in r["verdicts"]),
      "split: with no rule in play, no request is left out")
check(sl.stop() == 0, "sluice exits 0")
done()
