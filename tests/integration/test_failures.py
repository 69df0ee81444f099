#!/usr/bin/env python3
"""Timeouts and failing origins: every wait has a timeout with the right
status, and a failing origin costs a request, never the process."""

import os
import signal
import socket
import time

from harness import (ASAN, Origin, Sluice, check, done, status_of,
                     wait_until)

good = Origin("good")
# Connects to a port that is bound but not listening are refused; the
# socket stays open for the whole test so nothing else can take the port.
down = socket.socket()
down.bind(("127.0.0.1", 0))
down_port = down.getsockname()[1]

# A listener whose accept queue is full: connects to it hang.
blackhole = socket.socket()
blackhole.bind(("127.0.0.1", 0))
blackhole.listen(0)
hole_port = blackhole.getsockname()[1]
fillers = []
for _ in range(4):
    f = socket.socket()
    f.setblocking(False)
    try:
        f.connect(("127.0.0.1", hole_port))
    except BlockingIOError:
        pass
    fillers.append(f)

sl = Sluice({
    "good": {"path_prefix": "/good", "stable": "v1",
             "versions": {"v1": ([good.addr], 100)}},
    "down": {"path_prefix": "/down", "stable": "v1",
             "versions": {"v1": (["127.0.0.1:%d" % down_port], 100)}},
    "hole": {"path_prefix": "/hole", "stable": "v1",
             "versions": {"v1": (["127.0.0.1:%d" % hole_port], 100)}},
}, sluice_extra="header_timeout = 1s\nkeepalive_timeout = 1s\n"
                "connect_timeout = 1s\nresponse_timeout = 1s\n"
                "body_timeout = 1s\n")


def in_flight():
    """Requests to the 'good' service sluice has not finished."""
    return sl.ctl("show stats good")["versions"]["v1"]["active"]


t0 = time.time()
status, r, body = sl.get("/down/x")
check(status == 502, "origin down: 502 (%d)" % status)
check(time.time() - t0 < 3, "origin down: answered without waiting for a timeout")
check(b"refused" in body, "502 body says the origin refused the connection")

status, r, body = sl.get("/hole/x")
check(status == 504, "connect to a server that never accepts: 504 (%d)" % status)
check(b"connect timed out" in body, "504 body says the connect timed out")

t0 = time.time()
status, r, body = sl.get("/good/slow?delay=3000")
took = time.time() - t0
check(status == 504, "slow origin (3 s) past response_timeout (1 s): 504")
check(b"response timed out" in body, "504 body says the response timed out")
check(0.9 <= took < 2.5, "the 504 comes after response_timeout, not before "
      "(%.2f s)" % took)
status, r, body = sl.get("/good/slow?delay=250")
check(status == 200, "an origin answering in 0.25 s is within the 1 s "
      "response_timeout (%d)" % status)

status, r, body = sl.get("/good/x?reset=1")
check(status == 502, "origin resets before responding: 502")

# A truncated response body: the client sees the connection cut, never a
# complete-looking response.
raw = sl.raw(b"GET /good/x?partial=1 HTTP/1.1\r\nHost: a\r\n\r\n")
head, _, rest = raw.partition(b"\r\n\r\n")
check(status_of(raw) == 200 and len(rest) < 1000,
      "origin dies mid-body: client gets a cut connection (%d of 1000 bytes)"
      % len(rest))
status, r, body = sl.get("/good/after")
check(status == 200, "the next request after a cut response is fine")

# Request head timeout: a partial head, then silence.
t0 = time.time()
raw = sl.raw(b"GET /good/x HTTP/1.1\r\nHost: a\r\n", shutdown=False, timeout=5)
check(status_of(raw) == 408, "partial head then silence: 408 (%r)" % raw[:40])
took = time.time() - t0
check(0.9 <= took < 4, "408 arrives after about header_timeout (%.2f s)" % took)

# Slowloris: one byte every 0.3 s never completes within header_timeout.
s = socket.create_connection(("127.0.0.1", sl.port), 5)
got = b""
t0 = time.time()
try:
    for ch in b"GET /good/x HTTP/1.1\r\nHost: slow\r\nX-A: " + b"a" * 40:
        s.send(bytes([ch]))
        time.sleep(0.3)
        if time.time() - t0 > 6:
            break
    s.settimeout(3)
    got = s.recv(4096)
except (BrokenPipeError, ConnectionResetError):
    pass
except socket.timeout:
    pass
s.close()
check(status_of(got) == 408 or got == b"",
      "a slowloris client is cut off by the header timeout")
check(time.time() - t0 < 6, "cut off within a few seconds, not after the drip")

# Request body timeout: Content-Length 100, 10 bytes, silence.
raw = sl.raw(b"POST /good/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
             b"0123456789", shutdown=False, timeout=5)
check(status_of(raw) == 408, "request body stalls: 408 (%r)" % raw[:30])

