#!/usr/bin/env python3
"""A sticky split sends all of a user's requests to one version. Two
identical versions, and two heavy users whose own requests are slow
(they ask for it), one on each version: the canary's sends 30% of the
traffic, the stable version's 10%. Taken as independent requests, the
canary looked slower and was reverted within seconds (helper-68 saw it
with one heavy user). The analyzer now weighs the evidence by the users' variety
the stable version shows (its design effect), and the difference between
users does not revert the canary: it holds. A canary slower for every
user, with users alike, is still reverted."""

import http.client
import os
import subprocess
import threading
import time

from harness import (BUILD, Origin, Sluice, check, config, done, free_port,
                     wait_until)

blue = Origin("blue", "--latency", "2")
green = Origin("green", "--latency", "2")
green_slow = Origin("green-slow", "--latency", "12")
port = free_port()


def svc(canary):
    return {"stable": "blue", "sticky": "header:X-User-Id",
            "expose_version": "yes", "path_prefix": "/" + canary.name,
            "versions": {"blue": ([blue.addr], 100),
                         "green": ([canary.addr], 0)}}


text = config(port, {"same": svc(green), "worse": svc(green_slow)},
              workers=1)
for name in ("same", "worse"):
    text += """
[rollout:%s]
steps = 50 100
step_time = 600s
interval = 500ms
min_requests = 30
""" % name
sl = Sluice(text=text, port=port)


def version_of(path, user):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"X-User-Id": user})
    r = c.getresponse()
    r.read()
    c.close()
    return r.getheader("X-Sluice-Version")


def drive(path, heavy, seconds):
    """Traffic for SECONDS: the two users of HEAVY (unless None) send 30%
    and 10% of it, slow requests of their own (the origin waits 10 ms
    more for them); 60 other users the rest."""
    stop = time.time() + seconds
    count = [0]

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = 0
        while time.time() < stop:
            i += 1
            if heavy is not None and i % 10 < 4:
                user, q = heavy[i % 10 == 3], "?delay=10"
            else:
                user, q = "user-%d-%d" % (k, i % 15), ""
            c.request("GET", path + q, headers={"X-User-Id": user})
            c.getresponse().read()
            count[0] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0]


for name in ("same", "worse"):
    check(sl.ctl("rollout start %s green" % name)["ok"],
          "rollout of %s started at 50%%" % name)
keys = ["heavy-%d" % i for i in range(200)]
on = {k: version_of("/green", k) for k in keys[:40]}
heavy = (next((k for k in keys[:40] if on[k] == "green"), None),
         next((k for k in keys[:40] if on[k] == "blue"), None))
check(None not in heavy, "a heavy user on each version (%r)" % (heavy,))

n = drive("/green", heavy, 10)
r = sl.ctl("show rollout same")["rollout"]
check(r["state"] == "running",
      "identical versions, each with a heavy user slow by its own doing: "
      "not reverted after %d requests in 10 s (%s: %s)"
      % (n, r["state"], r.get("reason") or r["verdicts"][-1]["summary"]))
deffs = [c["deff"] for c in r["verdicts"][-1]["checks"]]
check(max(deffs) > 1,
      "its verdicts show the design effect they applied (%r)" % deffs)
p = subprocess.run([os.path.join(BUILD, "sluicectl"), "-s", sl.ctl_path,
                    "show", "rollout", "same"],
                   capture_output=True, text=True, timeout=30)
check(" DEFF " in p.stdout,
      "sluicectl show rollout has a DEFF column then (%r)"
      % [ln for ln in p.stdout.splitlines() if "CHECK" in ln][:1])

for _ in range(8):
    drive("/green-slow", None, 2)
    if sl.ctl("show rollout worse")["rollout"]["state"] != "running":
        break
r = sl.ctl("show rollout worse")["rollout"]
check(r["state"] == "reverted",
      "a canary 10 ms slower for every user is reverted (%s: %s)"
      % (r["state"], r.get("reason")))
check(sl.stop() == 0, "sluice exits 0")
done()
