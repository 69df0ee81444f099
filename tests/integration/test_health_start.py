#!/usr/bin/env python3
"""Health at start: a server nothing is known of is checked at once, and
its first check decides, so a sluice started while an origin is dead
stops sending it requests within one check, not health_fall intervals
later. A sluice that takes over (--takeover) starts from what the old
one knew of each server instead of checking afresh."""

import json
import signal
import socket
import subprocess

import harness
from harness import SLUICE, Origin, Sluice, check, done, free_port, \
    wait_until

dead_port = free_port()
dead = "127.0.0.1:%d" % dead_port
dead2 = "127.0.0.1:%d" % free_port()
live = Origin("live")
# A long interval: only the check at start can find the dead one within
# the test, and health_fall = 3 would take 90 s after it.
sl = Sluice({"svc": {
    "path_prefix": "/", "stable": "v1", "health_path": "/hc",
    "health_interval": "30s", "health_timeout": "2s", "health_rise": "2",
    "health_fall": "3", "eject_after": "0",
    "versions": {"v1": ([dead, live.addr], 100)}},
    # Enough servers that the handshake's reply, which lists each one's
    # health, is larger than any fixed buffer would guess.
    "many": {"path_prefix": "/many", "stable": "v1", "health_path": "/hc",
             "health_interval": "30s",
             "versions": {"v1": (["127.0.0.1:%d" % free_port()
                                  for _ in range(40)], 100)}},
    # A dead server two versions list: checked at once all the same.
    "dual": {"path_prefix": "/dual", "stable": "a", "health_path": "/hc",
             "health_interval": "30s",
             "versions": {"a": ([dead2], 100), "b": ([dead2], 0)}},
    # The live server again, in a service whose checks want another
    # status: each service checks it its own way.
    "picky": {"path_prefix": "/picky", "stable": "v1", "health_path": "/hc",
              "health_interval": "30s", "health_status": "204",
              "versions": {"v1": ([live.addr], 100)}}},
    workers=1, sluice_extra="retries = 0\n")


def server(addr):
    r = sl.ctl("show service svc")["service"]
    for s in r["versions"][0]["servers"]:
        if s["address"] == addr:
            return s
    return None


def events():
    return [e["command"] for e in sl.ctl("show events 100")["events"]]


check(wait_until(lambda: server(dead)["health"] == "down", 5),
      "a server dead at start is down within a check, not after "
      "health_fall intervals (%r)" % server(dead))
check("health: svc/v1 %s down at its first check: Connection refused"
      % dead in events(),
      "the event says its first check took it down (%r)" % events()[-3:])
check(server(live.addr)["health"] == "up", "the live one is up")


def dual_health():
    return [v["servers"][0]["health"] for v in
            sl.ctl("show service dual")["service"]["versions"]]


check(wait_until(lambda: dual_health() == ["down", "down"], 5),
      "a dead server two versions list is down within a check too (%r)"
      % dual_health())


def picky_server():
    return sl.ctl("show service picky")["service"]["versions"][0][
        "servers"][0]


wait_until(lambda: picky_server()["health"] == "down", 5)
picky = picky_server()
check(picky["health"] == "down" and
      picky.get("health_last_failure") == "status 200",
      "the same server is down for a service whose checks want 204 (%r), "
      "and still up for the first" % picky)
check(sl.get("/picky/x")[0] == 503 and sl.get("/x")[0] == 200,
      "so that service answers 503, the other 200")


def many_down():
    r = sl.ctl("show service many")["service"]
    return sum(s["health"] == "down" for s in r["versions"][0]["servers"])


check(wait_until(lambda: many_down() == 40, 10),
      "so are 40 dead servers of another service (%d down)" % many_down())
statuses = [sl.get("/x%d" % i)[0] for i in range(40)]
check(statuses == [200] * 40,
      "with retries = 0, every request is 200: none goes to the dead "
      "server (%r)" % sorted(set(statuses)))

# The dead server comes back; the old sluice still has it down (it needs
# health_rise good checks, 30 s apart). A new sluice that takes over
# keeps it down, with the old one's reason, rather than checking anew
# (which would find it up: the seed is what the test sees).
revived = Origin("revived", port=dead_port)
old = sl.proc
new_log = sl.logpath + ".new"
log2 = open(new_log, "ab")
new = subprocess.Popen([SLUICE, "--takeover", "-c", sl.path], stdout=log2,
                       stderr=log2)
harness._procs.append(new)


def answers():
    try:
        return sl.ctl("show services").get("pid") == new.pid
    except (OSError, ValueError):
        return False


check(wait_until(lambda: new.poll() is not None or answers(), 20) and
      new.poll() is None, "the new sluice takes over (exit %r)" % new.poll())
s = server(dead)
check(s["health"] == "down" and
      s.get("health_last_failure") == "Connection refused",
      "it starts with the server the old one found down still down, with "
      "its reason (%r)" % s)
check(server(live.addr)["health"] == "up" and many_down() == 40,
      "and the live one up, and the other service's 40 down (%d)"
      % many_down())
check(not any("first check" in e for e in events()),
      "it did not check them afresh (%r)" % events()[-3:])
statuses = [sl.get("/y%d" % i)[0] for i in range(40)]
check(statuses == [200] * 40,
      "every request is 200 on the new sluice (%r)" % sorted(set(statuses)))
old.send_signal(signal.SIGTERM)
check(old.wait(20) == 0, "the old sluice exits 0")
sl.proc = new
sl.logpath = new_log

# The handshake as a sluice from before "takeover health" sees it: the
# reply to "begin" stays small (such a sluice reads it into 1 KiB), and
# the health comes on its own line.
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.settimeout(10)
c.connect(sl.ctl_path)
c.sendall(b"takeover begin\n")
raw = b""
while not raw.endswith(b"\n"):
    raw += c.recv(65536)
check(len(raw) < 1024 and json.loads(raw) == {"ok": True, "pid": new.pid},
      "'takeover begin' answers only ok and pid (%d bytes)" % len(raw))
h = harness.ctl_exchange(c, "takeover health")
check(h["ok"] and {"service": "svc", "version": "v1", "server": dead,
                   "health": "down", "why": "Connection refused"}
      in h["health"] and len(h["health"]) >= 42,
      "'takeover health' lists what it knows (%d servers)"
      % len(h.get("health", [])))
c.close()
check(wait_until(lambda: sl.ctl("set server svc v1 %s ready" % dead)["ok"]),
      "the handshake's connection gone, the sluice decides again")
check(sl.stop() == 0, "the new one exits 0")
done()