# The body timeout is per read, not per body: 5 bytes every 0.2 s for
# 4 s (4 x body_timeout's 1 s in total) get through.
s = socket.create_connection(("127.0.0.1", sl.port), 5)
s.sendall(b"POST /good/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
for i in range(20):
    time.sleep(0.2)
    s.sendall(b"%05d" % i)
s.settimeout(5)
got = b""
try:
    while b"\r\n\r\n" not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
except socket.timeout:
    pass
s.close()
check(status_of(got) == 200,
      "a body that keeps coming (a piece every 0.2 s, body_timeout 1 s) is "
      "forwarded whole (%r)" % got[:30])

# The keep-alive timeout restarts with each request: requests every 0.25 s
# for 3 s on one connection (keepalive_timeout 1 s) all get answers.
c = sl.conn()
answered = 0
for i in range(12):
    try:
        c.request("GET", "/good/ka%d" % i)
        if c.getresponse().read() is not None:
            answered += 1
    except (OSError, Exception):
        break
    time.sleep(0.25)
c.close()
check(answered == 12, "a connection used every 0.25 s outlives "
      "keepalive_timeout (1 s): %d of 12 answered" % answered)

# Keep-alive idle timeout closes the connection.
s = socket.create_connection(("127.0.0.1", sl.port), 5)
t0 = time.time()  # before the response: the idle time starts after it
s.sendall(b"GET /good/x HTTP/1.1\r\nHost: a\r\n\r\n")
first = s.recv(4096)
check(status_of(first) == 200, "keep-alive request answered")
s.settimeout(4)
try:
    rest = s.recv(4096)
except socket.timeout:
    rest = None
took = time.time() - t0
check(rest == b"", "idle keep-alive connection closed by sluice")
check(0.9 <= took < 3.5, "closed after about keepalive_timeout (%.2f s)" % took)
s.close()

# A client that goes away mid-download costs nothing.
good.reset()
for _ in range(5):
    s = socket.create_connection(("127.0.0.1", sl.port), 5)
    s.sendall(b"GET /good/big?size=50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(65536)
    s.close()
wait_until(lambda: in_flight() == 0)  # sluice has let go of them
status, r, body = sl.get("/good/fine")
check(status == 200, "after 5 clients abandoned 50 MB downloads, requests work")
rss = sl.rss_kib()
if not ASAN:
    check(rss < 64 * 1024,
          "sluice RSS stays small after aborted downloads (%d KiB)" % rss)

# A client that stops reading a large response is cut off after
# body_timeout (1 s) without progress: its output waits for the socket
# with a write timeout, and the origin side stops reading meanwhile.
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.settimeout(10)
s.connect(("127.0.0.1", sl.port))
before = in_flight()
s.sendall(b"GET /good/big?size=50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
first = s.recv(65536)
# Not reading until sluice has given up on the response (body_timeout,
# 1 s; 10 s at most): if it never does, the whole body arrives below.
wait_until(lambda: in_flight() <= before)
got, t0 = len(first), time.time()
try:
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
except (ConnectionResetError, socket.timeout):
    pass
s.close()
check(status_of(first) == 200 and got < 50000000,
      "a client that stops reading gets part of the body (%d bytes)" % got)
check(time.time() - t0 < 5,
      "then the connection is closed (body_timeout), not held open")
status, r, body = sl.get("/good/after-stall")
check(status == 200, "requests work after a stalled reader was cut off")

# Origin restarted: pooled connections are dead, requests still succeed.
c = sl.conn()
for i in range(3):
    c.request("GET", "/good/warm%d" % i)
    c.getresponse().read()
good.stop()
good.start()
ok = 0
for i in range(5):
    status, r, body = sl.get("/good/again%d" % i)
    ok += status == 200
check(ok == 5, "after the origin restarts, 5 of 5 requests succeed (%d)" % ok)

# A reload that changes header_timeout (1 s -> 2 s): new connections get
# the new value (a timeout value sluice has not used before).
with open(sl.path) as f:
    text = f.read()
sl.write(text.replace("header_timeout = 1s", "header_timeout = 2s"))
reloads = sl.logtext().count("reloaded ")
os.kill(sl.proc.pid, signal.SIGHUP)
deadline = time.time() + 10
while sl.logtext().count("reloaded ") == reloads and time.time() < deadline:
    time.sleep(0.05)
t0 = time.time()
raw = sl.raw(b"GET /good/x HTTP/1.1\r\nHost: a\r\n", shutdown=False, timeout=6)
took = time.time() - t0
check(status_of(raw) == 408 and 1.9 <= took < 4.5,
      "after a reload to header_timeout = 2s, a stalled head gets 408 after "
      "about 2 s (%.2f s, %r)" % (took, raw[:30]))

check(sl.proc.poll() is None, "sluice is still running after all failures")
check(sl.stop() == 0, "sluice exits 0 on SIGTERM")
blackhole.close()
down.close()
done()
