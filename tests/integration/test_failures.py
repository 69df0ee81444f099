#!/usr/bin/env python3
"""Timeouts and failing origins: every wait has a timeout with the right
status, and a failing origin costs a request, never the process."""

import http.client
import os
import re
import signal
import socket
import threading
import time

from harness import (ASAN, Origin, Sluice, admin_metrics, check, done,
                     free_port, metric_value, status_of, wait_until)

good = Origin("good")
cutter = Origin("cutter")
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

admin_port = free_port()
sl = Sluice({
    "good": {"path_prefix": "/good", "stable": "v1",
             "versions": {"v1": ([good.addr], 100)}},
    "half": {"path_prefix": "/half", "stable": "v1", "eject_after": "1",
             "versions": {"v1": ([good.addr, "127.0.0.1:%d" % down_port],
                                 100)}},
    "down": {"path_prefix": "/down", "stable": "v1",
             "versions": {"v1": (["127.0.0.1:%d" % down_port], 100)}},
    "hole": {"path_prefix": "/hole", "stable": "v1",
             "versions": {"v1": (["127.0.0.1:%d" % hole_port], 100)}},
    "cut": {"path_prefix": "/cut", "stable": "v1", "eject_after": "3",
            "eject_max": "100%", "eject_time": "30s",
            "versions": {"v1": ([cutter.addr], 100)}},
}, workers=1, sluice_extra="admin = 127.0.0.1:%d\n" % admin_port +
                "header_timeout = 1s\nkeepalive_timeout = 1s\n"
                "connect_timeout = 1s\nresponse_timeout = 1s\n"
                "body_timeout = 1s\n")


def in_flight():
    """Requests to the 'good' service sluice has not finished."""
    return sl.ctl("show stats good")["versions"]["v1"]["active"]


# The retry budget starts full: a process that has just started retries
# a refused connect on the version's other server (before, its first
# requests to a dead server failed until 5 others had filled the budget).
codes = [sl.get("/half/x")[0] for _ in range(8)]
check(codes == [200] * 8, "fresh process, one of two servers refusing: 8 of "
      "8 requests answered 200 by retries (%r)" % codes)
c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
c.request("GET", "/metrics")
retries = metric_value(c.getresponse().read().decode(),
                       "sluice_upstream_retries_total")
c.close()
check(retries is not None and retries >= 1,
      "and the retries are counted (%r)" % retries)
refused = sl.ctl("show stats half")["versions"]["v1"]["upstream_errors"][
    "connect_refused"]
check(refused == retries,
      "and so is each refused connect, for the version, though every "
      "client got its 200 (%r refused, %r retries)" % (refused, retries))
dead = [srv for srv in sl.ctl("show service half")["service"]["versions"][0]
        ["servers"] if srv["address"].endswith(":%d" % down_port)]
check(len(dead) == 1 and dead[0].get("ejected_because") == "connect failures",
      "the refusing server is ejected (eject_after = 1): %r" % dead)
c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
c.request("GET", "/metrics")
ejections = metric_value(c.getresponse().read().decode(),
                         "sluice_upstream_ejections_total")
c.close()
check(ejections == 1 and wait_until(lambda: re.search(
    r"event: outlier: half/v1 127\.0\.0\.1:%d ejected for [0-9.]+ s: "
    r"connect failures \(ejections by all workers since start: 1\)"
    % down_port, sl.logtext()) is not None),
    "the ejection is counted (%r) and logged once, with its server and "
    "reason" % ejections)

# A retry never goes to an ejected server: the live server resets (not
# retried elsewhere, since the other one is ejected), and the answer is
# its 502, not a connect to the ejected one.
status, r, body = sl.get("/half/x?reset=1")
check(status == 502 and b"refused" not in body,
      "the live server resets, the other is ejected: 502 for the reset, no "
      "retry on the ejected server (%d %r)" % (status, body[:60]))

# That server is also the only one of service 'down': ejected by 'half',
# it is still used there (a version is never emptied by ejection), so the
# answer says what is wrong with it (502 refused), not 503 no server.

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

# A response cut after its head is the version's failure and the
# server's: the analyzer counts it as an error (it counted a 2xx, so a
# canary that crashed mid-body looked perfect) and three in a row eject
# the server (the head's success reset the count every time).
for i in range(3):
    sl.raw(b"GET /cut/%d?partial=1 HTTP/1.1\r\nHost: a\r\n\r\n" % i)
