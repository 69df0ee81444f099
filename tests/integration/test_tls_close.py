#!/usr/bin/env python3
"""TLS streams end cleanly: nothing encrypted is lost at a close, and a
close_notify is never lost while reading is paused.

Over TLS, sluice encrypts up to 64 KiB ahead of the socket (proxy/io.c), so
"the output is empty" no longer means "everything was sent"; and a
close_notify is consumed into the SSL, so it cannot wait on the socket like
a FIN. Both were bugs of the first version of io.c's TLS mode, found in
review; these tests failed on it."""

import os
import socket
import ssl
import shutil
import subprocess
import time

from harness import Origin, Sluice, TMP, admin_metrics, check, done, \
    free_port, metric_value, skip, wait_until
from tlskit import PKI, client_context, memory_tls, read_tls

if shutil.which("openssl") is None:
    skip("the openssl command is not installed")

pki = PKI(os.path.join(TMP, "pki"))
pki.make_ca()
pki.make_cert("a", "a.test", ["DNS:a.test", "DNS:localhost", "IP:127.0.0.1"])

plain = Origin("plain")
port, tls_port, admin_port = free_port(), free_port(), free_port()
CONFIG = """
[sluice]
workers = 1
control_socket = {tmp}/ctl-{port}.sock
state_file = {tmp}/state-{port}.ini
header_timeout = 8s
keepalive_timeout = 20s
admin = 127.0.0.1:{admin}

[listener:main]
bind = 127.0.0.1:{port}

[listener:tls]
bind = 127.0.0.1:{tls_port}
tls_cert = {pki}/a.pem
tls_key = {pki}/a.key

[service:shop]
path_prefix = /
stable = v1

[version:shop/v1]
servers = {plain}
"""
sl = Sluice(text=CONFIG.format(tmp=TMP, port=port, tls_port=tls_port,
                               pki=pki.dir, plain=plain.addr,
                               admin=admin_port), port=port)
CTX = client_context(pki.path("ca.pem"))


def small_rcvbuf_conn(port_):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(10)
    s.connect(("127.0.0.1", port_))
    return s


