#!/usr/bin/env python3
"""Resilience: health checks take a dead origin out and bring it back,
passive ejection removes a failing server, retries stay within a version,
fallback = stable, reloads under load lose nothing, a bad reload keeps the
old config, SIGTERM drains, a zero-downtime upgrade hands over, and the
connection limit pauses accepting instead of failing."""

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import (SLUICE, Origin, Sluice, admin_metrics, check, config,
                     done, free_port, metric_value, wait_until)

a = Origin("a")
b = Origin("b")
bad = Origin("bad", "--error-rate", "1.0", "--error-status", "500")
bad3 = Origin("bad3", "--error-rate", "1.0", "--error-status", "500")
good2 = Origin("good2")
canary = Origin("canary")

port = free_port()
admin_port = free_port()  # the upgrade below takes it over too
text = config(port, {
    "health": {"path_prefix": "/h", "stable": "v1",
               "health_path": "/__origin/stats", "health_interval": "200ms",
               "health_timeout": "500ms", "health_rise": "2",
               "health_fall": "2", "expose_version": "yes",
               "eject_after": "0",
               "versions": {"v1": ([a.addr, b.addr], 100)}},
    "eject": {"path_prefix": "/e", "stable": "v1", "eject_after": "3",
              "eject_time": "30s", "expose_version": "yes",
              "versions": {"v1": ([bad.addr, good2.addr], 100)}},
    # One server that always fails, which eject_max = 100% lets go out
    # (for 1 s): its ejection's end is an event too.
    "brief": {"path_prefix": "/b", "stable": "v1", "eject_after": "2",
              "eject_time": "1s", "eject_max": "100%",
              "versions": {"v1": ([bad3.addr], 100)}},
    "fb": {"path_prefix": "/f", "stable": "blue", "fallback": "stable",
           "sticky": "header:X-User-Id", "expose_version": "yes",
           "versions": {"blue": ([good2.addr], 0), "green": ([canary.addr], 100)}},
}, workers=1, sluice_extra="retry_budget = 100%%\nadmin = 127.0.0.1:%d\n"
    % admin_port)
sl = Sluice(text=text, port=port)


def get(path, headers=None):
    try:
        return sl.get(path, headers=headers or {})
    except (OSError, http.client.HTTPException) as e:
        return 0, None, str(e).encode()


def server(svc, addr):
    r = sl.ctl("show service %s" % svc)["service"]
    for v in r["versions"]:
        for s in v["servers"]:
            if s["address"] == addr:
                return s
    return None


# --- Passive ejection: 'bad' answers 500 to everything. Each request goes
# to it with a chance of 1/2, so requests go on until it is ejected (at
# most 100 requests or 10 s).
codes = []
s = server("eject", bad.addr)
deadline = time.time() + 10
while (not s.get("ejected_because") and len(codes) < 100 and
       time.time() < deadline):
    codes.append(get("/e/x")[0])
    s = server("eject", bad.addr)
check(s.get("ejected_because") == "5xx responses" and s["ejected_for"] > 20,
      "a server failing 3 times in a row is ejected (%r after %d requests)"
      % (s, len(codes)))
check(codes.count(500) == 3 and codes.count(200) == len(codes) - 3,
      "until then clients got its 500 exactly 3 times, 200 from the other "
      "server otherwise (%r)" % codes)
bad.reset()
good2.reset()
codes = [get("/e/y")[0] for _ in range(20)]
check(codes == [200] * 20 and bad.stats()["requests"] == 0,
      "while ejected it gets no traffic: 20 of 20 requests 200 from the other")
check(server("eject", good2.addr).get("ejected_for") is None,
      "the cap (50%) keeps the last healthy server in")


def events(prefix):
    return [e["command"] for e in sl.ctl("show events 200")["events"]
            if e["command"].startswith(prefix)]


def metrics():
    return admin_metrics(admin_port)


check(wait_until(lambda: events("outlier: eject/v1 %s ejected for" % bad.addr),
                 5) and
      events("outlier: eject/v1 %s" % bad.addr)[0].endswith(
          ": 5xx responses (ejections by all workers since start: 1)"),
      "the ejection is recorded as an event, with its reason (%r)"
      % events("outlier:"))
mtext = metrics()
check(metric_value(mtext, "sluice_server_available", service="eject",
                   server=bad.addr) == 0 and
      metric_value(mtext, "sluice_server_available", service="eject",
                   server=good2.addr) == 1 and
      metric_value(mtext, "sluice_server_ejections_total",
                   server=bad.addr) == 1 and
      metric_value(mtext, "sluice_server_ejections_total",
                   server=good2.addr) == 0,
      "/metrics: the ejected server is not available, and has 1 ejection; "
      "the other is available, with none")
# A server ejected for 1 s: the end of its ejection is an event too.
codes = [get("/b/x")[0] for _ in range(3)]
check(codes == [500, 500, 503],
      "2 failures eject the only server of 'brief' (eject_max = 100%%), "
      "then 503 (%r)" % codes)
