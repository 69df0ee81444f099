#!/usr/bin/env python3
"""Conformance: malformed and ambiguous requests (request smuggling).

A table of raw requests that two HTTP parsers could read two ways, or that
RFC 9112/9110 say a server must refuse. Each one is sent on a fresh TCP
connection to a sluice in front of an sl-origin, and for each we check:

  * the status sluice answers (400, 417, 431, 501 or 505, whatever the RFC
    and DESIGN.md "Reliability and security rules" call for; where the RFC
    leaves a choice, the set of allowed statuses, all >= 400);
  * sluice closes the connection after refusing (it cannot know where the
    next request would start);
  * the request never reached the origin: the sl-origin request counter
    (/__origin/stats "requests") did not move, and, for errors in the head,
    not a single byte reached the origin. The origin sits behind a small
    byte-counting TCP relay so that a request the origin's own parser would
    refuse (and so never count) is still caught if sluice forwarded it.

Errors in a chunked body (bad chunk sizes and the like) can only be seen
after the head: for those, sluice may already have sent the head upstream,
so only "the origin never saw a complete request" is asserted.

A second, shorter table holds requests that merely look suspicious but are
valid per the RFC (OWS before a field value, "Chunked" in any case, BWS in
a chunk extension...): sluice may refuse them, but if it forwards them the
origin must see exactly one request with exactly the body the client sent.

Every case is run even if an earlier one fails, so a single run lists every
non-conformance; the script exits non-zero if any case failed.
"""

import socket
import sys
import threading
import time

import harness
from harness import Origin, Sluice, check, done, status_of

MAX_HEAD = 4096
MAX_HEADERS = 50

# --------------------------------------------------------------------------
# A byte-counting relay between sluice and the origin.


class Relay:
    """TCP relay on a free port to TARGET_PORT; counts the bytes sent
    towards the target (what sluice forwarded) and keeps the last 64 KiB."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.upbytes = 0
        self.data = b""
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target_port),
                                             5)
                b.settimeout(None)
            except OSError:
                a.close()
                continue
            threading.Thread(target=self._pump, args=(a, b, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(b, a, False),
                             daemon=True).start()

    def _pump(self, src, dst, upstream):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if upstream:
                    with self.lock:
                        self.upbytes += len(d)
                        self.data = (self.data + d)[-65536:]
                dst.sendall(d)
        except OSError:
            pass
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return self.upbytes, len(self.data)

    def since(self, snap):
        """Bytes forwarded upstream since SNAP (count, a printable tail)."""
        with self.lock:
            n = self.upbytes - snap[0]
            tail = self.data[-min(n, 300):] if n > 0 else b""
        return n, tail


# --------------------------------------------------------------------------
# Raw exchange helpers.


def exchange(port, data, timeout=3.0):
    """Send DATA on a fresh connection without half-closing; read until
    the server closes or TIMEOUT passes. Returns (bytes read, closed).
    DATA may be a tuple of parts, sent 0.3 s apart (a head, then its
    body), so that the server has to act on the head alone first."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    parts = data if isinstance(data, tuple) else (data,)
    try:
        for i, part in enumerate(parts):
            if i:
                time.sleep(0.3)
            s.sendall(part)
    except OSError:
        pass  # a server may close early on an oversized head
    out = b""
    closed = False
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            s.settimeout(max(0.05, deadline - time.time()))
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            out += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return out, closed


def responses(raw):
    """Split RAW into (status, headers, body) tuples (Content-Length or
    no body); stops at anything unparsable."""
    out = []
    while raw.startswith(b"HTTP/1."):
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            out.append((status_of(raw), {}, b""))
            break
        lines = head.split(b"\r\n")
        status = status_of(lines[0])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0") or 0)
        if status in (204, 304) or 100 <= status < 200:
            n = 0
        out.append((status, hdrs, rest[:n]))
        raw = rest[n:]
    return out


def origin_requests():
    return origin.stats()["requests"]


# --------------------------------------------------------------------------
# Setup.

origin = Origin("o1")
relay = Relay(origin.port)
sl = Sluice({
    "app": {"path_prefix": "/", "stable": "v1",
            "versions": {"v1": ([relay.addr], 100)}},
}, sluice_extra="max_header_size = 4k\nmax_headers = %d\n"
                "header_timeout = 2s\nbody_timeout = 2s\n" % MAX_HEADERS)

