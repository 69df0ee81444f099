#!/usr/bin/env python3
"""The blue/green guard: after a switch, the new version is compared with
the previous stable's behaviour just before the switch; a good switch is
held, a bad one is switched back automatically."""

import http.client
import threading
import time

from harness import Origin, Sluice, check, config, done, free_port

blue = Origin("blue", "--latency", "3")
teal = Origin("teal", "--latency", "3")
bad = Origin("bad", "--latency", "3", "--error-rate", "0.10", "--seed", "3")
port = free_port()
text = config(port, {"bg": {
    "path_prefix": "/", "stable": "blue", "expose_version": "yes",
    "versions": {"blue": ([blue.addr], 100), "teal": ([teal.addr], 0),
                 "bad": ([bad.addr], 0)}}}) + """
[rollout:bg]
guard = 4s
interval = 500ms
step_time = 2s
min_requests = 30
max_error_rate = 1%
"""
sl = Sluice(text=text, port=port)
stop = threading.Event()


def load():
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    while not stop.is_set():
        try:
            c.request("GET", "/x")
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
        time.sleep(0.003)


threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
for t in threads:
    t.start()
time.sleep(3)  # the stable's behaviour before any switch

r = sl.ctl("switch bg teal")
check(r["ok"] and r["stable"] == "teal", "switch bg teal")
g = sl.ctl("show service bg")["service"]["guard"]
check(g is not None and g["state"] == "watching" and g["previous"] == "blue"
      and g["baseline_requests"] > 100,
      "the guard watches teal against blue's last seconds (%r)" % g)
time.sleep(5.5)
g = sl.ctl("show service bg")["service"]["guard"]
check(g["state"] == "passed", "a good switch is held after the guard (%s)"
      % g["last_verdict"])
check(sl.ctl("show service bg")["service"]["stable"] == "teal", "teal stays")

r = sl.ctl("switch bg bad")
check(r["ok"] and r["stable"] == "bad", "switch bg bad (10% errors)")
deadline = time.time() + 6
while time.time() < deadline:
    svc = sl.ctl("show service bg")["service"]
    if svc["stable"] != "bad":
        break
    time.sleep(0.2)
check(svc["stable"] == "teal" and
      {v["name"]: v["weight"] for v in svc["versions"]}["teal"] == 100.0,
      "the guard switched back to teal on its own")
check(svc["guard"]["state"] == "switched_back", "guard state: switched_back")
evs = sl.ctl("show events 50")["events"]
check(any(e["command"].startswith("guard bg: switched back from bad to teal")
          for e in evs), "the switch back is an event, with the verdict")
stop.set()
for t in threads:
    t.join(5)
check(sl.stop() == 0, "sluice exits 0")
done()
