#!/usr/bin/env python3
"""HTTP/1.1 forwarding: keep-alive, pipelining, chunked both ways, HEAD,
1xx, header rewriting, Upgrade tunnels, HTTP/1.0, routing misses."""

import os
import socket
import subprocess
import threading
import time

from harness import (Origin, Sluice, check, done, pipelined, status_of,
                     TMP)



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
check("Via: 1.0 edge, 1.1 sluice\r\n" in text, "Via is appended")
check("Keep-Alive" not in text and "Connection:" not in text,
      "hop-by-hop Connection and Keep-Alive are removed")
check("X-Secret-Hop" not in text,
      "headers named in Connection are removed")

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

# Upgrade: tunnel to the origin's echo.
s = socket.create_connection(("127.0.0.1", sl.port), 5)
s.sendall(b"GET /ws HTTP/1.1\r\nHost: shop.example\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\n\r\n")
resp = b""
while b"\r\n\r\n" not in resp:
    resp += s.recv(4096)
check(resp.startswith(b"HTTP/1.1 101"), "Upgrade answered 101")
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
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
    deadline = time.time() + 5
    while len(counts) < 1 and time.time() < deadline:
        time.sleep(0.05)
    got = counts.pop() if counts else None
    check(head.startswith(b"HTTP/1.1 101") and got == size,
          "tunnel: %d bytes then close, the origin gets %r" % (size, got))
check(tun.stop() == 0, "tunnel sluice exits 0")

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

# A client that half-closes right after its request (Connection: close,
# then shutdown) still gets every response: 100 tries, all answered.
answered = sum(status_of(sl.raw(b"GET /hc HTTP/1.1\r\nHost: shop.example\r\n"
                                b"Connection: close\r\n\r\n")) == 200
               for _ in range(100))
check(answered == 100, "half-closing clients get their response (%d of 100)"
      % answered)

# curl as an external client, with keep-alive across two URLs.
out = subprocess.run(
    ["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
     "-H", "Host: shop.example",
     "http://127.0.0.1:%d/a" % sl.port, "http://127.0.0.1:%d/b" % sl.port],
    capture_output=True, text=True, timeout=20).stdout.split("\n")
check(out[0] == "200 1" and out[1] == "200 0",
      "curl: two requests, one connection (%r)" % out[:2])

check(sl.stop() == 0, "sluice exits 0 on SIGTERM")
done()