check(wait_until(lambda: events("outlier: brief/v1 %s is back in rotation"
                                % bad3.addr), 5),
      "its end is an event too (%r)" % events("outlier:"))
check(metric_value(metrics(), "sluice_server_available", service="brief",
                   server=bad3.addr) == 1,
      "and /metrics has it available again")

# --- Active health checks: kill 'a', traffic continues on 'b'.
check(wait_until(lambda: server("health", a.addr)["health"] == "up"),
      "health: a starts up")
errors = 0
a.stop()
for i in range(60):
    st, r, body = get("/h/x")
    if st != 200:
        errors += 1
    time.sleep(0.02)
check(errors == 0, "origin killed: 60 requests, %d errors (retries on the "
      "other server of the same version)" % errors)
wait_until(lambda: server("health", a.addr)["health"] == "down")
s = server("health", a.addr)
check(s["health"] == "down" and s.get("health_last_failure"),
      "health: a is down (%s)" % s.get("health_last_failure"))
srv = {x["address"]: x for x in
       sl.ctl("show stats health 5")["versions"]["v1"]["servers"]}
check(srv[a.addr]["health"] == "down" and srv[b.addr]["health"] == "up",
      "/stats (show stats) shows each server's health too")
b.reset()
for i in range(20):
    get("/h/y")
check(b.stats()["requests"] == 20, "all traffic goes to b while a is down")
a.start()
check(wait_until(lambda: server("health", a.addr)["health"] == "up"),
      "a is re-admitted after health_rise good checks")
a.reset()
for i in range(40):
    get("/h/z")
check(a.stats()["requests"] > 0, "and receives traffic again (%d of 40)"
      % a.stats()["requests"])
evs = sl.ctl("show events 200")["events"]
check(any(e["command"].startswith("health: health/v1 %s down" % a.addr)
          for e in evs) and
      any(e["command"].startswith("health: health/v1 %s up" % a.addr)
          for e in evs), "down and up are recorded as events")

# --- fallback = stable: the canary's only server in maintenance.
check(sl.ctl("set server fb green %s maint" % canary.addr)["ok"],
      "canary server in maintenance")
st, r, body = get("/f/x", {"X-User-Id": "u1"})
check(st == 200 and r.getheader("X-Sluice-Version") == "blue",
      "fallback = stable: the canary user is served by stable")
stats = sl.ctl("show stats fb")["versions"]
check(stats["green"]["upstream_errors"]["no_server"] >= 1 and
      stats["green"]["errors"] >= 1,
      "and the canary counts it as a failure (for the analyzer)")

# --- Reload under load: zero failed requests, runtime weights kept.
check(sl.ctl("set weights fb blue=30 green=70")["ok"], "runtime weights 30/70")
stop = threading.Event()
failures = []
done_requests = [0]


def load():
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    while not stop.is_set():
        try:
            c.request("GET", "/h/load")
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append(r.status)
            done_requests[0] += 1
        except (OSError, http.client.HTTPException) as e:
            failures.append(str(e))
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)


threads = [threading.Thread(target=load) for _ in range(4)]
for t in threads:
    t.start()
reloads = sl.logtext().count("reloaded ")
for i in range(5):
    time.sleep(0.3)
    os.kill(sl.proc.pid, signal.SIGHUP)
    # One at a time: signals sent while a reload is pending would merge.
    wait_until(lambda: sl.logtext().count("reloaded ") > reloads + i)
reloads = sl.logtext().count("reloaded ") - reloads
# Load goes on after the last reload (at least 50 more requests, 10 s cap).
after = done_requests[0] + 50
wait_until(lambda: done_requests[0] >= after and done_requests[0] > 100)
stop.set()
for t in threads:
    t.join()
check(reloads == 5 and failures == [] and done_requests[0] > 100,
      "%d of 5 reloads under load: %d requests, %d failed (%r)"
      % (reloads, done_requests[0], len(failures), failures[:3]))
w = {v["name"]: v["weight"] for v in
     sl.ctl("show service fb")["service"]["versions"]}
check(w == {"blue": 30.0, "green": 70.0}, "runtime weights survive reloads")
time.sleep(1.5)  # the configs of before the reloads are freed by now
check(sl.ctl("set weights fb blue=40 green=60")["ok"], "set weights after reloads")
with open(sl.state_path) as f:
    saved = f.read()
check("weight = green 60.00" in saved,
      "after reloads the change is still saved to the configured state file")

# --- A bad reload keeps the old config.
good_text = open(sl.path).read()
sl.write(good_text + "\n[service:broken]\nstable = nope\n")
os.kill(sl.proc.pid, signal.SIGHUP)
wait_until(lambda: "reload refused" in sl.logtext())
st, r, body = get("/h/after-bad-reload")
check(st == 200, "after a bad reload the old config keeps serving")
refused = [l for l in sl.logtext().splitlines()
           if "error: reload refused" in l]
check(refused and all(sl.path + ":" in l for l in refused) and
      any("[service:broken]" in l for l in refused),
      "the bad reload is logged with the reason, one complete line per "
      "error (%r)" % refused[-1:])
