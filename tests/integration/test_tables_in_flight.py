#!/usr/bin/env python3
"""More routing tables in flight on one worker than it holds without
allocating (16): every change publishes a table, and a request keeps the
one it started with. The 17th such request's table was not held: once
the worker moved on and the 16 older requests ended, the control thread
freed it under the running request (a use-after-free, found by
ThreadSanitizer; AddressSanitizer aborts on it). Now the worker's list of
held tables grows: the request ends normally, on the routing it started
with, and every retired table is freed once nothing uses it."""

import socket
import time

from harness import (Origin, Sluice, admin_metrics, check, done, free_port,
                     metric_value, wait_until)

fast, fast2 = Origin("fast"), Origin("fast2")
slow = Origin("slow", "--latency", "3000")
slower = Origin("slower", "--latency", "6000")
admin = free_port()
sl = Sluice({
    "shop": {"path_prefix": "/", "stable": "v1",
             "versions": {"v1": ([fast.addr], 50), "v2": ([fast2.addr], 50)}},
    "slow": {"path_prefix": "/slow/", "stable": "v1",
             "versions": {"v1": ([slow.addr], 100)}},
    "slower": {"path_prefix": "/slower/", "stable": "v1",
               "versions": {"v1": ([slower.addr], 100)}},
}, workers=1, sluice_extra="admin = 127.0.0.1:%d\n" % admin)


def publish(i):
    return sl.ctl("set weights shop v1=%d v2=%d" % (10 + i, 90 - i))["ok"]


def send(path):
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=30)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


held = []
published = 0
for i in range(16):
    published += publish(i)
    held.append(send("/slow/%d" % i))
    time.sleep(0.1)  # the worker takes it (and its table) before the next
published += publish(16)
a = send("/slower/a")  # the 17th table in flight on this worker
time.sleep(0.3)
published += publish(17)
b = answer(send("/b"))
check(published == 18 and b.startswith(b"HTTP/1.1 200"),
      "18 changes published, and a new request is served meanwhile (%r)"
      % b[:40])
answers = [answer(s) for s in held]
check(all(x.startswith(b"HTTP/1.1 200") for x in answers),
      "the 16 slow requests are answered (%r)"
      % sorted(set(x[:15] for x in answers)))
time.sleep(2)  # the control thread frees retired tables once a second
data = answer(a)
check(data.startswith(b"HTTP/1.1 200") and b"X-Origin: slower" in data,
      "the 17th request, still running while the older tables were freed, "
      "is answered by its origin (%r)" % data[:60])
check(sl.proc.poll() is None, "sluice is still running")
check(wait_until(lambda: metric_value(admin_metrics(admin),
                                      "sluice_routing_tables_retired") == 0,
                 10),
      "and every retired table is freed once no request uses it")
check(sl.stop() == 0, "sluice exits 0")
done()