v1 = sl.ctl("show stats cut")["versions"]["v1"]
check(v1["responses_cut"] == 3 and v1["errors"] == 3 and
      v1["responses"]["2xx"] == 3 and v1["upstream_errors"]["reset"] == 3,
      "three cut responses: 3 errors, 3 cut, still 3 sent as 2xx (%r)"
      % {k: v1[k] for k in ("responses_cut", "errors", "responses")})
srv = sl.ctl("show service cut")["service"]["versions"][0]["servers"][0]
check(srv.get("ejected_because") == "resets",
      "and its server is ejected after eject_after = 3 of them (%r)" % srv)

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

# A pooled connection that the origin closes after reading the next
# request on it (it may have acted on it; sluice cannot tell): a GET is
# sent again on a fresh connection, a POST is not (RFC 9110 9.2.2).


class RawOrigin:
    """A keep-alive origin on raw sockets: answer(conn, n, line) is called
    for the n-th request head (1, 2, ...) of the connection numbered conn
    and returns the bytes to send, or None to close without an answer.
    Records (conn, request line) in seen."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.seen = []
        self.conns = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self.handle, args=(conn, self.conns),
                             daemon=True).start()

    def handle(self, conn, me):
        buf, n = b"", 0
        conn.settimeout(10)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n")[0].decode()
                self.seen.append((me, line))
                n += 1
                out = self.answer(me, n, line)
                if out is None:
                    return
                conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()

    def lines(self):
        return [line for _, line in self.seen]


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ClosingOrigin(RawOrigin):
    """Answers the first request on each connection and closes without an
    answer after reading the second."""

    def answer(self, conn, n, line):
        return OK if n == 1 else None


class NoContentOrigin(RawOrigin):
    """Answers every request; /204 gets a 204 that announces 5 bytes of
    content (RFC 9110 15.3.5 says it cannot have any), /cookies 300
    Set-Cookie fields."""

    def answer(self, conn, n, line):
        if line.startswith("GET /204"):
            return b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
        if line.startswith("GET /te204"):
            return (b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked"
                    b"\r\nX-A: 1\r\n\r\n")
        if line.startswith("GET /twice"):
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        if line.startswith("GET /gzip"):
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"
                    b"\r\n\r\n5\r\nGZGZG\r\n0\r\n\r\n")
        if line.startswith("GET /cookies"):
            return (b"HTTP/1.1 200 OK\r\n" +
                    b"".join(b"Set-Cookie: c%d=v\r\n" % i
                             for i in range(300)) +
                    b"Content-Length: 2\r\n\r\nok")
        return OK


closer = ClosingOrigin()
sl2 = Sluice({"c": {"path_prefix": "/", "stable": "v1",
                    "versions": {"v1": ([closer.addr], 100)}}}, workers=1)
status, r, body = sl2.get("/warm1")
check(status == 200, "a first request pools the origin connection")
status, r, body = sl2.get("/again")
check(status == 200 and closer.lines().count("GET /again HTTP/1.1") == 2,
      "a GET the pooled connection dropped is sent again on a fresh one "
      "(%d, origin saw %r)" % (status, closer.lines()))
c = sl2.conn()
c.request("POST", "/pay", body=b"")
r = c.getresponse()
r.read()
check(r.status == 502 and closer.lines().count("POST /pay HTTP/1.1") == 1,
      "a POST it dropped is not: 502, and the origin saw it once "
      "(%d, %r)" % (r.status, closer.lines()))
check(sl2.stop() == 0, "that sluice stops cleanly")

nocontent = NoContentOrigin()
sl3 = Sluice({"n": {"path_prefix": "/", "stable": "v1",
                    "versions": {"v1": ([nocontent.addr], 100)}}}, workers=1)
for path in ("/a", "/b", "/204", "/c"):
    status, r, body = sl3.get(path)
conns = {line.split()[1]: n for n, line in nocontent.seen}
check(conns["/b"] == conns["/a"],
      "an origin connection is reused after a 200 (%r)" % nocontent.seen)
check(conns["/204"] == conns["/b"] and conns["/c"] != conns["/204"],
      "but not after a 204 that announced content, which may still come "
      "(%r)" % nocontent.seen)
# A 204 never carries framing headers to the client (RFC 9110 8.6, RFC
# 9112 6.1), whatever the origin sent; chunked applied twice is a
# malformed response.
for path in ("/204", "/te204"):
    raw = sl3.raw(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                  % path.encode())
    head = raw.split(b"\r\n\r\n")[0].lower()
    check(status_of(raw) == 204 and b"content-length" not in head and
          b"transfer-encoding" not in head,
          "a 204 from the origin with framing headers (%s) reaches the "
          "client without them (%r)" % (path, head))
raw = sl3.raw(b"GET /twice HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
check(status_of(raw) == 502,
      "Transfer-Encoding: chunked twice in a response: 502 (%r)" % raw[:40])
http.client._MAXHEADERS = 1000  # the client's own limit is 100
c = sl3.conn()
c.request("GET", "/cookies")
r = c.getresponse()
r.read()
check(r.status == 200 and len(r.headers.get_all("Set-Cookie")) == 300,
      "a response with 300 header fields (more than max_headers, which "
      "is for requests) passes whole (%d, %d)"
      % (r.status, len(r.headers.get_all("Set-Cookie") or [])))
# A response in a coding other than chunked: to an HTTP/1.1 client it
# passes with its Transfer-Encoding; an HTTP/1.0 client cannot be told the
# coding (1.0 has no Transfer-Encoding): 502, never the coded bytes as
# plain content.
raw = sl3.raw(b"GET /gzip HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
check(status_of(raw) == 200 and
      b"Transfer-Encoding: gzip, chunked" in raw,
      "gzip, chunked to an HTTP/1.1 client: passed with its coding")
raw = sl3.raw(b"GET /gzip HTTP/1.0\r\nHost: a\r\n\r\n")
check(status_of(raw) == 502 and b"GZGZG" not in raw,
      "gzip, chunked to an HTTP/1.0 client: 502 (%r)" % raw[:40])
check(sl3.stop() == 0, "that sluice stops cleanly")


class EarlyOrigin(RawOrigin):
    """Answers 413 as soon as it has a request head, before the body."""

    def answer(self, conn, n, line):
        return b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig!"


# An answer before the whole request body: it says Connection: close, and
# sluice closes in stages (reading away the rest of the body), so the
# client reads the answer instead of a reset (RFC 9112 9.6; 2 of 3 such
# uploads got ECONNRESET). The same for sluice's own early answer (404).
early = EarlyOrigin()
sl4 = Sluice({"e": {"path_prefix": "/e", "stable": "v1",
                    "versions": {"v1": ([early.addr], 100)}}}, workers=1)
BODY = b"x" * (8 << 20)
for path, want in (("/e/up1", 413), ("/e/up2", 413), ("/e/up3", 413),
                   ("/nowhere", 404)):
    c = sl4.conn()
    try:
        c.request("POST", path, body=BODY)
        r = c.getresponse()
        got = (r.status, r.getheader("Connection"), r.read())
    except OSError as e:
        got = (type(e).__name__,)
    c.close()
    check(got[0] == want and got[1] == "close",
          "POST %s of 8 MB answered %d before its body was read: the "
          "client reads it, with Connection: close (%r)" % (path, want,
                                                            got[:2]))
check(sl4.stop() == 0, "that sluice stops cleanly")


class SilentOrigin(RawOrigin):
    """Takes request heads and never answers (no 100 Continue either)."""

    def answer(self, conn, n, line):
        time.sleep(30)
        return None


# A client that sent Expect: 100-continue waits for the origin before its
# body: an origin that never answers is the origin's timeout (504, counted
# against the version), not the client's (it got 408 after body_timeout).
silent = SilentOrigin()
sl5 = Sluice({"s": {"path_prefix": "/", "stable": "v1",
                    "versions": {"v1": ([silent.addr], 100)}}}, workers=1,
             sluice_extra="response_timeout = 1s\nbody_timeout = 2s\n")
t0 = time.time()
raw = sl5.raw(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
              b"Expect: 100-continue\r\n\r\n", shutdown=False, timeout=8)
errs = sl5.ctl("show stats s")["versions"]["v1"]["upstream_errors"]
check(status_of(raw) == 504 and errs["response_timeout"] == 1,
      "Expect: 100-continue to a silent origin: 504 after response_timeout, "
      "counted as the origin's (%r, %.1f s)" % (raw[:30], time.time() - t0))
# Without Expect, a client that stops mid-body is the slow one: 408.
raw = sl5.raw(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
              shutdown=False, timeout=8)
check(status_of(raw) == 408, "without Expect, a body that stops: 408 (%r)"
      % raw[:30])
check(sl5.stop() == 0, "that sluice stops cleanly")


class OddOrigin(RawOrigin):
    """/stall: a 200 head and 10 of 100000 bytes, then silence; /hints: a
    103 and silence; /badchunk: a malformed chunked body; /gzip10: a
    close-delimited gzip body."""

    def answer(self, conn, n, line):
        if " /stall" in line:
            return (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" +
                    b"x" * 10)
        if " /hints" in line:
            return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        if " /badchunk" in line:
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\nZZZ\r\n")
        if " /gzip10" in line:
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                    b"Connection: close\r\n\r\nGZIPBYTES")
        return None


odd = OddOrigin()
sl6 = Sluice({"o": {"path_prefix": "/", "stable": "v1",
                    "versions": {"v1": ([odd.addr], 100)}}}, workers=1,
             sluice_extra="response_timeout = 1s\nbody_timeout = 2s\n")
# An early final answer to an Expect request, the body sent in two parts,
# then the origin stalls mid-response: the response is still timed out
# (the body's arrival reset the origin's timeouts to none: a leak).
s = socket.create_connection(("127.0.0.1", sl6.port), 5)
s.settimeout(20)
s.sendall(b"POST /stall HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
          b"Content-Length: 10\r\n\r\n")
first = s.recv(4096)
s.sendall(b"12345")
time.sleep(0.2)
s.sendall(b"67890")
t0 = time.time()
try:
    while s.recv(65536):
        pass
except OSError:
    pass
took = time.time() - t0
s.close()
check(first.startswith(b"HTTP/1.1 200") and took < 10,
      "Expect, an early answer, then an origin stalling mid-body: cut after "
      "body_timeout (%.1f s)" % took)
# A 103 is not the answer to Expect: a silent origin after it is still
# the origin's timeout.
raw = sl6.raw(b"PUT /hints HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
              b"Expect: 100-continue\r\n\r\n", shutdown=False, timeout=8)
check(b"HTTP/1.1 504" in raw and b"408" not in raw,
      "Expect, a 103, then silence: 504, not 408 (%r)" % raw[-40:])
# A malformed response body is a cut response: an error, not a 2xx alone.
before = sl6.ctl("show stats o")["versions"]["v1"]
sl6.raw(b"GET /badchunk HTTP/1.1\r\nHost: a\r\n\r\n")
after = sl6.ctl("show stats o")["versions"]["v1"]
check(after["responses_cut"] == before["responses_cut"] + 1 and
      after["errors"] == before["errors"] + 1,
      "a malformed chunked body after a 200 head counts as a cut response "
      "and an error")
# A gzip coding without chunked to an HTTP/1.0 client: 502 too.
raw = sl6.raw(b"GET /gzip10 HTTP/1.0\r\nHost: a\r\n\r\n")
check(status_of(raw) == 502 and b"GZIPBYTES" not in raw,
      "Transfer-Encoding: gzip (not chunked) to an HTTP/1.0 client: 502")
check(sl6.stop() == 0, "that sluice stops cleanly")

# An origin that resets its connection right after each answer: the reset
# arrives with the answer's last bytes and makes no event of its own, so
# the dead connection sits in the pool. A request that cannot be sent
# twice (a POST with a body) checks a pooled connection before it takes
# it and opens a fresh one: every POST gets through, each seen once.


class ResetOrigin(RawOrigin):
    """Answers, then resets the connection (SO_LINGER 0); /cut* paths
    get a cut body instead: chunked without its last chunk (then a FIN),
    or close-delimited (then a reset)."""

    def handle(self, conn, me):
        buf = b""
        conn.settimeout(10)
        try:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, body = buf.split(b"\r\n\r\n", 1)
            length = 0
            for field in head.split(b"\r\n")[1:]:
                name, _, value = field.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:  # the whole request, then answer
                chunk = conn.recv(4096)
                if not chunk:
                    return
                body += chunk
            line = head.split(b"\r\n")[0].decode()
            self.seen.append((me, line))
            if " /trickle" in line or " /hints" in line:
                # 6 s of a head that never ends: a byte, or a 103, at a
                # time, each well within response_timeout of the last.
                piece = [b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"]
                if " /trickle" in line:
                    piece = [bytes([b]) for b in OK]
                t0 = time.time()
                while time.time() - t0 < 6:
                    for p in piece:
                        conn.sendall(p)
                        time.sleep(0.3)
                return
            if " /flood1xx" in line:  # 100 Continue after 100 Continue
                t0 = time.time()
                while time.time() - t0 < 4:
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)
                return
            if " /partial" in line:  # part of a head late, then silence
                time.sleep(1.5)
                conn.sendall(b"HTTP/1.1 2")
                time.sleep(5)
                return
            if " /status2000" in line:  # four digits: not a status
                conn.sendall(b"HTTP/1.1 2000 OK\r\nContent-Length: 0"
                             b"\r\n\r\n")
                return
            if " /hello" in line:
                conn.sendall(b"hello world\r\n")
                time.sleep(3)
                return
            if " /cutchunk" in line:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                             b"chunked\r\n\r\n3\r\nabc\r\n")
                return  # a FIN: the last chunk never comes
            if " /cuteof" in line:
                conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nabc")
                time.sleep(0.3)
            elif " /headreset" in line:  # part of a head, a reset at once
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Half: y")
            elif " /bodyreset" in line:  # part of a body, a reset at once
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100"
                             b"\r\n\r\npartial")
            elif " /slow" in line:  # an answer the client will not wait for
                time.sleep(2)
                conn.sendall(OK)
            else:
                conn.sendall(OK)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        finally:
            conn.close()


resetter = ResetOrigin()
checked = ResetOrigin()  # its own server: health state is per server
fourdigit = ResetOrigin()
admin7 = free_port()
sl7 = Sluice({"r": {"path_prefix": "/", "stable": "v1", "eject_after": "0",
                    "versions": {"v1": ([resetter.addr], 100)}},
              # health_timeout is for the whole check too
              "hc": {"path_prefix": "/hc", "stable": "v1",
                     "health_path": "/trickle", "health_interval": "300ms",
                     "health_timeout": "1s", "health_fall": "2",
                     "versions": {"v1": ([checked.addr], 100)}},
              "fd": {"path_prefix": "/fd", "stable": "v1",
                     "health_path": "/status2000",
                     "health_interval": "300ms",
                     "versions": {"v1": ([fourdigit.addr], 100)}}},
             workers=1,
             sluice_extra="retries = 0\nresponse_timeout = 2s\n"
             "admin = 127.0.0.1:%d\n" % admin7)
statuses = []
for i in range(10):
    sl7.get("/warm%d" % i)  # pools a connection, which the origin resets
    time.sleep(0.05)
    c = sl7.conn()
    c.request("POST", "/pay%d" % i, body=b"abc")
    r = c.getresponse()
    r.read()
    c.close()
    statuses.append(r.status)
posts = [line for line in resetter.lines() if line.startswith("POST")]
check(statuses == [200] * 10 and len(posts) == 10,
      "POSTs after the origin reset the pooled connection: all 200, each "
      "seen once (%r, %d seen)" % (statuses, len(posts)))


# An origin that sends interim answers without end, to a client that does
# not read: they wait in the origin's socket, as a body would, instead of
# piling up in sluice (it grew by 150 MB in 3 s).
rss0 = sl7.rss_kib()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", sl7.port))
s.sendall(b"GET /flood1xx HTTP/1.1\r\nHost: a\r\n\r\n")
time.sleep(3)
grew = sl7.rss_kib() - rss0
s.close()
check(grew < 32 * 1024,
      "1xx after 1xx to a client that does not read: sluice grew by %d KiB "
      "(backpressure holds them back)" % grew)


def read_to_end(port, data):
    """Send DATA, read to the end: (bytes, True when the end was a
    reset rather than a clean close)."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out, False
            out += chunk
    except ConnectionResetError:
        return out, True
    finally:
        s.close()


