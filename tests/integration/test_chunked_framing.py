#!/usr/bin/env python3
"""Chunked bodies go on in sluice's own framing, both ways: every chunk
size in plain lower-case hex, no leading zeros, no chunk extensions, the
last chunk "0", a response's trailer fields as "name: value" lines. A
next hop that reads a size line or an extension differently from llhttp
(the root of many request-smuggling bugs) is never shown the sender's
framing. A trailer field with an empty value used to cut the response."""

import re
import socket
import threading

from harness import Sluice, check, done, free_port

SIZE_LINE = re.compile(rb"(?:[1-9a-f][0-9a-f]*|0)\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0003;sig=ab\r\nabc\r\n000A\r\n0123456789\r\n"
            b"00;done\r\nX-Empty:\r\nX-Sum:  7 \r\n\r\n")
received = []


def read_chunked(f):
    """Read one chunked body from F; (data, framing ok, trailer lines)."""
    data, ok = b"", True
    while True:
        line = f.readline()
        if not line:
            return data, False, []
        ok &= SIZE_LINE.fullmatch(line) is not None
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        data += f.read(size)
        ok &= f.read(2) == b"\r\n"
    trailers = []
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            return data, ok, trailers
        trailers.append(line)


def origin(lsock):
    """Answer each request with RESPONSE, after reading its chunked body;
    record the body's data and whether its framing was sluice's."""
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        f = conn.makefile("rb")
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = f.readline()
                if not line:
                    break
                head += line
            if not head:
                break
            data, ok, _ = read_chunked(f)
            received.append((data, ok))
            conn.sendall(RESPONSE)
        conn.close()


lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(8)
threading.Thread(target=origin, args=(lsock,), daemon=True).start()
oport = lsock.getsockname()[1]
sl = Sluice({"app": {"path_prefix": "/", "stable": "v1",
                     "versions": {"v1": (["127.0.0.1:%d" % oport], 100)}}},
            workers=1)

c = socket.create_connection(("127.0.0.1", sl.port), timeout=10)
f = c.makefile("rb")
for parts in ([b"0006;name=value\r\nhello \r\n",
               b"00000000000000000000000005\r\nworld\r\n", b"0;last\r\n\r\n"],
              # split inside a size line, an extension and the last line
              [b"00", b"06;na", b"me=value\r\nhel", b"lo \r\n0000000",
               b"5\r\nworld\r\n0", b";last\r\n\r\n"]):
    c.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    for p in parts:
        c.sendall(p)
    status = f.readline()
    head = {}
    while True:
        line = f.readline()
        if line == b"\r\n":
            break
        k, _, v = line.decode().partition(":")
        head[k.strip().lower()] = v.strip()
    data, ok, trailers = read_chunked(f)
    check(status.startswith(b"HTTP/1.1 200"), "the upload is answered")
    check(head.get("transfer-encoding") == "chunked",
          "the answer is relayed chunked")
    check(data == b"abc0123456789", "the client gets the whole body")
    check(ok, "the client gets plain hex sizes and no extensions")
    check(trailers == [b"X-Empty:\r\n", b"X-Sum: 7 \r\n"] or
          trailers == [b"X-Empty:\r\n", b"X-Sum: 7\r\n"],
          "the trailer fields reach the client, the empty one too (got %r)"
          % trailers)
c.close()

check(len(received) == 2, "the origin got both uploads")
for data, ok in received:
    check(data == b"hello world", "the origin gets the whole body")
    check(ok, "the origin gets plain hex sizes and no extensions")
check(sl.stop() == 0, "sluice stops cleanly")
lsock.close()
done()
