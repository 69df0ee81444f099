#!/usr/bin/env python3
"""Sticky weighted routing through the real daemon: split accuracy,
stickiness across requests, workers and restarts, the normative bucket
formula, monotonic canary growth, key sources, the sticky cookie,
overrides with proof, and pins."""

import socket

from harness import (Origin, Sluice, admin_metrics, check, check_conf, config,
                     done, free_port, metric_value)

try:
    import xxhash
except ImportError:
    xxhash = None

blue = Origin("blue")
green = Origin("green")
PORT = free_port()
SEED = "shop-test-seed"


def shop_config(green_weight, extra_service="", extra_sections=""):
    w = "%.2f" % green_weight
    b = "%.2f" % (100 - green_weight)
    return config(PORT, {
        "shop": {
            "path_prefix": "/",
            "stable": "blue",
            "seed": SEED,
            "sticky": "header:X-User-Id cookie:uid query:uid ip",
            "expose_version": "yes",
            "versions": {"blue": ([blue.addr], b),
                         "green": ([green.addr], w)},
        }}) + extra_service + extra_sections


def versions_for(port, keys, batch=500):
    """Version served for each user key, via pipelined batches on many
    connections (so both workers serve some)."""
    out = {}
    for i in range(0, len(keys), batch):
        part = keys[i:i + batch]
        req = b"".join(b"GET /r HTTP/1.1\r\nHost: shop\r\nX-User-Id: %s\r\n\r\n"
                       % k.encode() for k in part)
        s = socket.create_connection(("127.0.0.1", port), 30)
        s.sendall(req)
        f = s.makefile("rb")
        for k in part:
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            n = 0
            ver = None
            while True:
                h = f.readline()
                if h == b"\r\n":
                    break
                name, _, val = h.partition(b":")
                name = name.lower()
                if name == b"content-length":
                    n = int(val)
                elif name == b"x-sluice-version":
                    ver = val.strip().decode()
            f.read(n)
            out[k] = ver
        s.close()
    return out


keys = ["user-%d" % i for i in range(100000)]
sl = Sluice(text=shop_config(10.0), port=PORT)

first = versions_for(PORT, keys)
share = sum(1 for v in first.values() if v == "green") / len(keys)
check(abs(share - 0.10) <= 0.003,
      "100000 users at 10.00%%: %.4f on the canary (10%% +- 0.3%%)" % share)

second = versions_for(PORT, keys, batch=250)
check(first == second,
      "every user gets the same version again (other connections, workers)")

if xxhash is not None:
    seed = xxhash.xxh3_64_intdigest(SEED.encode())
    expect = {k: ("green" if xxhash.xxh3_64_intdigest(k.encode(), seed=seed)
                  % 10000 < 1000 else "blue") for k in keys}
    check(expect == first,
          "versions match XXH3_64bits_withSeed(key, XXH3(seed)) % 10000 "
          "with the canary on buckets [0, 1000)")
else:
    print("note: python3-xxhash missing, formula check skipped")

check(sl.restart() == 0, "sluice stops cleanly for a restart")
third = versions_for(PORT, keys[:20000])
check(all(third[k] == first[k] for k in third),
      "after a restart 20000 users keep their version")

# Monotonic growth: 1 -> 5 -> 25 -> 50 -> 100, restarting with new weights.
mkeys = keys[:20000]
prev = None
for w in (1, 5, 25, 50, 100):
    sl.stop()
    sl.write(shop_config(w))
    sl.start()
    cur = versions_for(PORT, mkeys)
    canary = {k for k, v in cur.items() if v == "green"}
    frac = len(canary) / len(mkeys)
    check(abs(frac - w / 100) <= 0.01,
          "at %d%% the canary has %.3f of users" % (w, frac))
    if prev is not None:
        check(prev <= canary,
              "growing to %d%% moves nobody from the canary back to stable"
              % w)
    prev = canary