failures = []


def verdict(ok, what, detail=""):
    """Like harness.check, but keeps going so every failure is listed."""
    if ok:
        check(True, what)
    else:
        line = "FAIL: " + what + (("\n      " + detail) if detail else "")
        print(line, flush=True)
        failures.append(line)


# Sanity: the path through relay and origin works, and is counted.
before = origin_requests()
st, r, body = sl.get("/sanity")
check(st == 200, "sanity: a normal GET through sluice is answered 200")
check(origin_requests() == before + 1, "sanity: the origin counted it")

# --------------------------------------------------------------------------
# The table. (name, raw request, allowed statuses, in_body)
# in_body: the error is in the message body, so sluice may have sent the
# head upstream already; only "no complete request at the origin" holds.

R400 = {400}
R400_501 = {400, 501}   # RFC 9112 6.1 (501 unknown coding) vs 6.3 (400)
H = b"Host: a.example\r\n"


def post(headers, body=b""):
    return b"POST /t HTTP/1.1\r\n" + H + headers + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"

many_headers = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 5))
big_header = b"X-Big: " + b"a" * (MAX_HEAD + 200) + b"\r\n"
many_small = b"".join(b"X-Pad%02d: %s\r\n" % (i, b"b" * 100)
                      for i in range(45))  # 45 headers, ~5 KiB

