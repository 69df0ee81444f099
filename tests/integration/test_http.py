#!/usr/bin/env python3
"""HTTP/1.1 forwarding: keep-alive, pipelining, chunked both ways, HEAD,
1xx, header rewriting, Upgrade tunnels, HTTP/1.0, routing misses."""

import email.utils
import os
import re
import socket
import subprocess
import threading
import time

from harness import Origin, Sluice, check, done, pipelined, status_of



def recv_until(sock, marker):
    """Read from SOCK until MARKER has arrived or the peer closes."""
    got = b""
    while marker not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


blue = Origin("blue")
green = Origin("green")
sl = Sluice({
    "shop": {
        "hosts": "shop.example",
        "path_prefix": "/",
        "stable": "blue",
        "sticky": "header:X-User-Id",
        "expose_version": "yes",
        "versions": {"blue": ([blue.addr], 100), "green": ([green.addr], 0)},
    },
    "api": {
        "path_prefix": "/api/",
        "stable": "green",
        "versions": {"green": ([green.addr], 100)},
    },
    "pipe": {
        "path_prefix": "/pipe/",
        "stable": "v",
        "versions": {"v": ([blue.addr], 100)},
    },
})

# Basic request: reaches the stable version, headers rewritten.
status, r, body = sl.get("/hello?x=1&echo=1", headers={
    "Host": "shop.example", "X-User-Id": "u1",
    "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "drop me",
    "Keep-Alive": "timeout=5", "X-Forwarded-For": "203.0.113.9",
    "Via": "1.0 edge"})
check(status == 200, "GET through sluice returns the origin's 200")
check(r.getheader("X-Sluice-Version") == "blue",
      "expose_version names the version served (blue)")
check(r.getheader("Via") == "1.1 sluice", "response carries Via: 1.1 sluice")
text = body.decode()
check(text.startswith("GET /hello?x=1&echo=1 HTTP/1.1\r\n"),
      "origin sees the origin-form target and HTTP/1.1")
check("Host: shop.example\r\n" in text, "Host is kept")
check("X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n" in text,
      "X-Forwarded-For appends the client address")
check("X-Forwarded-Proto: http\r\n" in text, "X-Forwarded-Proto: http added")

# OPTIONS * (a question about the server as a whole) goes to the service
# serving the host's root, forwarded as is; it was a 404.
raw = sl.raw(b"OPTIONS * HTTP/1.1\r\nHost: shop.example\r\n"
             b"Connection: close\r\n\r\n")
check(status_of(raw) not in (0, 404) and
      blue.last().startswith(b"OPTIONS * HTTP/1.1\r\n"),
      "OPTIONS * reaches the origin of the service at / as 'OPTIONS *' "
      "(%r)" % raw[:20])
# Its absolute form has an empty path: the last proxy sends '*' (RFC
# 9112 3.2.4), not '/', which asks about the resource at the root.
raw = sl.raw(b"OPTIONS http://shop.example HTTP/1.1\r\nHost: shop.example\r\n"
             b"Connection: close\r\n\r\n")
check(status_of(raw) not in (0, 404) and
      blue.last().startswith(b"OPTIONS * HTTP/1.1\r\nHost: shop.example\r\n"),
      "OPTIONS http://shop.example reaches the origin as 'OPTIONS *' (%r)"
      % blue.last()[:30])
raw = sl.raw(b"OPTIONS http://shop.example?q=1 HTTP/1.1\r\n"
             b"Host: shop.example\r\nConnection: close\r\n\r\n")
check(blue.last().startswith(b"OPTIONS /?q=1 HTTP/1.1\r\n"),
      "with a query it is 'OPTIONS /?q=1' (%r)" % blue.last()[:30])