def body_len(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    return len(body)


def ask(tls, req, pause, halfclose):
    """Send REQ, sleep PAUSE without reading (the answer fills sluice's
    buffers), optionally half-close, then read everything."""
    s = small_rcvbuf_conn(tls_port if tls else port)
    if tls:
        obj, inc, out = memory_tls(CTX, s, "a.test")
        obj.write(req)
        s.sendall(out.read())
    else:
        s.sendall(req)
    time.sleep(pause)
    if halfclose:
        s.shutdown(socket.SHUT_WR)
    if tls:
        data, clean = read_tls(s, obj, inc)
    else:
        data, clean = b"", True
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    s.close()
    return data, clean



def capacity():
    """Ciphertext bytes sluice can push into a connection to a client with
    a 2 KiB receive buffer that does not read (its send queue plus our
    receive queue), as ss shows them."""
    s = small_rcvbuf_conn(tls_port)
    obj, inc, out = memory_tls(CTX, s, "a.test")
    obj.write(b"GET /cap?size=64000000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    s.sendall(out.read())
    time.sleep(1.5)
    lp = s.getsockname()[1]
    r = subprocess.run(["ss", "-tnH", "sport = :%d or dport = :%d"
                        % (lp, lp)], capture_output=True, text=True).stdout
    s.close()
    return sum(int(line.split()[1]) + int(line.split()[2])
               for line in r.splitlines())


# --- a close_notify (no FIN) read together with pipelined requests that
# made sluice stop reading (input above its high-water mark): the EOF must
# still be seen once reading resumes, and the connection closed right after
# the last answer, not at keepalive_timeout ---
s = socket.create_connection(("127.0.0.1", tls_port), 10)
obj, inc, out = memory_tls(CTX, s, "a.test")
obj.write(b"GET /b0?delay=1000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
s.sendall(out.read())
time.sleep(0.2)
pad = b"X-Pad: " + b"p" * 7900 + b"\r\n"
n = 38  # about 300 KB: above the client side's 256 KiB high-water mark
for i in range(n):
    obj.write(b"GET /b%d HTTP/1.1\r\nHost: a.test\r\n%s\r\n" % (i + 1, pad))
try:
    obj.unwrap()  # close_notify, no FIN
except ssl.SSLWantReadError:
    pass
s.sendall(out.read())
s.settimeout(30)
stamp = {}
answers, ended = read_tls(s, obj, inc,
                          on_data=lambda _: stamp.__setitem__("last", time.time()))
end = time.time()
last = stamp.get("last")
s.close()
got_n = answers.count(b"HTTP/1.1 200")
check(got_n == n + 1, "pipelined requests + close_notify: all %d answers "
      "(%d)" % (n + 1, got_n))
# keepalive_timeout is 20 s: a lost close_notify waits for it.
check(last is not None and end - last < 10,
      "close_notify read together with requests that filled the input: "
      "closed after the last answer (%.1f s later, not at "
      "keepalive_timeout)" % ((end - last) if last else -1))



def active():
    return metric_value(admin_metrics(admin_port),
                        "sluice_connections_active")


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


# --- a reset behind part of a TLS record makes no event of its own (epoll
# reports it without the "closed" flag): the connection must be closed at
# once, not held until header_timeout (8 s) ---
def half_client_hello():
    s = socket.create_connection(("127.0.0.1", tls_port), 10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = CTX.wrap_bio(inc, out, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    s.sendall(hello[:len(hello) // 2])
    return s


def half_record():
    s = socket.create_connection(("127.0.0.1", tls_port), 10)
    obj, inc, out = memory_tls(CTX, s, "a.test")
    obj.write(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    s.sendall(out.read()[:-5])
    return s


def half_head():
    s = socket.create_connection(("127.0.0.1", tls_port), 10)
    obj, inc, out = memory_tls(CTX, s, "a.test")
    obj.write(b"GET /x HTTP/1.1\r\nHost: a.te")
    s.sendall(out.read())
    return s


check(wait_until(lambda: active() == 0, 5), "no connection open before")
for name, make in (("half a ClientHello", half_client_hello),
                   ("half a record", half_record),
                   ("a record with half a request head", half_head)):
    t0 = time.time()
    for _ in range(5):
        reset(make())  # the reset right behind the bytes
    closed = wait_until(lambda: active() == 0, 6)
    check(closed and time.time() - t0 < 4,
          "TLS, %s then a reset: closed at once, not at header_timeout "
          "(%.1f s, %r open)" % (name, time.time() - t0, active()))

cap = capacity()
plain_cap = cap * 16336 // 16358  # records of one 16336-byte chain
print("# capacity %d ciphertext bytes, ~%d plaintext" % (cap, plain_cap))
HEAD = 200  # about the response head sluice sends

# --- a keep-alive answer whose last 10-60 KiB are encrypted but not
# sent yet (the socket is full); the client then half-closes and reads ---
for extra in (10000, 30000, 50000):
    size = plain_cap - HEAD + extra
    req = b"GET /a?size=%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % size
    data, clean = ask(True, req, 1.0, True)
    check(body_len(data) == size and clean,
          "TLS: %d-byte answer, socket full, client half-closes then "
          "reads: all of it and close_notify (got %d, short by %d, clean %s)"
          % (size, body_len(data), size - body_len(data), clean))

# --- the same with a close-delimited answer (the origin's FIN ends
# it while the tail is encrypted but unsent) ---
for extra in (10000, 30000, 50000):
    size = plain_cap - HEAD + extra
    req = (b"GET /b?size=%d&eof=1 HTTP/1.1\r\nHost: a.test\r\n\r\n" % size)
    data, clean = ask(True, req, 1.0, False)
    check(body_len(data) == size and clean,
          "TLS: %d-byte close-delimited answer, socket full: all of it and "
          "close_notify (got %d, short by %d, clean %s)"
          % (size, body_len(data), size - body_len(data), clean))

done()