# Key sources in order: header, cookie, query, ip; same key, same bucket.
sl.stop()
sl.write(shop_config(50))
sl.start()
mism = 0
c = sl.conn()
for i in range(200):
    k = "src-%d" % i
    got = []
    for hdrs, path in (({"X-User-Id": k}, "/s"), ({"Cookie": "a=1; uid=%s" % k}, "/s"),
                       ({}, "/s?x=1&uid=%s" % k)):
        c.request("GET", path, headers=hdrs)
        r = c.getresponse()
        r.read()
        got.append(r.getheader("X-Sluice-Version"))
    mism += len(set(got)) != 1
check(mism == 0, "a key gives the same version from header, cookie or query")
c.request("GET", "/s", headers={"X-User-Id": "hdr-wins", "Cookie": "uid=other"})
r = c.getresponse()
r.read()
v_hdr = r.getheader("X-Sluice-Version")
c.request("GET", "/s", headers={"X-User-Id": "hdr-wins"})
r = c.getresponse()
r.read()
check(r.getheader("X-Sluice-Version") == v_hdr,
      "the first source present (header) wins over a later one (cookie)")
c.close()
sl.stop()

# Sticky cookie for anonymous users; overrides; pins.
extra = """
[service:anon]
path_prefix = /anon
stable = blue
sticky = header:X-User-Id
sticky_cookie = sb
expose_version = yes
override_secret = s3cret

[version:anon/blue]
servers = %s
weight = 50

[version:anon/green]
servers = %s
weight = 50

[service:cookieonly]
path_prefix = /cookieonly
stable = blue
sticky_cookie = sc

[version:cookieonly/blue]
servers = %s
weight = 100

[service:trusted]
path_prefix = /trusted
stable = blue
expose_version = yes
override_networks = 127.0.0.0/8

[version:trusted/blue]
servers = %s
weight = 100

[version:trusted/green]
servers = %s
weight = 0

[service:fb]
path_prefix = /fb
stable = blue
expose_version = yes
override_secret = s3cret
fallback = stable

[version:fb/blue]
servers = %s
weight = 100

[version:fb/green]
servers = %s
weight = 0

[pin:shop/qa]
match = header:X-Team=qa
version = green

[pin:shop/staff]
match = cookie:email^=staff-
version = blue
""" % (blue.addr, green.addr, blue.addr, blue.addr, green.addr, blue.addr,
       green.addr)
ADMIN = free_port()
sl.write(shop_config(0).replace("[sluice]\n", "[sluice]\nadmin = 127.0.0.1:%d\n"
                                % ADMIN, 1) + extra)
sl.start()

status, r, body = sl.get("/anon/x")
cookie = r.getheader("Set-Cookie") or ""
check(cookie.startswith("sb=") and "Path=/" in cookie,
      "an anonymous user gets a sticky cookie holding a bucket (%s)"
      % cookie.split(";")[0])
bucket = int(cookie.split(";")[0].split("=")[1])
want = "green" if bucket < 5000 else "blue"
same = set()
for i in range(20):
    status, r, body = sl.get("/anon/x", headers={"Cookie": "sb=%d" % bucket})
    same.add(r.getheader("X-Sluice-Version"))
    check(r.getheader("Set-Cookie") is None, "no new cookie once it is set") if i == 0 else None
check(same == {want}, "the cookie's bucket %d keeps the user on %s" % (bucket, want))

status, r, body = sl.get("/anon/x?echo=1", headers={
    "X-User-Id": "u1", "X-Sluice-Version": "green", "X-Sluice-Secret": "s3cret"})
check(r.getheader("X-Sluice-Version") == "green",
      "override header with the right secret forces the version")
check(b"s3cret" not in body, "the override secret is not forwarded to the origin")
check("override_secret is 6 characters: a client that guesses it picks its "
      "version" in sl.logtext(), "a short override secret is warned of")
