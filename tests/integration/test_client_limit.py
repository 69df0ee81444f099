#!/usr/bin/env python3
"""max_connections_per_client: one client address cannot hold every
connection slot. Its connections past the limit are answered 429 (with
Connection: close) at their first request, counted and logged; another
address is served meanwhile; a slot its client closes is free again; a
reload changes the limit; 0 (the default) is no limit."""

import os
import signal
import socket

from harness import (Origin, Sluice, admin_metrics, check, check_conf,
                     config, done, free_port, metric_value, wait_until)

origin = Origin("o")
admin = free_port()
port = free_port()
SERVICES = {"s": {"stable": "v1", "versions": {"v1": ([origin.addr], 100)}}}


def extra(limit):
    return "admin = 127.0.0.1:%d\nmax_connections_per_client = %d\n" % (
        admin, limit)


sl = Sluice(SERVICES, sluice_extra=extra(3), port=port)


def open_conn(source="127.0.0.1"):
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def ask(s):
    """One GET on S; the response's status line and head, and whether the
    connection was closed after it."""
    s.sendall(b"GET /x HTTP/1.1\r\nHost: s\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    closed = False
    if b"connection: close" in head.lower():
        s.settimeout(5)
        try:
            closed = s.recv(1) == b""
        except OSError:
            closed = True
    return head.split(b"\r\n")[0], head, body, closed


# The harness's probes of the port (is it up?) are connections too:
# start once sluice has seen them close.
check(wait_until(lambda: metric_value(admin_metrics(admin),
                                      "sluice_connections_active") == 0, 10),
      "no client connection open at the start")
held = [open_conn() for _ in range(3)]
lines = [ask(s)[0] for s in held]
check(all(b" 200 " in ln for ln in lines),
      "three connections from one address are served (%r)" % lines)

extra_conn = open_conn()
line, head, body, closed = ask(extra_conn)
check(b" 429 " in line and b"connection: close" in head.lower() and closed,
      "a fourth from the same address is answered 429 and closed (%r, %r, "
      "closed %s)" % (line, body, closed))
check(b"max_connections_per_client" in body,
      "the answer says which limit (%r)" % body)
extra_conn.close()
# Even a request sluice answers itself: an OPTIONS with Max-Forwards: 0
# kept such a connection open, keep-alive, for as long as it liked.
extra_conn = open_conn()
extra_conn.sendall(b"OPTIONS * HTTP/1.1\r\nHost: s\r\nMax-Forwards: 0\r\n\r\n")
data = b""
extra_conn.settimeout(5)
try:
    while True:
        chunk = extra_conn.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
extra_conn.close()
check(data.startswith(b"HTTP/1.1 429") and b"connection: close" in data.lower(),
      "an OPTIONS with Max-Forwards: 0 past the limit gets 429 and the "
      "connection closes (%r)" % data[:40])

other = open_conn("127.0.0.2")
line = ask(other)[0]
check(b" 200 " in line,
      "another address is served meanwhile (%r)" % line)
other.close()

# The held connections still work: the limit refuses new ones only.
line = ask(held[0])[0]
check(b" 200 " in line, "a held connection is still served (%r)" % line)

# One of them closes: its slot is free again.
held.pop().close()


def served_again():
    s = open_conn()
    try:
        ok = b" 200 " in ask(s)[0]
    finally:
        s.close()
    return ok


check(wait_until(served_again, 10),
      "once one of the three closes, the address gets a connection again")

m = admin_metrics(admin)
refused = metric_value(m, "sluice_client_connection_limit_total")
check(refused is not None and refused >= 1,
      "the 429s are counted in sluice_client_connection_limit_total (%s)"
      % refused)
check("client 127.0.0.1: over max_connections_per_client (3): its requests "
      "answered 429" in sl.logtext(), "and logged, naming the client and the limit")

# A reload lifts the limit (0: none): a fourth connection is served.
for s in held:
    s.close()


def reload(limit):
    before = sl.logtext().count("reloaded ")
    sl.write(config(port, SERVICES, sluice_extra=extra(limit)))
    os.kill(sl.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: sl.logtext().count("reloaded ") > before, 10),
          "reloaded with max_connections_per_client = %d" % limit)


reload(0)
conns = [open_conn() for _ in range(6)]
lines = [ask(s)[0] for s in conns]
check(all(b" 200 " in ln for ln in lines),
      "after a reload to max_connections_per_client = 0, six connections "
      "from one address are served (%r)" % lines)
# Back to 2 while those six are open: they were opened uncounted, so
# they hold no slot, and closing them frees none; new ones count.
reload(2)
two = [open_conn() for _ in range(2)]
lines = [ask(s)[0] for s in two]
third = open_conn()
line = ask(third)[0]
check(all(b" 200 " in ln for ln in lines) and b" 429 " in line,
      "with the limit at 2 again, two new ones are served and a third "
      "refused (%r, %r)" % (lines, line))
third.close()
for s in conns:
    s.close()
line = ask(two[0])[0]
check(b" 200 " in line, "closing the uncounted six takes no slot from the "
      "two (%r)" % line)
s = open_conn()
line = ask(s)[0]
s.close()
check(b" 429 " in line, "and the address is still at its limit (%r)" % line)
for s in two:
    s.close()
check(sl.stop() == 0, "sluice exits 0")

check_conf("[sluice]\nmax_connections_per_client = -1\n[listener:l]\n"
           "bind = 127.0.0.1:1\n[service:s]\nstable = v\n"
           "[version:s/v]\nservers = 127.0.0.1:1\n",
           ":2: [sluice] max_connections_per_client: invalid value '-1': "
           "must be a number from 0 to 1000000", "a negative limit is refused")
origin.stop()
done()
