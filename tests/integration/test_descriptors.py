#!/usr/bin/env python3
"""Out of file descriptors: sluice warns at start when max_connections
cannot fit, a failed accept pauses accepting instead of spinning (it took
a core, and logged two lines per try, 30 MB/s), is counted and logged
once in a while, an origin connection it cannot open is its own 503 (not
the origin's connect_refused), and it serves again once descriptors are
free."""

import http.client
import os
import resource
import socket
import subprocess
import time

import harness
from harness import SLUICE, Origin, check, config, done, free_port, \
    metric_value, wait_until, wait_port

LIMIT = 48
origin = Origin("o")
port, admin = free_port(), free_port()
path = os.path.join(harness.TMP, "fd-%d.ini" % port)
with open(path, "w") as f:
    f.write(config(port, {"s": {"stable": "v1",
                                "versions": {"v1": ([origin.addr], 100)}}},
                   workers=1, sluice_extra="admin = 127.0.0.1:%d\n"
                   "header_timeout = 60s\n" % admin))
logpath = path + ".log"
log = open(logpath, "ab")


def low_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


proc = subprocess.Popen([SLUICE, "-c", path], stdout=log, stderr=log,
                        preexec_fn=low_limit)
harness._procs.append(proc)
wait_port(port, proc, log=logpath)


def logtext():
    with open(logpath, "rb") as f:
        return f.read().decode(errors="replace")


def metrics():
    return harness.admin_metrics(admin)


def cpu_ticks():
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


check("max_connections = 10000 needs at least 10256 file descriptors" in
      logtext() and "the limit is %d" % LIMIT in logtext(),
      "a warning at start: max_connections does not fit in the limit")

# One client connection that has sent nothing yet, then idle ones until
# sluice has no descriptor left (the rest wait in the backlog).
first = socket.create_connection(("127.0.0.1", port), 10)
idle = [socket.create_connection(("127.0.0.1", port), 10)
        for _ in range(LIMIT)]
check(wait_until(lambda: "worker 0: accept failed" in logtext(), 10),
      "accepts fail once the descriptors are gone")
# The admin endpoint cannot accept either (its listener is the control
# thread's): it must not spin.
waiting = socket.create_connection(("127.0.0.1", admin), 10)
check(wait_until(lambda: "admin: accept failed" in logtext(), 10),
      "the admin endpoint's accept fails too")
ctl_waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ctl_waiting.connect(os.path.join(harness.TMP, "ctl-%d.sock" % port))
check(wait_until(lambda: "control socket: accept failed" in logtext(), 10),
      "and the control socket's")
t0 = cpu_ticks()
time.sleep(2)
spent = cpu_ticks() - t0
check(spent < 50, "meanwhile sluice does not spin: %d CPU ticks in 2 s "
      "(a spin takes 200)" % spent)
check(logtext().count("accept failed") <= 6,
      "and logs it at most once in 10 s per listener (%d lines)"
      % logtext().count("accept failed"))

# The first connection's request needs an origin connection: there is no
# descriptor for it.
first.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
first.settimeout(10)
answer = first.recv(65536)
check(answer.startswith(b"HTTP/1.1 503"),
      "a request that cannot get an origin connection: 503 (%r)"
      % answer[:40])
first.close()
waiting.close()
ctl_waiting.close()
for s in idle:
    s.close()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def serves():
    try:
        c.request("GET", "/y")
        r = c.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        c.close()
        return False


check(wait_until(serves, 10), "once descriptors are free it serves again")
c.close()
text = metrics()
check(metric_value(text, "sluice_accept_failures_total") > 0 and
      metric_value(text, "sluice_upstream_local_failures_total") == 1 and
      metric_value(text, "sluice_upstream_errors_total",
                   kind="connect_refused") == 0,
      "the failed accepts are counted, and the 503 as sluice's shortage, "
      "not as the origin refusing")
proc.terminate()
check(proc.wait(15) == 0, "sluice exits 0")
done()