# An HTTP/1.0 client's Expect: 100-continue is ignored (RFC 9110
# 10.1.1): forwarded in the HTTP/1.1 request, it would make the origin
# wait for a body the client sends at once, or answer 100 to nobody.
raw = sl.raw(b"POST /e?echo=1 HTTP/1.0\r\nHost: shop.example\r\n"
             b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
check(status_of(raw) == 200 and b"xpect" not in blue.last() and
      raw.endswith(b"\r\n\r\nhi"),
      "an HTTP/1.0 request's Expect is not forwarded, its body is (%r)"
      % raw[-40:])

# The underscore spellings of the X-Forwarded names are the same variable
# to CGI-style origins (HTTP_X_FORWARDED_PROTO): a client's
# X_Forwarded_Proto: https would make a plain request look secure.
raw = sl.raw(b"GET /cgi?echo=1 HTTP/1.1\r\nHost: shop.example\r\n"
             b"X_Forwarded_Proto: https\r\nx-forwarded_proto: https\r\n"
             b"X_Forwarded_For: 198.51.100.7\r\nConnection: close\r\n\r\n")
check(b"_Proto" not in raw and b"_proto" not in raw and
      raw.count(b"X-Forwarded-Proto: http\r\n") == 1,
      "a client's X_Forwarded_Proto (any spelling) is removed; only "
      "sluice's X-Forwarded-Proto: http arrives")
check(b"X-Forwarded-For: 198.51.100.7, 127.0.0.1\r\n" in raw and
      b"X_Forwarded_For" not in raw,
      "X_Forwarded_For is merged into X-Forwarded-For, like the hyphen "
      "spelling")
check("Via: 1.0 edge, 1.1 sluice\r\n" in text, "Via is appended")
check("Keep-Alive" not in text and "Connection:" not in text,
      "hop-by-hop Connection and Keep-Alive are removed")
check("X-Secret-Hop" not in text,
      "headers named in Connection are removed")
# Connection may name X-Forwarded-For and Via too: then the client's are
# hop-by-hop and only sluice's reach the origin (they were merged).
raw = sl.raw(b"GET /hop?echo=1 HTTP/1.1\r\nHost: shop.example\r\n"
             b"Connection: X-Forwarded-For, via\r\nVia: 1.0 edge\r\n"
             b"X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n")
check(b"\r\nX-Forwarded-For: 127.0.0.1\r\n" in raw and
      b"203.0.113.9" not in raw and b"edge" not in raw and
      raw.count(b"Via: 1.1 sluice\r\n") == 2,
      "X-Forwarded-For and Via named in Connection are dropped: the origin "
      "gets sluice's alone (%r)" % raw[raw.find(b"\r\n\r\n"):][:300])

# Headers are forwarded as "Name: value": whitespace around a value is
# not part of it (RFC 9110 5.5), the spelling of the name is kept.
raw = sl.raw(b"GET /spell?echo=1 HTTP/1.1\r\nHost: shop.example\r\n"
             b"X-Pad:   padded   \r\nx-TAB:\tt\t\r\nX-Empty:\r\n"
             b"X-Inner: a  b\r\nX-Plain: p\r\nConnection: close\r\n\r\n")
check(b"\r\nX-Pad: padded\r\nx-TAB: t\r\nX-Empty: \r\n"
      b"X-Inner: a  b\r\nX-Plain: p\r\n" in raw,
      "header lines reach the origin as 'Name: value' (padding dropped, "
      "inner spaces and the name's case kept)")

# Longest prefix wins; Host-less service matches any host.
status, r, body = sl.get("/api/v1", headers={"Host": "other.example"})
check(status == 200 and r.getheader("X-Origin") == "green",
      "/api/ routes to the api service (longest prefix)")
status, r, body = sl.get("/nothing", headers={"Host": "other.example"})
check(status == 404, "no matching service gives 404 from sluice")
check(b"no service" in body, "404 body says why")

# Keep-alive: many requests, few origin connections.
blue.reset()
c = sl.conn()
for i in range(50):
    c.request("GET", "/k%d" % i, headers={"Host": "shop.example"})
    resp = c.getresponse()
    resp.read()
    check(resp.status == 200, "keep-alive request %d ok" % i) if i in (0, 49) else None
c.close()
st = blue.stats()
check(st["requests"] == 50, "origin served all 50 requests")
check(st["connections"] <= 2,
      "origin opened %d new connection(s) for 50 requests (keep-alive reuse)"
      % st["connections"])

# Pipelining: responses come back in order.
reqs = [("GET /p%d?echo=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n" % i).encode()
        for i in range(10)]
out = pipelined(sl.port, reqs)
check(len(out) == 10 and all(s == 200 for s, _, _ in out),
      "10 pipelined requests all answered")
check(all(b.startswith(("GET /p%d?" % i).encode())
          for i, (_, _, b) in enumerate(out)),
      "pipelined responses arrive in request order")

# Chunked request body reaches the origin intact.
body = b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                for p in [b"hello ", b"chunked ", b"world"]) + b"0\r\n\r\n"
raw = sl.raw(b"POST /up?echo=1 HTTP/1.1\r\nHost: shop.example\r\n"
             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
check(status_of(raw) == 200, "chunked upload answered 200")
check(b"hello chunked world" in raw, "origin received the dechunked body")
check(b"X-Received-Bytes: 19" in raw, "origin counted 19 body bytes")

# Chunked response body reaches the client intact.
status, r, body = sl.get("/c?chunked=1&size=100000",
                         headers={"Host": "shop.example"})
check(status == 200 and len(body) == 100000,
      "chunked 100000-byte response arrives whole")
check(r.getheader("Transfer-Encoding") == "chunked",
      "chunked framing is passed through to HTTP/1.1 clients")

# HTTP/1.0 client gets a dechunked, close-delimited body.
raw = sl.raw(b"GET /c?chunked=1&size=3000 HTTP/1.0\r\nHost: shop.example\r\n\r\n")
head, _, rest = raw.partition(b"\r\n\r\n")
check(status_of(raw) == 200 and len(rest) == 3000,
      "HTTP/1.0 client gets the 3000-byte body without chunk framing")
check(b"Transfer-Encoding" not in head, "no Transfer-Encoding to HTTP/1.0")

# sluice's own answers carry Date (RFC 9110 6.6.1: an origin server with
# a clock sends it, and a 404 of sluice's is its own), in IMF-fixdate.
raw = sl.raw(b"GET /x HTTP/1.1\r\nHost: nowhere.example\r\n"
             b"Connection: close\r\n\r\n")
date = re.search(rb"\r\nDate: ([^\r]*)\r\n", raw)
when = email.utils.parsedate_to_datetime(date.group(1).decode()) if date \
    else None
check(status_of(raw) == 404 and when is not None and
      re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                   rb"\d\d:\d\d:\d\d GMT", date.group(1)) and
      abs(when.timestamp() - time.time()) < 60,
      "sluice's own 404 has a Date header in IMF-fixdate, now (%r)"
      % (date.group(1) if date else None))