sl.write(good_text)

# --- SIGTERM with slow requests in flight: they complete, exit 0.
results = []


def slow(i):
    results.append(get("/h/slow?delay=1500")[0])


def in_flight():
    return sl.ctl("show stats health")["versions"]["v1"]["active"]


threads = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
# SIGTERM once sluice has all 3 in flight (they take 1.5 s at the origin).
wait_until(lambda: in_flight() >= 3)
sl.proc.send_signal(signal.SIGTERM)
for t in threads:
    t.join()
code = sl.proc.wait(20)
check(results == [200, 200, 200], "SIGTERM: 3 slow in-flight requests "
      "complete (%r)" % results)
check(code == 0, "then sluice exits 0")

# --- Zero-downtime upgrade: a second sluice with --takeover on the same
# port, then SIGTERM the first: no failed requests.
sl.start()
stop.clear()
failures.clear()
done_requests[0] = 0
threads = [threading.Thread(target=load) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(0.5)
log2 = open(sl.logpath + ".2", "ab")
new = subprocess.Popen([SLUICE, "--takeover", "-c", sl.path], stdout=log2,
                       stderr=log2)
harness._procs.append(new)  # killed at exit if a check fails before


def new_started():
    # Logged once its listeners are bound and its workers run.
    with open(sl.logpath + ".2", "rb") as f:
        return re.search(rb"sluice \S+: \d+ workers", f.read()) is not None


wait_until(lambda: new_started() or new.poll() is not None)
check(new.poll() is None and new_started(),
      "the new sluice starts beside the old one")
old = sl.proc
old.send_signal(signal.SIGTERM)
check(old.wait(20) == 0, "the old sluice drains and exits 0")
# Load goes on against the new sluice alone (50 more requests, 10 s cap).
after = done_requests[0] + 50
wait_until(lambda: done_requests[0] >= after)
stop.set()
for t in threads:
    t.join()
check(failures == [] and done_requests[0] > 100,
      "upgrade under load: %d requests, %d failed (%r)"
      % (done_requests[0], len(failures), failures[:3]))
sl.proc = new
r = sl.ctl("show services")
check(r["ok"], "the control socket now belongs to the new sluice")
c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
c.request("GET", "/healthz")
check(c.getresponse().status == 200,
      "and so does the admin endpoint (it was bound beside the old one)")
c.close()

# --- Connection limit: accepting pauses, nothing fails.
sl.stop()
text2 = text.replace("[sluice]\n", "[sluice]\nmax_connections = 3\n", 1)
sl.write(text2)
sl.start()
held = []
for i in range(3):
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=5)
    c.request("GET", "/h/hold")
    c.getresponse().read()
    held.append(c)
result = []


def fourth():
    result.append(get("/h/fourth")[0])


t = threading.Thread(target=fourth)
t.start()
time.sleep(1.0)
check(result == [], "a 4th client waits while 3 connections are open")
held[0].close()
t.join(10)
check(result == [200], "and is served once one closes (%r)" % result)
check("max_connections (3) reached" in sl.logtext(),
      "reaching the limit is logged")
# Clients that keep reaching it (here 100 connections, one after the
# other, each the third) are not a line each: at most one in 10 s.
for i in range(100):
    get("/h/churn")
said = sl.logtext().count("max_connections (3) reached")
check(1 <= said <= 3, "reaching the limit 100 times more: %d log lines" % said)
for c in held[1:]:
    c.close()

# The limit is the process's, whatever worker the kernel hands a
# connection to: with two workers it was split into a limit per worker,
# so a full worker kept clients waiting while the process had room (or
# one connection each went over a limit of 1). A reload changes it.
sl.stop()
sl.write(text2.replace("workers = 1", "workers = 2"))
sl.start()


def open_waiting(n):
    """N keep-alive connections, each sending a GET; returns them and how
    many were answered within 1 s."""
    conns, answered = [], 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", sl.port), 5)
        s.sendall(b"GET /h/c%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        s.settimeout(1.0)
        try:
            answered += s.recv(100).startswith(b"HTTP/1.1 200")
        except socket.timeout:
            pass
        conns.append(s)
    return conns, answered


conns, answered = open_waiting(5)
check(answered == 3, "2 workers, max_connections = 3: 3 of 5 connections "
      "served, 2 wait (%d served)" % answered)
sl.write(text2.replace("workers = 1", "workers = 2").replace(
    "max_connections = 3", "max_connections = 5"))
os.kill(sl.proc.pid, signal.SIGHUP)
late = 0
for s in conns[3:]:
    s.settimeout(5)
    try:
        late += s.recv(100).startswith(b"HTTP/1.1 200")
    except socket.timeout:
        pass
check(late == 2, "a reload to max_connections = 5 serves the 2 waiting "
      "(%d served)" % late)
more, answered = open_waiting(1)
check(answered == 0, "and a 6th waits")
for s in conns + more:
    s.close()
check(sl.stop() == 0, "sluice exits 0")
done()