# Nor echoed by a TRACE sluice answers (a front proxy may add the secret).
status, r, body = sl.get("/anon/x", method="TRACE", headers={
    "Max-Forwards": "0", "X-Sluice-Secret": "s3cret", "X-Seen": "yes"})
check(status == 200 and b"X-Seen: yes" in body and b"s3cret" not in body,
      "a TRACE with Max-Forwards: 0 does not echo the override secret (%r)"
      % body[:200])
forced = set()
for i in range(40):
    status, r, body = sl.get("/anon/x", headers={
        "X-User-Id": "w%d" % i, "X-Sluice-Version": "green",
        "X-Sluice-Secret": "wrong"})
    forced.add(r.getheader("X-Sluice-Version"))
check(forced == {"blue", "green"},
      "override with a wrong secret is ignored (users keep their split)")
status, r, body = sl.get("/anon/x?echo=1", headers={
    "X-User-Id": "u1", "X-Sluice-Version": "green",
    "X-Sluice-Secret": "wrong"})
check(b"x-sluice-version" not in body.lower(),
      "an override that did not prove itself is not forwarded: the origin "
      "must not take it for the version asked (%r)" % body[:300])
status, r, body = sl.get("/anon/x?echo=1", headers={
    "X-User-Id": "u1", "X-Sluice-Version": "green",
    "X-Sluice-Secret": "s3cret"})
check(b"x-sluice-version: green" in body.lower(),
      "a proven one is (the origin may want to know)")
# Proven, but its version has no server and the stable one serves
# (fallback = stable): that origin must not read it as its version.
check(sl.ctl("set server fb green %s maint" % green.addr)["ok"],
      "fb: green's only server in maintenance")
status, r, body = sl.get("/fb/x?echo=1", headers={
    "X-Sluice-Version": "green", "X-Sluice-Secret": "s3cret"})
check(r.getheader("X-Sluice-Version") == "blue" and
      b"x-sluice-version" not in body.lower(),
      "a proven override that fell back to the stable version is not "
      "forwarded to it (%s, %r)" % (r.getheader("X-Sluice-Version"),
                                    body[:200]))

status, r, body = sl.get("/cookieonly/x")
check((r.getheader("Set-Cookie") or "").startswith("sc="),
      "sticky_cookie without sticky: the cookie is the source, not the "
      "client address (%s)" % r.getheader("Set-Cookie"))

status, r, body = sl.get("/trusted/x", headers={"X-Sluice-Version": "green"})
check(r.getheader("X-Sluice-Version") == "green",
      "override from a trusted network needs no secret")
status, r, body = sl.get("/trusted/x", headers={"X-Sluice-Version": "nope"})
check(status == 200 and r.getheader("X-Sluice-Version") == "blue",
      "override naming an unknown version is ignored")

status, r, body = sl.get("/pin", headers={"X-Team": "qa", "X-User-Id": "x"})
check(r.getheader("X-Sluice-Version") == "green",
      "pin: X-Team=qa is pinned to green at 0% weight")
status, r, body = sl.get("/pin", headers={"Cookie": "email=staff-ann"})
check(r.getheader("X-Sluice-Version") == "blue",
      "pin: cookie prefix match pins staff to blue")
status, r, body = sl.get("/", headers={"X-User-Id": "plain"})
check(r.getheader("X-Sluice-Version") == "blue",
      "users matching no pin follow the weights (0% green)")

# What the overrides and pins above did is counted: an operator sees the
# traffic that did not follow the weights, and clients guessing the secret.
m = admin_metrics(ADMIN)
rule = "sluice_routed_requests_by_rule_total"
for svc, ver, by, want in (("anon", "green", "override", 2),
                           ("fb", "green", "override", 1),
                           ("trusted", "green", "override", 1),
                           ("shop", "green", "pin", 1),
                           ("shop", "blue", "pin", 1),
                           ("shop", "blue", "override", 0),
                           ("anon", "blue", "override", 0)):
    got = metric_value(m, rule, service=svc, version=ver, rule=by)
    check(got == want, "%s{service=%s,version=%s,rule=%s} is %s (%s)"
          % (rule, svc, ver, by, want, got))