# An HTTP/1.0 client asking for keep-alive: sluice's own answers say
# Connection: keep-alive when the connection stays open (without it a 1.0
# client takes the answer as the last one).
s = socket.create_connection(("127.0.0.1", sl.port), 5)
s.settimeout(5)
answers = []
for path in (b"/x", b"/y"):
    s.sendall(b"GET " + path + b" HTTP/1.0\r\nHost: nowhere.example\r\n"
              b"Connection: keep-alive\r\n\r\n")
    resp = recv_until(s, b"\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += s.recv(4096)
    answers.append(head)
s.close()
check(all(h.startswith(b"HTTP/1.1 404") and
          b"Connection: keep-alive" in h for h in answers),
      "HTTP/1.0 keep-alive: sluice's 404s say Connection: keep-alive, and "
      "the connection serves a second request (%r)" % answers[-1][:60])

# Close-delimited origin response.
status, r, body = sl.get("/e?eof=1&size=5000", headers={"Host": "shop.example"})
check(status == 200 and len(body) == 5000,
      "close-delimited origin body forwarded whole")

# HEAD: no body even though the origin sends Content-Length.
status, r, body = sl.get("/h?size=1234", headers={"Host": "shop.example"},
                         method="HEAD")
check(status == 200 and body == b"" and
      r.getheader("Content-Length") == "1234",
      "HEAD keeps Content-Length and sends no body")
out = pipelined(sl.port, [
    b"HEAD /h?size=99 HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    b"GET /after-head?echo=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n"])
check(len(out) == 2 and out[1][2].startswith(b"GET /after-head"),
      "a request after HEAD on the same connection is answered correctly")

# 204 and 304 carry no body.
for code in (204, 304):
    out = pipelined(sl.port, [
        ("GET /s?status=%d HTTP/1.1\r\nHost: shop.example\r\n\r\n"
         % code).encode(),
        b"GET /next?echo=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n"])
    check(len(out) == 2 and out[0][0] == code and
          out[1][2].startswith(b"GET /next"),
          "%d has no body and the next response follows" % code)

# Expect: 100-continue goes to the origin, interim response comes back.
s = socket.create_connection(("127.0.0.1", sl.port), 5)
s.sendall(b"POST /x?echo=1 HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\n"
          b"Expect: 100-continue\r\n\r\n")
first = s.recv(4096)
check(first.startswith(b"HTTP/1.1 100 Continue"),
      "Expect: 100-continue yields 100 Continue before the body is sent")
s.sendall(b"abcde")
rest = recv_until(s, b"abcde")
check(status_of(rest) == 200 and b"abcde" in rest,
      "the body sent after 100 Continue reaches the origin")
s.close()

# Upgrade: tunnel to the origin's echo. Clients may name more tokens in
# Connection ("keep-alive, Upgrade", "Upgrade, HTTP2-Settings"): the
# headers those name are dropped, but Upgrade must still go on.
for conn in (b"Upgrade", b"keep-alive, Upgrade", b"Upgrade, X-Extra"):
    s = socket.create_connection(("127.0.0.1", sl.port), 5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: shop.example\r\n"
              b"Upgrade: websocket\r\nConnection: " + conn + b"\r\n\r\n")
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    check(resp.startswith(b"HTTP/1.1 101"),
          "Upgrade with Connection: %s answered 101 (%r)"
          % (conn.decode(), resp[:40]))
    check(b"Upgrade: websocket" in resp, "101 keeps the Upgrade header")
    s.sendall(b"ping through the tunnel")
    got = b""
    deadline = time.time() + 5
    while len(got) < 23 and time.time() < deadline:
        got += s.recv(4096)
    check(got == b"ping through the tunnel", "bytes flow through the tunnel")
    s.close()

# A tunnel client that sends its last bytes and closes at once: every byte
# reaches the origin, whatever the size (16336 is exactly one read buffer,
# where the EOF arrives in the same read as the data).
counts = []
counter = socket.socket()
counter.bind(("127.0.0.1", 0))
counter.listen(8)


def count_tunnel_bytes():
    while True:
        c, _ = counter.accept()
        head = recv_until(c, b"\r\n\r\n")
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                  b"Connection: Upgrade\r\nUpgrade: x\r\n\r\n")
        n = len(head.split(b"\r\n\r\n", 1)[1])
        c.settimeout(5)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                n += len(d)
        except OSError:
            pass
        counts.append(n)
        try:
            c.sendall(b"got %d" % n)  # after the client's EOF
        except OSError:
            pass
        c.close()


threading.Thread(target=count_tunnel_bytes, daemon=True).start()
tun = Sluice({"ws": {"path_prefix": "/", "stable": "v1", "versions": {
    "v1": (["127.0.0.1:%d" % counter.getsockname()[1]], 100)}}}, workers=1)
for size in (1000, 16336, 32672, 100000):
    s = socket.create_connection(("127.0.0.1", tun.port), 5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
              b"Upgrade: x\r\n\r\n")
    head = s.recv(4096)
    s.sendall(os.urandom(size))
    s.shutdown(socket.SHUT_WR)
    back = b""
    s.settimeout(10)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            back += d
    except OSError:
        pass
    s.close()
    deadline = time.time() + 5
    while len(counts) < 1 and time.time() < deadline:
        time.sleep(0.05)
    got = counts.pop() if counts else None
    check(head.startswith(b"HTTP/1.1 101") and got == size,
          "tunnel: %d bytes then close, the origin gets %r" % (size, got))
    check(back == b"got %d" % size,
          "and its answer after the client's half-close comes back (%r)"
          % back[:20])
check(tun.stop() == 0, "tunnel sluice exits 0")

# tunnel_timeout is idle time with no bytes either way: an origin pushing
# every 0.5 s to a silent client keeps a 2 s tunnel open (only the
# sending side's timer restarted, and the tunnel was cut); silence closes.
pusher = socket.socket()
pusher.bind(("127.0.0.1", 0))
pusher.listen(4)


def push_messages():
    c, _ = pusher.accept()
    recv_until(c, b"\r\n\r\n")
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
              b"Connection: Upgrade\r\nUpgrade: x\r\n\r\n")
    for i in range(10):
        time.sleep(0.5)
        c.sendall(b"m%d;" % i)
    time.sleep(30)
    c.close()


threading.Thread(target=push_messages, daemon=True).start()
tun2 = Sluice({"ws": {"path_prefix": "/", "stable": "v1", "versions": {
    "v1": (["127.0.0.1:%d" % pusher.getsockname()[1]], 100)}}}, workers=1,
    sluice_extra="tunnel_timeout = 2s\n")
s = socket.create_connection(("127.0.0.1", tun2.port), 5)
s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
          b"Upgrade: x\r\n\r\n")
