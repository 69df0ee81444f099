#!/usr/bin/env python3
"""Demo traffic: many distinct users hitting sluice at a steady rate, with a
live view of how requests split between versions.

Each user is a key sent as X-User-Id; the version serving each response is
read from X-Sluice-Version (expose_version = yes in conf/demo.ini). Every
second one line shows the split, per version request rate, error share and
the number of users who ever changed version (stickiness: it should stay 0
unless weights move users from stable to the canary).

usage: demo-load.py PORT SECONDS [RATE] [USERS]
"""

import http.client
import random
import sys
import threading
import time

port = int(sys.argv[1])
seconds = float(sys.argv[2])
rate = float(sys.argv[3]) if len(sys.argv) > 3 else 400.0
users = int(sys.argv[4]) if len(sys.argv) > 4 else 5000

lock = threading.Lock()
counts = {}
errors = {}
seen = {}          # user -> set of versions served
moved_back = 0     # users who went canary -> stable (must stay 0)
stop = time.time() + seconds


def worker(share):
    global moved_back
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    interval = 1.0 / share
    nxt = time.time()
    rnd = random.Random()
    while time.time() < stop:
        user = "user-%d" % rnd.randrange(users)
        try:
            conn.request("GET", "/shop/item", headers={"X-User-Id": user})
            r = conn.getresponse()
            r.read()
            ver = r.getheader("X-Sluice-Version") or "?"
            with lock:
                counts[ver] = counts.get(ver, 0) + 1
                if r.status >= 500:
                    errors[ver] = errors.get(ver, 0) + 1
                prev = seen.setdefault(user, set())
                prev.add(ver)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            with lock:
                errors["conn"] = errors.get("conn", 0) + 1
        nxt += interval
        delay = nxt - time.time()
        if delay > 0:
            time.sleep(delay)


threads = [threading.Thread(target=worker, args=(rate / 8,), daemon=True)
           for _ in range(8)]
for t in threads:
    t.start()

last = {}
while time.time() < stop:
    time.sleep(1)
    with lock:
        snap = dict(counts)
        errs = dict(errors)
        switched = sum(1 for v in seen.values() if len(v) > 1)
    total = sum(snap[v] - last.get(v, 0) for v in snap) or 1
    parts = []
    for v in sorted(snap):
        d = snap[v] - last.get(v, 0)
        pct = 100.0 * d / total
        bar = "#" * int(pct / 4)
        parts.append("%-6s %5.1f%% %-25s %4d rps" % (v, pct, bar, d))
    print("  ".join(parts) + "  | users who switched: %d" % switched,
          flush=True)
    last = snap

for t in threads:
    t.join(2)
print("total: " + ", ".join("%s=%d" % kv for kv in sorted(counts.items())) +
      "; errors: %s" % (errs or "none"))
