#!/usr/bin/env python3
"""A canary that hangs until its clients give up and reset the connection
has no answered request at all: before, the analyzer saw "no canary
requests" look after look and the rollout waited forever with its users
broken. Those requests are counted per version as unanswered
(sluice_requests_unanswered_total) and judged against the stable
version's share: the rollout is reverted, naming them. A step that gets
no canary request at all holds, and says so once (a warning and an
event). A canary answering 404 to a third of its requests is reverted
with judge_4xx = yes, and not without it."""

import os
import socket
import struct
import threading
import time

from harness import (Origin, Sluice, admin_metrics, check, config, done,
                     free_port, metric_value, pipelined, wait_until)

blue = Origin("blue", "--latency", "2")
hung = Origin("hung", "--latency", "4000")  # past every client's patience
notfound = Origin("notfound", "--error-status", "404", "--error-rate", "0.33",
                  "--seed", "3")
port, admin = free_port(), free_port()


def service(canary, **keys):
    # No user key in the requests: each gets a random bucket (the default,
    # ip, would send every request of this one address to one version).
    keys.setdefault("sticky", "header:X-User-Id")
    return dict(keys, stable="blue", versions={
        "blue": ([blue.addr], 100), "green": ([canary.addr], 0)})


text = config(port, {
    "idle": service(blue, path_prefix="/idle"),
    "n4": service(notfound, path_prefix="/n4"),
    "y4": service(notfound, path_prefix="/y4"),
    "svc": service(hung, expose_version="yes")},
    sluice_extra="admin = 127.0.0.1:%d\n" % admin, workers=1)
ROLLOUT = """
[rollout:%s]
steps = %s 100
step_time = %s
interval = %s
"""
text += ROLLOUT % ("svc", 50, "600s", "500ms") + "min_requests = 30\n"
text += ROLLOUT % ("idle", 10, "1s", "250ms")
text += ROLLOUT % ("n4", 50, "600s", "250ms") + "min_requests = 30\n"
text += (ROLLOUT % ("y4", 50, "600s", "250ms") + "min_requests = 30\n"
         "judge_4xx = yes\n")
sl = Sluice(text=text, port=port)
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends a reset
stop = threading.Event()
seen = {"ok": 0, "gave_up": 0}


def client():
    while not stop.is_set():
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        s.settimeout(0.5)
        try:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: svc\r\n\r\n")
            data = s.recv(4096)
            seen["ok" if data.startswith(b"HTTP/1.1 200") else
                 "gave_up"] += 1
        except socket.timeout:
            seen["gave_up"] += 1  # and resets: the user is gone
        finally:
            s.close()


check(sl.ctl("rollout start svc green")["ok"], "rollout of green started")
threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
for t in threads:
    t.start()


def rollout():
    return sl.ctl("show rollout svc")["rollout"]


check(wait_until(lambda: rollout()["state"] != "running", 60),
      "the rollout ends (%s after %r)" % (rollout()["state"], seen))
stop.set()
for t in threads:
    t.join(5)
r = rollout()
check(r["state"] == "reverted",
      "a canary whose every request hangs until its client resets is "
      "reverted (%s: %s)" % (r["state"], r.get("reason")))
check("unanswered" in (r.get("reason") or ""),
      "and the reason names the unanswered requests (%s)" % r.get("reason"))
check(seen["gave_up"] > 0 and seen["ok"] > 0,
      "clients were served by blue and gave up on green (%r)" % seen)
m = admin_metrics(admin)
green = metric_value(m, "sluice_requests_unanswered_total", service="svc",
                     version="green")
blue_n = metric_value(m, "sluice_requests_unanswered_total", service="svc",
                      version="blue")
check(green is not None and green > 0 and blue_n == 0,
      "sluice_requests_unanswered_total counts them for green only "
      "(green %s, blue %s)" % (green, blue_n))
stats = sl.ctl("show stats svc")["versions"]
check(stats["green"].get("requests_unanswered", 0) > 0,
      "show stats has requests_unanswered (%r)"
      % stats["green"].get("requests_unanswered"))

# A step with no canary request at all holds, and says so once.
check(sl.ctl("rollout start idle green")["ok"], "rollout of idle started")


def starved():
    return [e for e in sl.ctl("show events 1000")["events"]
            if e["command"].startswith("rollout idle: no canary requests")]


check(wait_until(lambda: starved(), 15),
      "with no traffic, once the step's time is up, an event says the "
      "step holds for want of canary requests (%r)"
      % [e["command"][:110] for e in starved()])
time.sleep(1.5)  # six more looks
check(len(starved()) == 1 and
      sl.ctl("show rollout idle")["rollout"]["state"] == "running",
      "said once a step, and the rollout waits on (%d events)"
      % len(starved()))
check("no canary requests in step 1/2" in sl.logtext(),
      "and logged as a warning")

# 404 for a third of the canary's requests: an error only with judge_4xx.
check(sl.ctl("rollout start n4 green")["ok"] and
      sl.ctl("rollout start y4 green")["ok"], "rollouts of n4 and y4")
check(sl.ctl("show rollout y4")["rollout"]["judge_4xx"] is True and
      sl.ctl("show rollout n4")["rollout"]["judge_4xx"] is False,
      "show rollout says judge_4xx")
for i in range(600):
    pipelined(port, [b"GET /n4/x HTTP/1.1\r\nHost: s\r\n\r\n",
                     b"GET /y4/x HTTP/1.1\r\nHost: s\r\n\r\n"])
    if sl.ctl("show rollout y4")["rollout"]["state"] != "running":
        break
y4 = sl.ctl("show rollout y4")["rollout"]
n4 = sl.ctl("show rollout n4")["rollout"]
check(y4["state"] == "reverted" and "error_vs_stable" in (y4["reason"] or ""),
      "judge_4xx = yes: reverted by error_vs_stable (%s: %s)"
      % (y4["state"], y4["reason"]))
check(n4["state"] == "running",
      "without it, the same canary is not reverted for its 404s (%s: %s)"
      % (n4["state"], n4["reason"]))
check(sl.stop() == 0, "sluice exits 0")
done()
