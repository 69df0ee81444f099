#!/usr/bin/env python3
"""A sticky split sends all of a user's requests to one version. Two
identical versions, and one heavy user, 40% of the traffic, whose own
requests are slow (they ask for it) and whose key falls in the canary's
buckets: taken as independent requests, the canary looked slower and was
reverted within seconds (helper-68). The analyzer now weighs each
version's evidence by its groups of users (the design effect), and the
difference between users does not revert the canary (it holds: with one
user carrying 40% of the traffic, the versions' users decide more than
the versions do). A canary slower for every user, with users alike, is
still reverted."""

import http.client
import threading
import time

from harness import Origin, Sluice, check, config, done, free_port, wait_until

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
    """Traffic for SECONDS: HEAVY (unless None) sends 40% of it, slow
    requests of its own (the origin waits 10 ms more for them); 60 other
    users the rest."""
    stop = time.time() + seconds
    count = [0]

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = 0
        while time.time() < stop:
            i += 1
            if heavy is not None and i % 5 < 2:
                user, q = heavy, "?delay=10"
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
heavy = next(("heavy-%d" % i for i in range(200)
              if version_of("/green", "heavy-%d" % i) == "green"), None)
check(heavy is not None, "a heavy user whose key falls in the canary's "
      "buckets (%s)" % heavy)

n = drive("/green", heavy, 10)
r = sl.ctl("show rollout same")["rollout"]
check(r["state"] == "running",
      "identical versions, the canary's heavy user slow by its own doing: "
      "not reverted after %d requests in 10 s (%s: %s)"
      % (n, r["state"], r.get("reason") or r["verdicts"][-1]["summary"]))
deffs = [c["deff"] for c in r["verdicts"][-1]["checks"]]
check(max(deffs) > 1,
      "its verdicts show the design effect they applied (%r)" % deffs)

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