got = metric_value(m, "sluice_override_unproven_total")
check(got == 41, "the 41 override headers with a wrong secret are counted as "
      "unproven (%s)" % got)
got = metric_value(m, "sluice_override_no_version_total")
check(got == 1, "the proven override naming no version is counted (%s)" % got)

check(sl.stop() == 0, "sluice exits 0")
check_conf("[listener:l]\nbind = 127.0.0.1:1\n[service:s]\nstable = v\n"
           "sticky = header:X-User-Id ip\nsticky_cookie = sb\n"
           "[version:s/v]\nservers = 127.0.0.1:1\n",
           ":6: [service:s] sticky_cookie: never used, since 'ip' in sticky "
           "gives every request a key", "sticky_cookie with ip in sticky")
check_conf("[listener:l]\nbind = 127.0.0.1:1\n[service:s]\nstable = v\n"
           "sticky = header:X-User-Id cookie:sb\nsticky_cookie = sb\n"
           "[version:s/v]\nservers = 127.0.0.1:1\n",
           ":6: [service:s] sticky_cookie: 'sb' is also cookie:sb in sticky, "
           "a user key; the sticky cookie holds a bucket",
           "sticky_cookie named like a cookie: key source")

# An IPv4 client reaching a dual-stack listener (IPv4-mapped IPv6) is the
# same user as on an IPv4 listener: same 'ip' key, same X-Forwarded-For.
try:
    probe = socket.socket(socket.AF_INET6)
    probe.bind(("::ffff:127.0.0.1", 0))
    probe.close()
    mapped_ok = True
except OSError:
    mapped_ok = False
if mapped_ok:
    echo = Origin("echo", "--echo")
    port4, port6 = free_port(), free_port()
    text = config(port4, {"m": {
        "stable": "blue", "sticky": "ip", "seed": "mapped",
        "expose_version": "yes",
        "versions": {"blue": ([echo.addr], 50),
                     "green": ([echo.addr], 50)}}}, workers=1)
    text = text.replace("[service:m]", "[listener:mapped]\n"
                        "bind = [::ffff:127.0.0.1]:%d\n\n[service:m]" % port6)
    sl = Sluice(text=text, port=port4)
    seen = []
    for port in (port4, port6):
        data = sl.raw(b"GET / HTTP/1.1\r\nHost: m\r\nConnection: close"
                      b"\r\n\r\n", timeout=10, shutdown=False, port=port)
        ver = [ln for ln in data.split(b"\r\n")
               if ln.lower().startswith(b"x-sluice-version:")]
        xff = [ln for ln in data.split(b"\r\n")
               if ln.lower().startswith(b"x-forwarded-for:")]
        seen.append((ver, xff))
    check(seen[0][1] == seen[1][1] == [b"X-Forwarded-For: 127.0.0.1"],
          "X-Forwarded-For is 127.0.0.1 on the IPv4 and the dual-stack "
          "listener alike (%r)" % [x for _, x in seen])
    check(seen[0][0] == seen[1][0] and len(seen[0][0]) == 1,
          "sticky ip: one IPv4 client, one version on both listeners (%r)"
          % [v for v, _ in seen])
    check(sl.stop() == 0, "sluice exits 0")

# Dot-segments: "/pub/../internal/x" is "/internal/x" to an origin that
# resolves them, so sluice routes (and forwards) the resolved path, or a
# service's path_prefix would not hold. normalize_path = no keeps it raw.
pub, internal = Origin("pub", "--echo"), Origin("internal", "--echo")


def status_and_origin(data):
    origin = [ln[10:].decode() for ln in data.split(b"\r\n")
              if ln.startswith(b"X-Origin: ")]
    return (int(data[9:12]), origin[0] if origin else None)