TABLE = [
    # --- Content-Length and Transfer-Encoding together (RFC 9112 6.1, 6.3)
    ("CL then TE: chunked",
     post(b"Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\n"), R400, False),
    ("TE: chunked then CL",
     post(CHUNKED + b"Content-Length: 5\r\n", b"0\r\n\r\n"), R400, False),
    ("CL + TE with a smuggled request in the body",
     post(b"Content-Length: 4\r\n" + CHUNKED, b"5c\r\n" + SMUGGLED),
     R400, False),
    # --- Connection naming a field every recipient needs (RFC 9110
    # 7.6.1): dropped as hop-by-hop, it would reframe the message
    ("Connection names Content-Length (smuggled request in the body)",
     b"GET /t HTTP/1.1\r\n" + H + b"Connection: keep-alive, Content-Length"
     b"\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
     R400, False),
    ("Connection names Transfer-Encoding",
     post(b"Connection: Transfer-Encoding\r\n" + CHUNKED,
          b"5\r\nhello\r\n0\r\n\r\n"), R400, False),
    ("Connection names Host",
     b"GET /t HTTP/1.1\r\n" + H + b"Connection: host\r\n\r\n",
     R400, False),
    # sluice would wait on a 100 the origin, never told, would not send
    ("Connection names Expect",
     b"POST /t HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
     b"Connection: expect\r\nContent-Length: 5\r\n\r\n", R400, False),
    # --- Content-Length values (RFC 9110 8.6, RFC 9112 6.3)
    ("duplicate Content-Length, same value",
     post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
     R400, False),
    ("duplicate Content-Length, different values",
     post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
     R400, False),
    ("Content-Length list '5, 5'",
     post(b"Content-Length: 5, 5\r\n", b"hello"), R400, False),
    ("Content-Length with a plus sign '+5'",
     post(b"Content-Length: +5\r\n", b"hello"), R400, False),
    ("Content-Length negative '-5'",
     post(b"Content-Length: -5\r\n", b"hello"), R400, False),
    ("Content-Length with an inner space '1 0'",
     post(b"Content-Length: 1 0\r\n", b"helloworld"), R400, False),
    ("Content-Length hex '0x5'",
     post(b"Content-Length: 0x5\r\n", b"hello"), R400, False),
    ("Content-Length non-digits 'abc'",
     post(b"Content-Length: abc\r\n", b"hello"), R400, False),
    ("Content-Length trailing junk '5a'",
     post(b"Content-Length: 5a\r\n", b"hello"), R400, False),
    ("Content-Length empty",
     post(b"Content-Length: \r\n", b"hello"), R400, False),
    ("Content-Length overflow 99999999999999999999",
     post(b"Content-Length: 99999999999999999999\r\n", b"hello"),
     R400, False),
    # --- Transfer-Encoding values (RFC 9112 6.1, 6.3, 7)
    ("TE: gzip (unknown/not chunked-final)",
     post(b"Transfer-Encoding: gzip\r\n", b"hello"), R400_501, False),
    ("TE: chunked, gzip (chunked not final)",
     post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: gzip, chunked (unsupported coding)",
     post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: identity (not a transfer coding in RFC 9112)",
     post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: chunked, chunked (chunked applied twice)",
     post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: 'chunked\\x0b' (VT after the coding)",
     post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: '\\x0bchunked' (VT before the coding)",
     post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: 'xchunked'",
     post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
     R400_501, False),
    ("TE: 'chunked' as obs-fold continuation line",
     post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
     R400, False),
    ("TE: 'chunked' NUL before the coding",
     post(b"Transfer-Encoding: \x00chunked\r\n", b"0\r\n\r\n"),
     R400, False),
    ("'Transfer-Encoding : chunked' (space before colon)",
     post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), R400, False),
    ("'Transfer-Encoding\\t: chunked' (tab before colon)",
     post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"), R400, False),
    ("TE in an HTTP/1.0 request",
     b"POST /t HTTP/1.0\r\n" + H + CHUNKED + b"\r\n0\r\n\r\n",
     R400, False),
    ("TE + CL in an HTTP/1.0 request",
     b"POST /t HTTP/1.0\r\n" + H + CHUNKED + b"Content-Length: 5\r\n\r\n"
     b"0\r\n\r\n", R400, False),
    ("two TE headers, both chunked",
     post(CHUNKED + CHUNKED, b"0\r\n\r\n"), R400_501, False),
    ("two TE headers, chunked then gzip",
     post(CHUNKED + b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"),
     R400_501, False),
    # --- Chunked body framing (RFC 9112 7.1): errors after the head
    ("chunk size non-hex 'zz'",
     post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), R400, True),
    ("chunk size negative '-5'",
     post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), R400, True),
    ("chunk size overflow 'ffffffffffffffffff'",
     post(CHUNKED, b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), R400, True),
    ("chunk size '0x5'",
     post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), R400, True),
    ("chunk size with a space and no extension '5 '",
     post(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"), R400, True),
    ("missing CRLF after chunk data",
     post(CHUNKED, b"5\r\nhelloXX\r\n0\r\n\r\n"), R400, True),
    ("chunk data longer than its size, smuggled request after",
     post(CHUNKED, b"3\r\nhello\r\n0\r\n\r\n" + SMUGGLED), R400, True),
    ("chunk data followed by two bytes that are not CRLF, then '0'",
     post(CHUNKED, b"5\r\nhelloXX0\r\n\r\n"), R400, True),
    ("chunk data ended by a bare LF",
     post(CHUNKED, b"5\r\nhello\n0\r\n\r\n"), R400, True),
    ("last chunk's empty line is a bare LF",
     post(CHUNKED, b"5\r\nhello\r\n0\r\n\n"), R400, True),
    ("a trailer field in a request (not checked like a head: refused)",
     post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), R400, True),
    ("obs-fold in a request trailer",
     post(CHUNKED, b"0\r\nX-T: 1\r\n  2\r\n\r\n"), R400, True),
    ("Content-Length in a request trailer",
     post(CHUNKED, b"0\r\nContent-Length: 50\r\n\r\n"), R400, True),
    ("chunk size 'zz', body sent after the head",
     (post(CHUNKED), b"zz\r\nhello\r\n0\r\n\r\n"), R400, True),
    ("missing CRLF after chunk data, body sent after the head",
     (post(CHUNKED), b"5\r\nhelloXX\r\n0\r\n\r\n" + SMUGGLED), R400, True),
    ("chunk size overflow, body sent after the head",
     (post(CHUNKED), b"10000000000000000\r\nhello\r\n"), R400, True),
    ("bare LF after a chunk size",
     post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"), R400, True),
    ("NUL in a chunk trailer field",
     post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"), R400, True),
    # --- Line endings (RFC 9112 2.2)
    ("bare LF ending the request line",
     b"GET /t HTTP/1.1\n" + H + b"\r\n", R400, False),
    ("bare LF line endings everywhere",
     b"GET /t HTTP/1.1\nHost: a.example\nX-A: b\n\n", R400, False),
    ("bare LF ending one header line",
     b"GET /t HTTP/1.1\r\nHost: a.example\nX-A: b\r\n\r\n", R400, False),
    ("bare CR ending a header line",
     b"GET /t HTTP/1.1\r\nHost: a.example\rX-A: b\r\n\r\n", R400, False),
    ("bare CR inside the request line",
     b"GET /t\r HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("head ended by CRLF + bare LF",
     b"GET /t HTTP/1.1\r\n" + H + b"\n", R400, False),
    ("POST head ended by CRLF + bare LF, CL body",
     b"POST /t HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\nhello",
     R400, False),
    ("bare CR before the final CRLF",
     b"GET /t HTTP/1.1\r\n" + H + b"\r\r\n", R400, False),
    # --- Header fields (RFC 9112 5, RFC 9110 5.5)
    ("obs-fold continuation of an ordinary header",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: b\r\n  c\r\n\r\n", R400, False),
    ("obs-fold after an empty value ('X-A:' CRLF SP 'b')",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A:\r\n b\r\n\r\n", R400, False),
    ("obs-fold after a whitespace-only value, HTAB continuation",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: \r\n\tb\r\n\r\n", R400, False),
    ("obs-folded Host value",
     b"GET /t HTTP/1.1\r\nHost:\r\n a.example\r\n\r\n", R400, False),
    ("whitespace-prefixed first header line (Host)",
     b"GET /t HTTP/1.1\r\n Host: a.example\r\n\r\n", R400, False),
    ("NUL in a header name",
     b"GET /t HTTP/1.1\r\n" + H + b"X-\x00A: b\r\n\r\n", R400, False),
    ("NUL in a header value",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", R400, False),
    ("bare CR inside a header value",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n", R400, False),
    ("bare LF inside a header value",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: b\nc\r\n\r\n", R400, False),
    ("control character (\\x01) in a header value",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: b\x01c\r\n\r\n", R400, False),
    ("DEL in a header value",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A: b\x7fc\r\n\r\n", R400, False),
    ("space before colon in an ordinary header",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", R400, False),
    ("empty header name ': x'",
     b"GET /t HTTP/1.1\r\n" + H + b": x\r\n\r\n", R400, False),
    ("header line without a colon",
     b"GET /t HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", R400, False),
    ("header name with '('",
     b"GET /t HTTP/1.1\r\n" + H + b"X(A: b\r\n\r\n", R400, False),
    ("header name with '\"'",
     b"GET /t HTTP/1.1\r\n" + H + b"X\"A: b\r\n\r\n", R400, False),
    ("header name with a non-ASCII byte",
     b"GET /t HTTP/1.1\r\n" + H + b"X-\xc4: b\r\n\r\n", R400, False),
    # --- Request line: method (RFC 9112 3, RFC 9110 9.1, 15.6.2)
    ("invalid method characters 'G@T'",
     b"G@T /t HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("lowercase 'get' (methods are case-sensitive: unknown method)",
     b"get /t HTTP/1.1\r\n" + H + b"\r\n", {501}, False),
    ("unknown method token 'FROB'",
     b"FROB /t HTTP/1.1\r\n" + H + b"\r\n", {501}, False),
    ("leading space before the method",
     b" GET /t HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    # --- Request line: version (RFC 9112 2.3, RFC 9110 2.5, 15.6.6)
    ("HTTP/2.0 request line", b"GET /t HTTP/2.0\r\n" + H + b"\r\n",
     {505}, False),
    ("HTTP/3.0 request line", b"GET /t HTTP/3.0\r\n" + H + b"\r\n",
     {505}, False),
    ("HTTP/2 prior-knowledge preface (a version other than 1.x: 505)",
     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {505}, False),
    ("method PRI in an HTTP/1.1 request (not a version error)",
     b"PRI /t HTTP/1.1\r\n" + H + b"\r\n", {501}, False),
    ("garbage version 'HTTP/x.y'", b"GET /t HTTP/x.y\r\n" + H + b"\r\n",
     R400, False),
    ("lowercase 'http/1.1' (HTTP-name is case-sensitive)",
     b"GET /t http/1.1\r\n" + H + b"\r\n", R400, False),
    ("version 'HTTP/1.1.1'", b"GET /t HTTP/1.1.1\r\n" + H + b"\r\n",
     R400, False),
    ("missing version (HTTP/0.9 style)", b"GET /t\r\n" + H + b"\r\n",
     {400, 505}, False),
    # --- Request line: layout and target (RFC 9112 3, 3.2)
    ("extra space 'GET  / HTTP/1.1'", b"GET  /t HTTP/1.1\r\n" + H + b"\r\n",
     R400, False),
    ("extra space between target and version",
     b"GET /t  HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("tab as the separator after the method",
     b"GET\t/t HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("trailing space after the version",
     b"GET /t HTTP/1.1 \r\n" + H + b"\r\n", R400, False),
    ("target with a space", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
     R400, False),
    ("target with a control char (\\x01)",
     b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("target with a tab", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n",
     R400, False),
    ("target with a fragment '#'", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n",
     R400, False),
    ("target not starting with '/' ('abc')",
     b"GET abc HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("'*' target with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n",
     R400, False),
    ("absolute-form with a non-http scheme",
     b"GET ftp://a.example/t HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("raw UTF-8 in the target (must be percent-encoded, RFC 3986)",
     b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("absolute-form with an empty host (RFC 9110 4.2.1)",
     b"GET http:///admin HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("absolute-form that is only a scheme",
     b"GET https:// HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    ("absolute-form with userinfo (RFC 9110 4.2.4)",
     b"GET http://user@a.example/t HTTP/1.1\r\n" + H + b"\r\n",
     R400, False),
    ("CONNECT host:443",
     b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
     {501, 405}, False),
    # --- Host (RFC 9112 3.2)
    ("missing Host in HTTP/1.1", b"GET /t HTTP/1.1\r\nX-A: b\r\n\r\n",
     R400, False),
    ("two Host headers, same value",
     b"GET /t HTTP/1.1\r\n" + H + H + b"\r\n", R400, False),
    ("two Host headers, different values",
     b"GET /t HTTP/1.1\r\n" + H + b"Host: b.example\r\n\r\n", R400, False),
    ("Host with a space", b"GET /t HTTP/1.1\r\nHost: a b\r\n\r\n",
     R400, False),
    ("Host with '/'", b"GET /t HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
     R400, False),
    ("Host with '@' (userinfo)",
     b"GET /t HTTP/1.1\r\nHost: u@a.example\r\n\r\n", R400, False),
    ("Host list 'a, b'", b"GET /t HTTP/1.1\r\nHost: a.example, b\r\n\r\n",
     R400, False),
    # Host = uri-host [ ":" port ], port = *DIGIT (RFC 9110 7.2, RFC 3986
    # 3.2.2-3.2.3): a value that origins could split two ways is refused.
    ("Host with a non-numeric port",
     b"GET /t HTTP/1.1\r\nHost: a.example:abc\r\n\r\n", R400, False),
    ("Host with two ports", b"GET /t HTTP/1.1\r\nHost: a.example:80:80\r\n"
     b"\r\n", R400, False),
    ("Host with a signed port",
     b"GET /t HTTP/1.1\r\nHost: a.example:+80\r\n\r\n", R400, False),
    ("Host with an unclosed IPv6 bracket",
     b"GET /t HTTP/1.1\r\nHost: [::1\r\n\r\n", R400, False),
    ("Host with a bracketed non-address",
     b"GET /t HTTP/1.1\r\nHost: [zz]:80\r\n\r\n", R400, False),
    ("Host with a bad percent escape",
     b"GET /t HTTP/1.1\r\nHost: a%2\r\n\r\n", R400, False),
    ("absolute-form with a non-numeric port",
     b"GET http://a.example:abc/t HTTP/1.1\r\n" + H + b"\r\n", R400, False),
    # Bytes that cannot begin a request are refused at once, not at
    # header_timeout (a 408 after seconds): a TLS ClientHello sent to a
    # plain listener (its first bytes), or binary garbage.
    ("a TLS handshake on a plain listener",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", R400, False),
    ("binary bytes with no head end", b"\x00\x01\x02garbage", R400, False),
    # --- Limits (RFC 6585 5, RFC 9112 3)
    ("head larger than max_header_size (one long header)",
     b"GET /t HTTP/1.1\r\n" + H + big_header + b"\r\n", {431}, False),
    ("head larger than max_header_size (many small headers)",
     b"GET /t HTTP/1.1\r\n" + H + many_small + b"\r\n", {431}, False),
    ("request target longer than max_header_size",
     b"GET /" + b"a" * (MAX_HEAD + 100) + b" HTTP/1.1\r\n" + H + b"\r\n",
     {414}, False),
    ("request target longer than max_header_size, unfinished",
     b"\r\nGET /" + b"a" * (MAX_HEAD + 100), {414}, False),
    ("a method longer than max_header_size (no method is: 501, not 414)",
     b"G" * (MAX_HEAD + 100) + b" / HTTP/1.1\r\n" + H + b"\r\n", {501},
     False),
    ("head too large with a request line that fits, unfinished",
     b"GET /t HTTP/1.1\r\n" + H + big_header, {431}, False),
    ("more than max_headers (50) header fields",
     b"GET /t HTTP/1.1\r\n" + H + many_headers + b"\r\n", {431}, False),
    # --- Expect (RFC 9110 10.1.1)
    ("Expect: something-else",
     b"GET /t HTTP/1.1\r\n" + H + b"Expect: something-else\r\n\r\n",
     {417}, False),
    ("Expect: 100-continue-x",
     post(b"Expect: 100-continue-x\r\nContent-Length: 5\r\n", b"hello"),
     {417}, False),
]

ALLOWED_REFUSALS = {400, 405, 414, 417, 431, 501, 505}

names = set()
for name, raw, want, in_body in TABLE:
    assert name not in names, "duplicate case name " + name
    names.add(name)
    snap = relay.snapshot()
    before = origin_requests()
    out, closed = exchange(sl.port, raw)
    time.sleep(0.05)  # let a wrongly forwarded request land
    after = origin_requests()
    fwd, tail = relay.since(snap)
    st = status_of(out)
    first = out.split(b"\r\n", 1)[0]
    problems = []
    if st not in want:
        problems.append("status %d (%r), want %s"
                        % (st, first, "/".join(map(str, sorted(want)))))
    if 200 <= st < 300 or (st and st not in ALLOWED_REFUSALS):
        problems.append("answered %d: not one of the refusal statuses" % st)
    if after != before:
        problems.append("origin counted %d request(s)" % (after - before))
    if not in_body and fwd:
        problems.append("%d bytes reached the origin, ending %r"
                        % (fwd, tail))
    if st and not closed:
        problems.append("connection left open after the refusal")
    shown = b" <pause> ".join(raw) if isinstance(raw, tuple) else raw
    detail = "request %r\n      -> %r" % (shown[:400], out[:300])
    if problems:
        tail_text = " -- " + "; ".join(problems)
    elif in_body:
        tail_text = ", the origin never got a complete request"
    else:
        tail_text = ", not forwarded"
    verdict(not problems, "%s: %s%s"
            % (name, "/".join(map(str, sorted(want))), tail_text), detail)

NTABLE = len(TABLE)

# The operator who pointed an https:// client at a plain listener is told
# so in the answer's body (and the log).
out, closed = exchange(sl.port, b"\x16\x03\x01\x02\x00\x01\x00")
verdict(b"TLS handshake on a plain HTTP listener" in out and closed,
        "a TLS handshake's 400 says what happened (%r)" % out[-80:], "")

# --------------------------------------------------------------------------
# Pipelined smuggling: a valid first request, then a malformed one on the
# same connection. The first is answered 200, the second refused, and the
# origin saw exactly one request.

PIPELINED = [
    ("GET, then CL+TE",
     b"GET /p1 HTTP/1.1\r\n" + H + b"\r\n"
     + post(b"Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\n")),
    ("POST with body, then a bare-LF request",
     post(b"Content-Length: 5\r\n", b"hello")
     + b"GET /p2 HTTP/1.1\nHost: a.example\n\n"),
    ("chunked POST, then duplicate Content-Length",
     post(CHUNKED, b"5\r\nhello\r\n0\r\n\r\n")
     + post(b"Content-Length: 0\r\nContent-Length: 44\r\n", SMUGGLED)),
    ("GET, then obs-folded TE",
     b"GET /p4 HTTP/1.1\r\n" + H + b"\r\n"
     + post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
]
for name, raw in PIPELINED:
    snap = relay.snapshot()
    before = origin_requests()
    out, closed = exchange(sl.port, raw)
    time.sleep(0.05)
    after = origin_requests()
    rs = responses(out)
    got = [r[0] for r in rs]
    ok = (len(rs) == 2 and rs[0][0] == 200 and 400 <= rs[1][0] < 600
          and rs[1][0] not in (408, 502, 503, 504)
          and after - before == 1 and closed)
    verdict(ok, "pipelined %s: 200 then refused, origin saw exactly 1 "
            "(statuses %s, origin saw %d, closed %s)"
            % (name, got, after - before, closed),
            "request %r\n      -> %r" % (raw[:400], out[:400]))

# --------------------------------------------------------------------------
# Valid look-alikes: suspicious but RFC-valid. Sluice may refuse them (no
# smuggling either way), but if it forwards one, the origin must see exactly
# one request whose body is exactly what the client framed.

LOOKALIKES = [
    # OWS = *( SP / HTAB ) around field values (RFC 9112 5, RFC 9110 5.6.3)
    ("TE with a tab before the value",
     post(b"Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
     b"hello"),
    ("TE 'chunked ' with trailing space",
     post(b"Transfer-Encoding: chunked \r\n", b"5\r\nhello\r\n0\r\n\r\n"),
     b"hello"),
    # transfer-coding names are case-insensitive (RFC 9112 7)
    ("TE 'Chunked' (coding names are case-insensitive)",
     post(b"Transfer-Encoding: Chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
     b"hello"),
    # BWS before ';' in a chunk extension is in the grammar (RFC 9112 7.1.1)
    ("chunk size '5 ;x' (BWS before a chunk extension)",
     post(CHUNKED, b"5 ;x\r\nhello\r\n0\r\n\r\n"), b"hello"),
    # "_" is a tchar: an unknown field, the message is framed by CL
    ("'Transfer_Encoding: chunked' with Content-Length",
     post(b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"hello"),
     b"hello"),
    # a higher minor version is processed as HTTP/1.1 (RFC 9110 2.5)
    ("HTTP/1.2 request line",
     b"POST /t HTTP/1.2\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
     b"hello"),
    ("Content-Length with OWS around the value",
     post(b"Content-Length: \t5 \r\n", b"hello"), b"hello"),
]
for name, raw, want_body in LOOKALIKES:
    raw = raw.replace(b" /t HTTP", b" /t?echo=1 HTTP", 1)
    before = origin_requests()
    out, closed = exchange(sl.port, raw, timeout=3.0)
    time.sleep(0.05)
    after = origin_requests()
    rs = responses(out)
    st = rs[0][0] if rs else 0
    if st == 200:
        body = rs[0][2]
        # echo: the origin returns the head it received, then the body
        _, _, echoed = body.partition(b"\r\n\r\n")
        ok = after - before == 1 and echoed == want_body and len(rs) == 1
        how = "forwarded once with body %r" % echoed
    else:
        ok = 400 <= st < 600 and st != 502 and after == before
        how = "refused %d" % st
    verdict(ok, "valid look-alike %s: %s (origin saw %d)"
            % (name, how, after - before),
            "request %r\n      -> %r" % (raw[:400], out[:400]))

# --------------------------------------------------------------------------
# After all that, sluice is alive and serving.

check(sl.proc.poll() is None, "sluice is still running after the table")
st, r, body = sl.get("/after")
check(st == 200, "a normal request after the table gets 200")
log = sl.logtext()
check("AddressSanitizer" not in log and "runtime error" not in log,
      "no sanitizer reports in the sluice log")

print("# %d table cases, %d pipelined, %d look-alikes"
      % (NTABLE, len(PIPELINED), len(LOOKALIKES)), flush=True)
if failures:
    print("%d passed, %d failed" % (harness._checks, len(failures)),
          flush=True)
    sys.exit(1)
done()
