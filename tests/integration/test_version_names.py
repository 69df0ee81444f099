#!/usr/bin/env python3
"""A pipeline that names every release anew: each reload brings 150 new
version names and drops the last 150, 30 times (4,650 names, more than
the 4,096 sluice can hold at once). A version's counters stay while a
table routes to it and are freed after; its id goes to a new name. Every
reload is taken, the new versions serve, /metrics shows only the
configured ones, and memory stays flat. Before, the 4,097th name ended
sluice (helper-72), and memory grew with every name."""

import http.client
import signal

from harness import (ASAN, Origin, Sluice, admin_metrics, check, config,
                     done, free_port, wait_until)

PER = 150
origin = Origin("names")
port, admin = free_port(), free_port()


def text(release):
    versions = {"r%d-%d" % (release, i): ([origin.addr], 100 if i == 0
                                            else 0) for i in range(PER)}
    return config(port, {"app": {"path_prefix": "/", "stable":
                                 "r%d-0" % release, "expose_version": "yes",
                                 "versions": versions}},
                  sluice_extra="admin = 127.0.0.1:%d\n" % admin, workers=1)


def serving():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/x")
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.getheader("X-Sluice-Version")


sl = Sluice(text=text(0), port=port)
check(serving() == (200, "r0-0"), "the first release serves")
rss = []
for release in range(1, 31):
    sl.write(text(release))
    sl.proc.send_signal(signal.SIGHUP)
    want = (200, "r%d-0" % release)
    check(wait_until(lambda: serving() == want, 20),
          "release %d: taken by a reload, it serves (%r)"
          % (release, serving()))
    m = admin_metrics(admin)
    check('version="r%d-0"' % (release - 1) not in m and
          'version="r%d-1"' % release in m,
          "release %d: /metrics shows its versions, not the last "
          "release's" % release)
    rss.append(sl.rss_kib())
log = open(sl.logpath).read()
check("reload refused" not in log and sl.proc.poll() is None,
      "every reload was taken, sluice runs (%s)"
      % [l for l in log.splitlines() if "refused" in l][:1])
# While one release replaces the other both are live, freeing waits for
# the once-a-second reclaim, and the allocator keeps some of what it gets
# back: memory levels off at a few releases' worth. Keeping every
# release's counters (as before) cost a release's worth per reload: a
# version's time ring is about 240 KiB.
release_kib = PER * 240
check(ASAN or rss[-1] < rss[0] + 8 * release_kib,
      "memory levels off as names come and go (%d KiB after release 1, "
      "%d after release 30; a release's counters are about %d)"
      % (rss[0], rss[-1], release_kib))
check(sl.stop() == 0, "sluice stops cleanly")
done()