s.settimeout(20)
got, t_last = b"", time.time()
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
        t_last = time.time()
except OSError:
    pass
closed_after = time.time() - t_last
s.close()
msgs = got.split(b"\r\n\r\n", 1)[-1]
check(msgs == b"".join(b"m%d;" % i for i in range(10)),
      "tunnel_timeout = 2s: 5 s of one-way traffic all arrives (%r)"
      % msgs[-12:])
check(1.5 < closed_after < 10,
      "and the tunnel closes after about 2 s of silence (%.1f s)"
      % closed_after)
check(tun2.stop() == 0, "that sluice exits 0")

# Origin error status is passed through and counted by class.
status, r, body = sl.get("/s?status=503", headers={"Host": "shop.example"})
check(status == 503 and r.getheader("X-Origin") == "blue",
      "an origin's 503 is passed through")

# Absolute-form target: Host taken from the URI.
raw = sl.raw(b"GET http://shop.example/abs?q=1&echo=1 HTTP/1.1\r\n"
             b"Host: ignored.example\r\nConnection: close\r\n\r\n")
check(status_of(raw) == 200 and b"GET /abs?q=1&echo=1 HTTP/1.1" in raw and
      b"Host: shop.example" in raw,
      "absolute-form target is routed by its authority, sent origin-form")
