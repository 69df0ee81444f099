#!/usr/bin/env python3
"""100 MB bodies each way stream through sluice with bounded memory:
backpressure keeps the process from buffering them, and a client that
never reads holds little."""

import socket
import threading
import time

from harness import ASAN, Origin, Sluice, check, done, wait_until

SIZE = 100 * 1024 * 1024
origin = Origin("big")
sl = Sluice({"big": {"path_prefix": "/", "stable": "v1",
                     "versions": {"v1": ([origin.addr], 100)}}},
            workers=1)

rss_before = sl.rss_kib()
peak = [rss_before]
stop = threading.Event()


def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], sl.rss_kib())
        time.sleep(0.05)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()

# Download: read slowly at first so that backpressure must engage.
s = socket.create_connection(("127.0.0.1", sl.port), 30)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.sendall(b"GET /dl?size=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
          % SIZE)
got = 0
head = b""
time.sleep(1.0)  # the origin is much faster than this reader
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    if not head:
        head, _, chunk = chunk.partition(b"\r\n\r\n")
        head = head or b"?"
    got += len(chunk)
s.close()
check(head.startswith(b"HTTP/1.1 200"), "100 MB download answered 200")
check(got == SIZE, "100 MB download arrives whole (%d bytes)" % got)

# Upload: 100 MB with Content-Length; the origin counts what it received.
s = socket.create_connection(("127.0.0.1", sl.port), 60)
s.sendall(b"POST /ul HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
          b"Connection: close\r\n\r\n" % SIZE)
block = b"x" * (1 << 20)
for _ in range(SIZE // len(block)):
    s.sendall(block)
resp = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    resp += chunk
s.close()
check(resp.startswith(b"HTTP/1.1 200"), "100 MB upload answered 200")
check(b"X-Received-Bytes: %d" % SIZE in resp,
      "the origin received all 100 MB of the upload")

# Chunked upload of 100 MB.
s = socket.create_connection(("127.0.0.1", sl.port), 60)
s.sendall(b"POST /ulc HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          b"Connection: close\r\n\r\n")
frame = b"%x\r\n" % len(block) + block + b"\r\n"
for _ in range(SIZE // len(block)):
    s.sendall(frame)
s.sendall(b"0\r\n\r\n")
resp = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    resp += chunk
s.close()
check(b"X-Received-Bytes: %d" % SIZE in resp,
      "a 100 MB chunked upload reaches the origin whole")

# A client that pipelines requests and does not read its answers: sluice
# takes no new request while answers pile up unread (it held them all: one
# connection grew it by 480 MB), and every answer arrives, in order, once
# the client reads.
N, BIG = 1500, 40000
origin.reset()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(60)
s.connect(("127.0.0.1", sl.port))
s.sendall(b"".join(b"GET /p%d?size=%d HTTP/1.1\r\nHost: a\r\n\r\n"
                   % (i, BIG) for i in range(N)))
last = [-1]


def settled():
    n = origin.stats()["requests"]
    if n == last[0]:
        return True
    last[0] = n
    time.sleep(0.5)
    return False


wait_until(settled, 30)
served = origin.stats()["requests"]
check(served < N // 2,
      "a client that does not read: %d of %d pipelined requests taken "
      "(the rest wait, unread, in the socket)" % (served, N))
got, ends = b"", 0
while ends < N:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    got += chunk
    ends = got.count(b"HTTP/1.1 200 ")
s.close()
check(ends == N and origin.stats()["requests"] == N,
      "once it reads, all %d answers arrive (%d)" % (N, ends))

stop.set()
sampler.join()
growth = peak[0] - rss_before
if ASAN:
    print("note: ASan build, RSS growth (%d KiB) not asserted: the "
          "quarantine keeps freed buffers" % growth)
else:
    check(growth < 16 * 1024,
          "RSS grew by %d KiB while streaming 300 MB (bounded by buffers)"
          % growth)

# Clients that ask for a large answer and never read it: each holds what
# backpressure lets through (64 KiB of output and a read), not a quarter
# of a MiB more (40 of them cost 12.8 MiB, 320 KiB each).
time.sleep(0.5)
rss0 = sl.rss_kib()
stalled = []
for _ in range(40):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", sl.port))
    s.sendall(b"GET /dl?size=20000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    stalled.append(s)
time.sleep(2)
grew = sl.rss_kib() - rss0
for s in stalled:
    s.close()
if not ASAN:  # ASan's allocator keeps freed memory in quarantine
    check(grew < 40 * 200,
          "40 clients that never read a 20 MB answer: sluice grew by %d KiB "
          "(%d each)" % (grew, grew // 40))
check(sl.stop() == 0, "sluice exits 0 on SIGTERM")
done()
