#!/usr/bin/env python3
"""access_log = PATH: one JSON line per request, written by the workers in
batches. Each line says what the client asked, what it got, which service,
version, rule and server served it, and how it ended: answered, cut (the
origin failed mid-body) or unanswered (the client went first). Requests
sluice refuses are in it too. The lines reach the file within a couple of
seconds, the last ones when sluice stops, and SIGUSR1 moves them to a new
file after logrotate renamed the old one. A path sluice cannot open stops
it at start, saying so."""

import json
import os
import signal
import socket
import struct
import subprocess
import time

from harness import (SLUICE, TMP, Origin, Sluice, admin_metrics, check,
                     config, done, free_port, metric_value, wait_until)

KEYS = ["time", "client", "method", "host", "target", "status", "service",
        "version", "rule", "server", "attempts", "duration_ms", "outcome",
        "error"]
origin = Origin("alog")
port, admin = free_port(), free_port()
log = os.path.join(TMP, "alog", "deeper", "access.log")  # dirs made
text = config(port, {
    "app": {"path_prefix": "/app", "stable": "blue",
            "sticky": "header:X-User-Id", "override_networks": "127.0.0.0/8",
            "versions": {"blue": ([origin.addr], 100),
                         "green": ([origin.addr], 0)}},
    "dead": {"path_prefix": "/dead", "stable": "v1",
             "versions": {"v1": (["127.0.0.1:%d" % free_port()], 100)}}},
    sluice_extra="admin = 127.0.0.1:%d\naccess_log = %s\n" % (admin, log),
    workers=2)
sl = Sluice(text=text, port=port)