raw = sl.raw(b"GET http://shop.example?q=2&echo=1 HTTP/1.1\r\n"
             b"Host: ignored.example\r\nConnection: close\r\n\r\n")
check(status_of(raw) == 200 and b"GET /?q=2&echo=1 HTTP/1.1" in raw and
      b"Host: shop.example" in raw,
      "an absolute-form target with a query but no path is sent as /?query "
      "(RFC 9112 3.2.1)")

# A client that half-closes right after its request (Connection: close,
# then shutdown) still gets every response: 100 tries, all answered.
answered = sum(status_of(sl.raw(b"GET /hc HTTP/1.1\r\nHost: shop.example\r\n"
                                b"Connection: close\r\n\r\n")) == 200
               for _ in range(100))
check(answered == 100, "half-closing clients get their response (%d of 100)"
      % answered)


def half_closed(reqs, port=sl.port, timeout=10.0):
    """Send REQS (bytes) in one write, half-close, read until sluice closes.
    Returns (responses as (status, headers dict, body), closed by sluice,
    bytes left over after the last whole response)."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.sendall(b"".join(reqs))
    s.shutdown(socket.SHUT_WR)
    raw, closed = b"", False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            raw += chunk
    except OSError:
        pass
    s.close()
    out = []
    while b"\r\n\r\n" in raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if len(rest) < n:
            break
        out.append((int(lines[0].split(" ", 2)[1]), headers, rest[:n]))
        raw = rest[n:]
    return out, closed, raw


def get_request(path):
    return ("GET %s HTTP/1.1\r\nHost: shop.example\r\n\r\n" % path).encode()


# Pipelined requests, then a half-close: every complete request sent
# before the EOF is answered, in order, then sluice closes. Only the last
# response says Connection: close (a client may stop reading at one). The
# first answer is delayed so that the EOF is in before any response.
blue.reset()
out, closed, left = half_closed([get_request("/hc1?echo=1&delay=200"),
                                 get_request("/hc2?echo=1"),
                                 get_request("/hc3?echo=1")])
check(len(out) == 3 and all(st == 200 for st, _, _ in out),
      "3 pipelined requests then half-close: 3 responses (got %d)" % len(out))
check(all(b.startswith(("GET /hc%d?echo=1" % (i + 1)).encode())
          for i, (_, _, b) in enumerate(out)),
      "after a half-close the responses answer their requests in order")
check(closed and left == b"", "sluice closes after the last response")
check(len(out) == 3 and out[2][1].get("connection") == "close" and
      all("connection" not in h for _, h, _ in out[:2]),
      "only the last response before the close says Connection: close")
check(blue.stats()["requests"] == 3, "the origin served the 3 requests")

# The same with the last request cut off mid-head, or in its body: the
# complete ones are answered, then sluice closes; the truncated one is
# neither answered nor forwarded. An origin that records every byte it
# receives shows that not even part of it went out; it answers after
# 200 ms, so that the EOF is in before any response.
received = []
recorder = socket.socket()
recorder.bind(("127.0.0.1", 0))
recorder.listen(8)


def record_and_answer(c):
    """Answer each whole request with its request line; keep every byte."""
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        received.append(d)
        buf += d
        while b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v)
            if len(rest) < n:
                break
            line = head.split(b"\r\n", 1)[0]
            time.sleep(0.2)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(line), line))
            buf = rest[n:]
    c.close()


def recorder_loop():
    while True:
        c, _ = recorder.accept()
        threading.Thread(target=record_and_answer, args=(c,),
                         daemon=True).start()


threading.Thread(target=recorder_loop, daemon=True).start()
rec = Sluice({"rec": {"path_prefix": "/", "stable": "v1", "versions": {
    "v1": (["127.0.0.1:%d" % recorder.getsockname()[1]], 100)}}}, workers=1)

out, closed, left = half_closed([get_request("/t1"), get_request("/t2"),
                                 b"GET /t3 HTTP/1.1\r\nHost: sh"],
                                port=rec.port)
check(len(out) == 2 and out[0][2] == b"GET /t1 HTTP/1.1" and
      out[1][2] == b"GET /t2 HTTP/1.1",
      "2 complete requests and a truncated head then half-close: "
      "2 responses (got %d)" % len(out))
check(closed and left == b"", "then sluice closes, nothing more is sent")
check(len(out) == 2 and out[1][1].get("connection") == "close",
      "the last complete request's response says Connection: close")
out, closed, left = half_closed([
    get_request("/u1"),
    b"POST /u2 HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 10\r\n\r\n"
    b"abcd"], port=rec.port)
check(len(out) == 1 and out[0][2] == b"GET /u1 HTTP/1.1" and closed and
      left == b"",
      "a request with a truncated body after a half-close is not answered")
time.sleep(0.2)  # anything forwarded has reached the recorder by now
sent = b"".join(received)
check(b"/t1 " in sent and b"/t2 " in sent and b"/u1 " in sent,
      "the complete requests reach the origin")
check(b"/t3" not in sent and b"/u2" not in sent,
      "no byte of a truncated request reaches the origin")
check(rec.stop() == 0, "recording sluice exits 0")

# Requests with bodies (Content-Length and chunked) among the pipelined
# ones: all answered, each body reaching the origin intact.
blue.reset()
out, closed, left = half_closed([
    get_request("/b1?echo=1&delay=200"),
    b"POST /b2?echo=1 HTTP/1.1\r\nHost: shop.example\r\n"
    b"Content-Length: 11\r\n\r\nhello world",
    b"POST /b3?echo=1 HTTP/1.1\r\nHost: shop.example\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n4\r\ned!!\r\n0\r\n\r\n",
    get_request("/b4?echo=1")])
check(len(out) == 4 and all(st == 200 for st, _, _ in out),
      "pipelined requests with bodies then half-close: 4 responses (got %d)"
      % len(out))
check(len(out) == 4 and out[0][2].startswith(b"GET /b1?") and
      out[1][2].startswith(b"POST /b2?") and
      out[1][2].endswith(b"\r\n\r\nhello world") and
      out[2][2].startswith(b"POST /b3?") and
      out[2][2].endswith(b"\r\n\r\nchunked!!") and
      out[3][2].startswith(b"GET /b4?"),
      "each request and its body reach the origin, answered in order")
check(closed and left == b"", "sluice closes after the fourth response")

# curl as an external client, with keep-alive across two URLs.
out = subprocess.run(
    ["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
     "-H", "Host: shop.example",
     "http://127.0.0.1:%d/a" % sl.port, "http://127.0.0.1:%d/b" % sl.port],
    capture_output=True, text=True, timeout=20).stdout.split("\n")
check(out[0] == "200 1" and out[1] == "200 0",
      "curl: two requests, one connection (%r)" % out[:2])

# Pipelined requests are timed from their arrival, not from their turn:
# the two behind a 500 ms one waited 500 ms too, and the analyzer must
# see it (they were recorded at about 0.2 ms).
t0 = time.monotonic()
raw = sl.raw(b"GET /pipe/a?delay=500 HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /pipe/b HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /pipe/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             timeout=10, shutdown=False)
took_ms = (time.monotonic() - t0) * 1000
v = sl.ctl("show stats pipe")["versions"]["v"]
check(raw.count(b"HTTP/1.1 200") == 3 and v["requests"] == 3 and
      v["latency_ms"]["p50"] >= 450 and v["latency_ms"]["p50"] <= took_ms,
      "pipelined behind a 500 ms request: the median of 3 is %.1f ms "
      "(from 450 to the client's %.1f ms)" % (v["latency_ms"]["p50"], took_ms))

check(sl.stop() == 0, "sluice exits 0 on SIGTERM")

# The empty line a client may send after a body (RFC 9112 2.2) starts no
# request: behind a response slower than header_timeout it got a 408 at
# once, and its time would have counted in the next request's latency.
slow = Origin("slow", "--latency", "1500")
sl = Sluice({"s": {"stable": "v", "versions": {"v": ([slow.addr], 100)}}},
            sluice_extra="header_timeout = 1s\n")
s = socket.create_connection(("127.0.0.1", sl.port), 10)
s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
          b"abc\r\n")
first = recv_until(s, b"\r\n\r\nslow\n")
# Another empty line of its own while idle, then a request after longer
# than header_timeout (keepalive_timeout is what counts while idle).
time.sleep(0.3)
s.sendall(b"\r\n")
time.sleep(1.2)
s.sendall(b"GET /y?delay=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
second = recv_until(s, b"\r\n\r\nslow\n")
s.close()
check(first.startswith(b"HTTP/1.1 200") and first.endswith(b"slow\n") and
      second.startswith(b"HTTP/1.1 200"),
      "a CRLF after a body, one on its own, then a request after longer "
      "than header_timeout: 200, 200 (%r, %r)" % (first[-30:], second[:40]))
v = sl.ctl("show stats s")["versions"]["v"]
check(v["requests"] == 2 and v["latency_ms"]["p50"] < 500,
      "and the empty lines' wait is not in the next request's latency "
      "(the faster of 2: %.1f ms)" % v["latency_ms"]["p50"])
check(sl.stop() == 0, "sluice exits 0 on SIGTERM")

# An interim 103 is not sent to an HTTP/1.0 client, nor counted in the
# bytes sent to it.
hints = socket.socket()
hints.bind(("127.0.0.1", 0))
hints.listen(4)


def hints_origin():
    while True:
        try:
            conn, _ = hints.accept()
        except OSError:
            return
        recv_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()


threading.Thread(target=hints_origin, daemon=True).start()
sl = Sluice({"h": {"stable": "v", "versions": {
    "v": (["127.0.0.1:%d" % hints.getsockname()[1]], 100)}}})
got = sl.raw(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", shutdown=False)
v = sl.ctl("show stats h")["versions"]["v"]
check(got.startswith(b"HTTP/1.1 200") and b"103" not in got and
      v["sent_bytes"] == len(got),
      "HTTP/1.0 client: no 103, and sent_bytes is what it got (%d, %d)"
      % (v["sent_bytes"], len(got)))
check(sl.stop() == 0, "sluice exits 0 on SIGTERM")
hints.close()

done()
