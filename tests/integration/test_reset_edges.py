#!/usr/bin/env python3
"""A reset that arrives in the same read as a side's last bytes makes no
event of its own (libevent reports EPOLLHUP/EPOLLERR as a plain read), so
sluice must look for it. Found by helper-72:
- an upgraded tunnel whose origin sends bytes and resets: the client was
  held until tunnel_timeout; likewise the origin, when the client reset;
- a TLS origin that reads a request and resets, its TLS 1.3 session
  tickets in the same read: the client got a 504 at response_timeout
  instead of a 502 at once (counted as a timeout, not a reset).
Each now ends at once."""

import os
import socket
import ssl
import struct
import threading
import time

from harness import (TMP, Sluice, admin_metrics, check, config, done,
                     free_port, metric_value)
import tlskit

RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends a reset
HOLD = 30  # tunnel_timeout and response_timeout: what "at once" beats


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s, s.getsockname()[1]


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    return buf


origin_saw_end = []


def tunnel_origin(lsock):
    """Answer 101; then, for /echo-reset, echo what comes and reset; for
    /wait, time how long until the peer's end reaches it."""
    while True:
        try:
            s, _ = lsock.accept()
        except OSError:
            return
        head = read_head(s)
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                  b"\r\nConnection: Upgrade\r\n\r\n")
        if head.startswith(b"GET /t/echo-reset"):
            data = s.recv(4096)
            s.sendall(data)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
            s.close()
            continue
        t0 = time.time()
        s.settimeout(HOLD + 10)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        origin_saw_end.append(time.time() - t0)
        s.close()


def tls_origin(lsock, ctx):
    """Read a request over TLS, then reset without a byte of answer."""
    while True:
        try:
            raw, _ = lsock.accept()
        except OSError:
            return
        s = raw
        try:
            s = ctx.wrap_socket(raw, server_side=True)
            read_head(s)
        except (OSError, ssl.SSLError):
            pass
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        s.close()


tun_sock, tun_port = listener()
threading.Thread(target=tunnel_origin, args=(tun_sock,), daemon=True).start()
pki = tlskit.PKI(os.path.join(TMP, "pki-reset"))
pki.make_ca()
pki.make_cert("origin", "127.0.0.1", ["IP:127.0.0.1"])
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(pki.path("origin.pem"), pki.path("origin.key"))
tls_sock, tls_port = listener()
threading.Thread(target=tls_origin, args=(tls_sock, sctx),
                 daemon=True).start()

port, admin = free_port(), free_port()
text = config(port, {
    "tun": {"path_prefix": "/t/", "stable": "v1",
            "versions": {"v1": (["127.0.0.1:%d" % tun_port], 100)}},
    "tls": {"path_prefix": "/s/", "stable": "v1", "tls": "yes",
            "tls_ca": pki.path("ca.pem"), "eject_after": "0",
            "versions": {"v1": (["127.0.0.1:%d" % tls_port], 100)}}},
    sluice_extra="admin = 127.0.0.1:%d\nretries = 0\ntunnel_timeout = %ds\n"
    "response_timeout = %ds\n" % (admin, HOLD, HOLD), workers=1)
sl = Sluice(text=text, port=port)


def upgrade(path):
    s = socket.create_connection(("127.0.0.1", port), timeout=HOLD + 10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
               "Upgrade: websocket\r\n\r\n" % path).encode())
    head = read_head(s)
    check(head.startswith(b"HTTP/1.1 101"), "%s: the tunnel opens" % path)
    return s


# The origin echoes and resets: the client's side ends at once.
ends = []
for i in range(5):
    s = upgrade("/t/echo-reset")
    s.sendall(b"hello")
    got, t0 = b"", time.time()
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    ends.append(time.time() - t0)
    s.close()
    check(got == b"hello", "the echo before the reset reaches the client")
check(max(ends) < 5, "the origin's reset ends the client's side at once "
      "(%s s; tunnel_timeout is %d s)" % (["%.1f" % e for e in ends], HOLD))

# The client sends and resets: the origin's side ends at once.
for i in range(5):
    s = upgrade("/t/wait")
    s.sendall(b"bye")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    s.close()
deadline = time.time() + HOLD + 15
while len(origin_saw_end) < 5 and time.time() < deadline:
    time.sleep(0.1)
check(len(origin_saw_end) == 5 and max(origin_saw_end) < 5,
      "the client's reset ends the origin's side at once (%s s)"
      % ["%.1f" % e for e in origin_saw_end])

# A TLS origin that resets after reading the request: 502 at once.
answers = []
for i in range(5):
    c = socket.create_connection(("127.0.0.1", port), timeout=HOLD + 10)
    t0 = time.time()
    c.sendall(b"GET /s/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = read_head(c)
    answers.append((head[9:12].decode(), round(time.time() - t0, 1)))
    c.close()
check(all(code == "502" and t < 5 for code, t in answers),
      "a TLS origin's reset after the request: 502 at once, not 504 at "
      "response_timeout (%r)" % answers)
m = admin_metrics(admin)
check(metric_value(m, "sluice_upstream_errors_total", service="tls",
                   version="v1", kind="reset") == 5 and
      metric_value(m, "sluice_upstream_errors_total", service="tls",
                   version="v1", kind="response_timeout") == 0,
      "counted as resets, not timeouts")
check(sl.stop() == 0, "sluice stops cleanly")
tun_sock.close()
tls_sock.close()
done()