# A cut body must never look whole to the client: when its end is the
# close (an HTTP/1.0 client of a chunked answer, or a close-delimited
# answer), the client connection is reset, not closed.
out, reset = read_to_end(sl7.port, b"GET /cutchunk HTTP/1.0\r\nHost: a\r\n\r\n")
check(reset and b"abc\r\n0\r\n" not in out,
      "a chunked answer cut before its last chunk, to an HTTP/1.0 client: "
      "the connection is reset (%r)" % out[-40:])
out, reset = read_to_end(sl7.port, b"GET /cuteof HTTP/1.1\r\nHost: a\r\n\r\n")
check(reset, "a close-delimited answer the origin resets: the client's "
      "connection is reset too (%r)" % out[-40:])
out, reset = read_to_end(sl7.port, b"GET /whole HTTP/1.0\r\nHost: a\r\n\r\n")
check(not reset and out.endswith(b"ok"),
      "a whole answer still ends with a clean close (%r)" % out[-20:])
# response_timeout is for the whole response head, however it trickles
# in (a byte at a time, or 103s); an answer that is not HTTP is a 502 at
# once, not a wait for its blank line.
for path, most in (("/trickle", 4.5), ("/hints", 4.5), ("/partial", 3.2)):
    t0 = time.time()
    raw = sl7.raw(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode(),
                  timeout=10)
    took = time.time() - t0
    check(b"HTTP/1.1 504" in raw and took < most,
          "a head that trickles in (%s) for longer than response_timeout "
          "(2 s): 504 after %.1f s" % (path, took))