for normalize in ("yes", "no"):
    port = free_port()
    text = config(port, {
        "pub": {"path_prefix": "/", "stable": "v1",
                "versions": {"v1": ([pub.addr], 100)}},
        "internal": {"path_prefix": "/internal/", "stable": "v1",
                     "versions": {"v1": ([internal.addr], 100)}},
        "named": {"hosts": "Named.Example.", "stable": "v1",
                  "versions": {"v1": ([internal.addr], 100)}}},
        "normalize_path = %s\n" % normalize, workers=1)
    sl = Sluice(text=text, port=port)
    for target, resolved in ((b"/pub/../internal/x?a=/../b",
                              b"/internal/x?a=/../b"),
                             (b"/pub/%2E%2e/internal/x", b"/internal/x"),
                             (b"/internal/./x/..", b"/internal/")):
        data = sl.raw(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n"
                      b"Connection: close\r\n\r\n", shutdown=False)
        line = [ln for ln in data.split(b"\r\n") if ln.startswith(b"GET ")]
        if normalize == "yes":
            check(line == [b"GET " + resolved + b" HTTP/1.1"] and
                  b"X-Origin: internal" in data,
                  "normalize_path = yes: %s goes to the internal service as "
                  "%s (%r)" % (target.decode(), resolved.decode(), line))
        elif not target.startswith(b"/internal/"):
            check(line == [b"GET " + target + b" HTTP/1.1"] and
                  b"X-Origin: pub" in data,
                  "normalize_path = no: %s goes to / as it is (%r)"
                  % (target.decode(), line))
    # A host name's root dot: "named.example." is "named.example".
    got = [status_and_origin(sl.raw(b"GET / HTTP/1.1\r\nHost: " + h +
                                    b"\r\nConnection: close\r\n\r\n",
                                    shutdown=False))
           for h in (b"named.example.", b"NAMED.example.:80",
                     b"named.example", b"other.example.")]
    check(got == [(200, "internal")] * 3 + [(200, "pub")],
          "Host with and without the root's dot routes alike (%r)" % got)
    check(sl.stop() == 0, "sluice exits 0")

# 60 services (an index finds a request's, not a scan): each host its
# own, 20 of them with a longer prefix besides, and a catch-all. Every
# request reaches the service the rules say, as with a few services.
services = {"all": {"path_prefix": "/", "expose_version": "yes",
                    "stable": "all", "versions": {"all": ([pub.addr], 100)}}}
for i in range(40):
    services["h%d" % i] = {
        "hosts": "h%d.example" % i, "path_prefix": "/", "stable": "v%d" % i,
        "expose_version": "yes", "versions": {"v%d" % i: ([pub.addr], 100)}}
for i in range(0, 40, 2):
    services["h%dapi" % i] = {
        "hosts": "h%d.example" % i, "path_prefix": "/api",
        "stable": "a%d" % i, "expose_version": "yes",
        "versions": {"a%d" % i: ([internal.addr], 100)}}
many = Sluice(services)
want = {}
for i in range(40):
    want[(b"h%d.example" % i, b"/x")] = "v%d" % i
    want[(b"H%d.EXAMPLE:80" % i, b"/api/1")] = ("a%d" % i if i % 2 == 0
                                                else "v%d" % i)
want[(b"other.example", b"/api/1")] = "all"
got = {}
for (host, path) in want:
    data = many.raw(b"GET " + path + b" HTTP/1.1\r\nHost: " + host +
                    b"\r\nConnection: close\r\n\r\n", shutdown=False)
    line = [ln for ln in data.split(b"\r\n")
            if ln.lower().startswith(b"x-sluice-version:")]
    got[(host, path)] = line[0].split(b":", 1)[1].strip().decode() \
        if line else None
wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
check(not wrong, "60 services: %d requests each reach the service the "
      "rules say (wrong: %r)" % (len(want), list(wrong.items())[:3]))
check(many.stop() == 0, "sluice exits 0")
pub.stop()
internal.stop()

done()