def request(raw, linger_reset=False, wait=True):
    """Send RAW on a new connection; the status line's code (0: none)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(raw)
    if linger_reset:
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
        return 0
    got = b""
    try:
        while wait:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except OSError:
        pass
    s.close()
    return int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else 0


def get(target, *headers):
    return request(("GET %s HTTP/1.1\r\nHost: shop.example\r\n%s"
                    "Connection: close\r\n\r\n"
                    % (target, "".join(h + "\r\n" for h in headers))).encode())


def lines():
    try:
        with open(log) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


sent = [
    (get("/app/a?q=1", "X-User-Id: u1"), "/app/a?q=1"),
    (get("/app/b", "X-Sluice-Version: green"), "/app/b"),
    (get("/nothing"), "/nothing"),
    (get("/dead/x"), "/dead/x"),
    (get('/app/"quoted"%00'), '/app/"quoted"%00'),
    (get("/app/cut?partial=1&size=100000"), "/app/cut?partial=1&size=100000"),
    (request(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n"),
     None),
    (request(b"GET /app/slow?delay=3000 HTTP/1.1\r\nHost: a\r\n\r\n",
             linger_reset=True), "/app/slow?delay=3000"),
]
check([s for s, _ in sent] == [200, 200, 404, 502, 200, 200, 400, 0],
      "the clients got 200, 200, 404, 502, 200, 200 (cut), 400, nothing (%r)"
      % [s for s, _ in sent])
check(wait_until(lambda: len(lines()) >= len(sent), 15),
      "every request's line is in the file within seconds, sluice still "
      "running (%d of %d)" % (len(lines()), len(sent)))
got = {line["target"]: line for line in lines()}
check(all(list(line) == KEYS for line in lines()),
      "every line has the same keys, in order (%r)" % lines()[:1])
a = got.get("/app/a?q=1", {})
check(a.get("status") == 200 and a.get("service") == "app" and
      a.get("version") == "blue" and a.get("rule") == "split" and
      a.get("server") == origin.addr and a.get("method") == "GET" and
      a.get("host") == "shop.example" and a.get("outcome") == "answered" and
      a.get("attempts") == 1 and a.get("client") == "127.0.0.1" and
      a.get("error") is None and a.get("duration_ms") >= 0,
      "a plain request: its version, rule, server and outcome (%r)" % a)
check(time.time() - 60 < time.mktime(time.strptime(
      a.get("time", "2000-01-01T00:00:00.000Z")[:19],
      "%Y-%m-%dT%H:%M:%S")) - time.timezone < time.time() + 1,
      "its time is when it came, in UTC (%r)" % a.get("time"))
b = got.get("/app/b", {})
check(b.get("version") == "green" and b.get("rule") == "override",
      "an override names its rule (%r)" % b)
n = got.get("/nothing", {})
check(n.get("status") == 404 and n.get("service") is None and
      n.get("version") is None, "no service: 404, no version (%r)" % n)
d = got.get("/dead/x", {})
check(d.get("status") == 502 and d.get("error") == "connect_refused" and
      d.get("outcome") == "answered",
      "a refused connect: 502, the error named (%r)" % d)
check('/app/"quoted"%00' in got,
      "a target with quotes comes back as it was sent (valid JSON)")
c = got.get("/app/cut?partial=1&size=100000", {})
check(c.get("status") == 200 and c.get("outcome") == "cut",
      "an origin that stops mid-body: 200, cut (%r)" % c)
r = got.get(None, {})
check(r.get("status") == 400 and r.get("method") is None,
      "a request refused unread: 400, no method (%r)" % r)
u = got.get("/app/slow?delay=3000", {})
check(u.get("status") is None and u.get("outcome") == "unanswered" and
      u.get("version") == "blue",
      "a client gone before the answer: unanswered, no status (%r)" % u)

# logrotate: rename, SIGUSR1, the next lines go to a new file.
os.rename(log, log + ".1")
sl.proc.send_signal(signal.SIGUSR1)
check(wait_until(lambda: "access log %s reopened" % log in
                 open(sl.logpath).read(), 10), "SIGUSR1 reopens it")
check(get("/app/after-rotate") == 200, "a request after the rotation")
check(wait_until(lambda: [l["target"] for l in lines()] ==
                 ["/app/after-rotate"], 10),
      "its line is in the new file (%r)" % lines())
with open(log + ".1") as f:
    check(len(f.readlines()) == len(sent), "the old file kept its lines")

# The last lines are written when sluice stops, however soon that is.
for i in range(20):
    get("/app/last-%d" % i)
check(sl.stop() == 0, "sluice stops cleanly")
# (Each worker writes its own batches: lines are in order per worker.)
check(sorted(l["target"] for l in lines()[1:]) ==
      sorted("/app/last-%d" % i for i in range(20)),
      "the lines of the requests just before the stop are there (%d)"
      % len(lines()))

# Nothing was lost meanwhile, and the counter says so.
sl.start()
check(metric_value(admin_metrics(admin), "sluice_access_log_dropped_total")
      == 0, "sluice_access_log_dropped_total is 0")
sl.stop()

# A disk that takes nothing (/dev/full): requests are served, the lines
# lost are counted.
fport, fadmin = free_port(), free_port()
full = Sluice(text=config(fport, {
    "app": {"path_prefix": "/", "stable": "v1",
            "versions": {"v1": ([origin.addr], 100)}}},
    sluice_extra="admin = 127.0.0.1:%d\naccess_log = /dev/full\n" % fadmin,
    workers=1), port=fport)
codes = []
for i in range(5):
    c = socket.create_connection(("127.0.0.1", full.port), timeout=10)
    c.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    codes.append(c.recv(12))
    c.close()
check(codes == [b"HTTP/1.1 200"] * 5, "with the disk full, requests are "
      "served (%r)" % codes)
check(wait_until(lambda: metric_value(admin_metrics(fadmin),
                                      "sluice_access_log_dropped_total")
                 == 5, 10),
      "the 5 lines lost are counted in sluice_access_log_dropped_total")
check(full.stop() == 0, "that sluice stops cleanly too")

# A path sluice cannot open: it does not start.
bad = config(free_port(), {"app": {"path_prefix": "/", "stable": "v1",
                                   "versions": {"v1": ([origin.addr], 100)}}},
             sluice_extra="access_log = %s\n" % TMP)
path = os.path.join(TMP, "bad-alog.ini")
with open(path, "w") as f:
    f.write(bad)
p = subprocess.run([SLUICE, "-c", path], capture_output=True, text=True,
                   timeout=30)
check(p.returncode == 1 and ("access_log %s: Is a directory" % TMP)
      in p.stderr, "a directory as access_log: exit 1, saying so (%r)"
      % p.stderr[-200:])
done()