before = sl7.ctl("show stats r")["versions"]["v1"]["upstream_errors"]
t0 = time.time()
raw = sl7.raw(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", timeout=10)
took = time.time() - t0
after = sl7.ctl("show stats r")["versions"]["v1"]["upstream_errors"]
check(status_of(raw) == 502 and took < 1.5 and
      after["bad_response"] == before["bad_response"] + 1,
      "an answer that does not start with HTTP/: 502 at once, counted as a "
      "bad response (%.1f s, %r)" % (took, raw[:30]))

# A reset that arrives with the data before it makes no event of its own
# (epoll's HUP and ERR reach sluice without the "closed" flag): when the
# data leaves a head incomplete, sluice reads on once to find it. Part of
# a response head and a reset: a 502 at once, not a 504 at
# response_timeout; part of a request head and a reset: the connection
# is closed at once, not held until header_timeout (10 s).
statuses = [status_of(sl7.raw(b"GET /headreset HTTP/1.1\r\nHost: a\r\n\r\n",
                              timeout=10)) for _ in range(5)]
check(statuses == [502] * 5,
      "part of a response head and a reset: 502, not a 504 after "
      "response_timeout (%r)" % statuses)


def active7():
    return metric_value(admin_metrics(admin7), "sluice_connections_active")


check(wait_until(lambda: active7() == 0, timeout=5),
      "no client connection left open before the reset test")
for _ in range(5):
    s = socket.create_connection(("127.0.0.1", sl7.port), 10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Half: y")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
check(wait_until(lambda: active7() == 0, timeout=5),
      "part of a request head and a reset: the connection is closed at "
      "once, not held until header_timeout (%r open)" % active7())
# The same with part of a body: the response is cut at once (the client
# sees its connection end short of the 100 bytes, counted as the origin's
# reset), not held until body_timeout (30 s), and a request body cut by
# the client's reset ends its request at once, counted as a client abort.
before = sl7.ctl("show stats r")["versions"]["v1"]["upstream_errors"]
took = []
for _ in range(10):
    t0 = time.time()
    out, _reset = read_to_end(sl7.port,
                              b"GET /bodyreset HTTP/1.1\r\nHost: a\r\n\r\n")
    took.append(time.time() - t0)
    check(out.startswith(b"HTTP/1.1 200") and out.endswith(b"partial"),
          "part of a body, then a reset: the client gets the part (%r)"
          % out[-30:])
after = sl7.ctl("show stats r")["versions"]["v1"]["upstream_errors"]
check(max(took) < 10 and after["reset"] == before["reset"] + 10 and
      after["response_timeout"] == before["response_timeout"],
      "part of a body and a reset: cut at once, not at body_timeout "
      "(longest %.1f s), counted as 10 resets (%d)"
      % (max(took), after["reset"] - before["reset"]))
check(wait_until(lambda: active7() == 0, timeout=5),
      "no client connection left open after the cut bodies")
# Origin failures are logged at the default level, naming the service,
# version and server, at most once in 10 s per server and kind.
said = sl7.logtext().count("upstream r/v1 %s: origin closed the connection"
                           % resetter.addr)
check(1 <= said < after["reset"],
      "the resets are in the log, rate-limited: %d lines for %d resets"
      % (said, after["reset"]))
aborts0 = metric_value(admin_metrics(admin7), "sluice_client_aborts_total")
for _ in range(10):
    s = socket.create_connection(("127.0.0.1", sl7.port), 10)
    s.sendall(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100"
              b"\r\n\r\nabc")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
check(wait_until(lambda: active7() == 0, timeout=8),
      "part of a request body and a reset: the request ends at once, not "
      "at body_timeout (%r open)" % active7())
check(wait_until(lambda: metric_value(admin_metrics(admin7),
                                      "sluice_client_aborts_total")
                 == aborts0 + 10, timeout=5),
      "and each is counted as a client abort (%d of 10)"
      % (metric_value(admin_metrics(admin7), "sluice_client_aborts_total")
         - aborts0))
check(wait_until(lambda: any(
    "health: hc/v1 %s down at its first check: timeout" % checked.addr
    in e["command"] for e in sl7.ctl("show events 100")["events"])),
    "a health check whose status line trickles in for longer than "
    "health_timeout fails as a timeout")
check(wait_until(lambda: any(
    "health: fd/v1 %s down at its first check: not an HTTP response"
    % fourdigit.addr in e["command"]
    for e in sl7.ctl("show events 100")["events"])),
    "a health check answered 'HTTP/1.1 2000 OK' fails (it read as 200, "
    "while the proxy answered every request to it 502)")
check(sl7.stop() == 0, "that sluice stops cleanly")

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

# A refused connect sent nothing, so a request whose body is still coming
# when its head goes out (most clients send the body in a write of its
# own) is retried on the other server too, with what it had sent so far
# and the rest as it comes: it got a 502 (the head was kept for a retry
# only when the whole body was already in).
echo = Origin("echo", "--echo")
sl8 = Sluice({"b": {"path_prefix": "/", "stable": "v1", "eject_after": "0",
                    "versions": {"v1": ([echo.addr,
                                         "127.0.0.1:%d" % down_port], 100)}}},
             workers=1, sluice_extra="retry_budget = 100%\n")


def post_in_parts(head, parts, port=None):
    s = socket.create_connection(("127.0.0.1", port or sl8.port), 10)
    s.sendall(head)
    for part in parts:
        time.sleep(0.05)
        s.sendall(part)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


results = []
for i in range(6):
    out = post_in_parts(b"POST /p%d HTTP/1.1\r\nHost: a\r\nConnection: close"
                        b"\r\nContent-Length: 11\r\n\r\n" % i,
                        [b"hello", b" world"])
    results.append(status_of(out) == 200 and out.endswith(b"\r\n\r\nhello world"))
    out = post_in_parts(b"POST /c%d HTTP/1.1\r\nHost: a\r\nConnection: close"
                        b"\r\nTransfer-Encoding: chunked\r\n\r\n" % i,
                        [b"5\r\nhello\r\n", b"6\r\n world\r\n0\r\n\r\n"])
    results.append(status_of(out) == 200 and  # the origin de-chunks
                   out.endswith(b"\r\n\r\nhello world"))
refused = sl8.ctl("show stats b")["versions"]["v1"]["upstream_errors"][
    "connect_refused"]
check(all(results) and refused >= 1,
      "POSTs whose body comes after the head, one of two servers refusing: "
      "all 12 answered by the live one with the whole body (%r; %d refused "
      "connects retried)" % (results, refused))
check(sl8.stop() == 0, "that sluice stops cleanly")

# Such a request is not kept for another go, so on the next server it
# takes a pooled connection only after a check says it is open: a PUT
# whose body came in while its first connect timed out was sent on a
# pooled connection the origin had reset, and got a 502.
resetter9 = ResetOrigin()
sl9 = Sluice({"p": {"path_prefix": "/", "stable": "v1", "eject_after": "0",
                    "versions": {"v1": (["127.0.0.1:%d" % hole_port,
                                         resetter9.addr], 100)}}},
             workers=1, sluice_extra="retry_budget = 100%\n"
             "connect_timeout = 500ms\nresponse_timeout = 3s\n")
puts = []
for i in range(8):
    sl9.get("/warm%d" % i)  # pools a connection, which the origin resets
    time.sleep(0.05)
    puts.append(status_of(post_in_parts(
        b"PUT /put%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Content-Length: 3\r\n\r\n" % i, [b"abc"], port=sl9.port)))
seen = [line for line in resetter9.lines() if line.startswith("PUT")]
check(puts == [200] * 8 and len(seen) == 8,
      "PUTs whose body comes while a connect times out, a reset pooled "
      "connection on the other server: all 200, each seen once (%r, %d "
      "seen)" % (puts, len(seen)))
check(sl9.stop() == 0, "that sluice stops cleanly")
blackhole.close()
down.close()
done()
