#!/usr/bin/env python3
"""Soak and fault run for sluice (bench/soak.sh runs it).

For DURATION seconds (default 600) under steady load it:
  - kills one origin server of a version and restarts it, in turns;
  - reloads the config (SIGHUP) every few seconds;
  - changes weights every second through the control socket and checks
    that each acknowledged change is in effect;
  - connects control clients that send a command, send half a command,
    or just disconnect.
It fails (exit 1) if the process dies, if any 5xx is seen that is not
attributable to a dead origin (counted separately), if file descriptors or
RSS grow (compared between the first and last quarter of the run), or if an
acknowledged weight change is not in effect.
"""

import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("SL_TOP_BUILDDIR", os.path.join(HERE, ".."))

import harness  # noqa: E402
from harness import Origin, Sluice, config, free_port  # noqa: E402

duration = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
rng = random.Random(42)

servers = {
    "blue": [Origin("blue1"), Origin("blue2")],
    "green": [Origin("green1"), Origin("green2")],
}
port = free_port()
text = config(port, {"soak": {
    "path_prefix": "/", "stable": "blue", "sticky": "header:X-User-Id",
    "expose_version": "yes", "eject_after": "3", "eject_time": "2s",
    "versions": {"blue": ([o.addr for o in servers["blue"]], 90),
                 "green": ([o.addr for o in servers["green"]], 10)}}},
    workers=2, sluice_extra="retry_budget = 50%\n")
sl = Sluice(text=text, port=port)
pid = sl.proc.pid

stop = threading.Event()
lock = threading.Lock()
stats = {"requests": 0, "ok": 0, "5xx": 0, "5xx_dead_origin": 0,
         "conn_errors": 0, "weight_changes": 0, "weight_mismatch": 0,
         "reloads": 0, "kills": 0, "ctl_clients": 0}
dead_window = {"until": 0.0}  # 5xx until then are attributable
samples = []


def bump(k, n=1):
    with lock:
        stats[k] += n


def load(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    while not stop.is_set():
        i += 1
        try:
            c.request("GET", "/soak/%d" % i, headers={"X-User-Id": "u%d-%d" % (n, i % 500)})
            r = c.getresponse()
            r.read()
            bump("requests")
            if r.status >= 500:
                if time.time() < dead_window["until"]:
                    bump("5xx_dead_origin")
                else:
                    bump("5xx")
                    print("unexplained %d: %s" % (r.status, r.getheader("X-Sluice-Version")),
                          flush=True)
            else:
                bump("ok")
        except (OSError, http.client.HTTPException):
            bump("conn_errors")
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(0.002)


def killer():
    while not stop.wait(7):
        o = rng.choice(servers["blue"] + servers["green"])
        dead_window["until"] = time.time() + 10
        o.stop()
        bump("kills")
        if stop.wait(3):
            o.start()
            break
        o.start()


def reloader():
    while not stop.wait(4):
        os.kill(pid, signal.SIGHUP)
        bump("reloads")


last_acked = [None]


def weights():
    while not stop.wait(1):
        g = rng.randint(0, 50)
        r = sl.ctl("set weights soak blue=%d green=%d" % (100 - g, g))
        if not r.get("ok"):
            continue
        last_acked[0] = g
        bump("weight_changes")
        svc = sl.ctl("show service soak")["service"]
        w = {v["name"]: v["weight"] for v in svc["versions"]}
        if w != {"blue": 100.0 - g, "green": float(g)}:
            bump("weight_mismatch")
            print("weight mismatch: acked %d, in effect %r" % (g, w), flush=True)


def ctl_churn():
    while not stop.wait(0.2):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sl.ctl_path)
            kind = rng.randint(0, 2)
            if kind == 0:
                s.sendall(b"show stats soak 5\n")
                s.recv(65536)
            elif kind == 1:
                s.sendall(b"show serv")
            bump("ctl_clients")
        except OSError:
            pass
        finally:
            s.close()


def fds():
    return len(os.listdir("/proc/%d/fd" % pid))


def sampler():
    while not stop.wait(5):
        if sl.proc.poll() is not None:
            return
        samples.append((time.time(), sl.rss_kib(), fds()))


threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
threads += [threading.Thread(target=f) for f in
            (killer, reloader, weights, ctl_churn, sampler)]
t0 = time.time()
for t in threads:
    t.start()
while time.time() - t0 < duration and sl.proc.poll() is None:
    time.sleep(1)
stop.set()
for t in threads:
    t.join(30)

alive = sl.proc.poll() is None
q = max(1, len(samples) // 4)
first = samples[:q] or [(0, 0, 0)]
last = samples[-q:] or [(0, 0, 0)]
rss0 = sum(s[1] for s in first) / len(first)
rss1 = sum(s[1] for s in last) / len(last)
fd0 = sum(s[2] for s in first) / len(first)
fd1 = sum(s[2] for s in last) / len(last)
code = sl.stop() if alive else sl.proc.returncode

report = {
    "duration_s": round(time.time() - t0), "alive": alive, "exit_code": code,
    **stats,
    "rss_kib_first_quarter": round(rss0), "rss_kib_last_quarter": round(rss1),
    "fds_first_quarter": round(fd0, 1), "fds_last_quarter": round(fd1, 1),
}
problems = []
if not alive or code != 0:
    problems.append("sluice died or exited %r" % code)
if stats["5xx"] > 0:
    problems.append("%d unexplained 5xx" % stats["5xx"])
if stats["weight_mismatch"] > 0:
    problems.append("%d acknowledged weight changes not in effect" % stats["weight_mismatch"])
try:
    with open(sl.state_path) as f:
        saved = f.read()
except OSError as e:
    saved = str(e)
if last_acked[0] is not None and \
        ("weight = green %d.00" % last_acked[0]) not in saved:
    problems.append("the state file does not hold the last acknowledged "
                    "weights (green=%d): %r" % (last_acked[0], saved[-200:]))
if rss1 > rss0 * 1.25 + 4096:
    problems.append("RSS grew from %d to %d KiB" % (rss0, rss1))
if fd1 > fd0 + 20:
    problems.append("fds grew from %.0f to %.0f" % (fd0, fd1))
report["problems"] = problems
print(json.dumps(report, indent=2))
sys.exit(1 if problems else 0)
