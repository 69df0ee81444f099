#!/usr/bin/env python3
"""TLS: termination on listeners (versions, SNI, ALPN, resumption, OCSP
stapling, reload of certificates without dropping connections, a bad
certificate refused on reload), HTTP and HTTPS listeners side by side,
origins over TLS (verified, pooled, wrong host and expired certificates
refused with a 502 and a counter, mTLS), garbage and stalled handshakes
that cost nobody else anything, and config errors with file:line.

Certificates are made here with the openssl CLI: a CA, servers for a.test
and b.test, an origin certificate for localhost, a wrong-host one, an
expired one and a client certificate.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (SLUICE, Origin, Sluice, TMP, check, check_conf, done,
                     free_port, metric_value, skip, wait_until)
from tlskit import (PKI as TestPKI, client_context, memory_tls, openssl,
                    read_tls)

if shutil.which("openssl") is None:
    skip("the openssl command is not installed")

PKI = os.path.join(TMP, "pki")
pki = TestPKI(PKI)
p, make_ca, make_cert = pki.path, pki.make_ca, pki.make_cert


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=60, **kw)


def make_ocsp(name, cn):
    """NAME.ocsp: a DER OCSP response ("good") from the test CA."""
    out = openssl("x509", "-in", p(name + ".pem"), "-noout", "-serial",
                  "-enddate").stdout
    serial = out.split("serial=")[1].split()[0]
    end = time.strptime(out.split("notAfter=")[1].strip(),
                        "%b %d %H:%M:%S %Y %Z")
    with open(p(name + ".index"), "w") as f:
        f.write("V\t%s\t\t%s\tunknown\t/CN=%s\n"
                % (time.strftime("%y%m%d%H%M%SZ", end), serial, cn))
    openssl("ocsp", "-index", p(name + ".index"), "-rsigner", p("ca.pem"),
            "-rkey", p("ca.key"), "-CA", p("ca.pem"), "-issuer", p("ca.pem"),
            "-cert", p(name + ".pem"), "-respout", p(name + ".ocsp"),
            "-ndays", "1")


make_ca()
make_cert("a", "a.test", ["DNS:a.test", "DNS:www.a.test"])
make_cert("b", "b.test", ["DNS:b.test", "DNS:*.b.test"])
make_cert("origin", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
make_cert("wrong", "wrong.example", ["DNS:wrong.example"])
make_cert("expired", "localhost", ["DNS:localhost", "IP:127.0.0.1"],
          days=-1)
make_cert("client", "sluice-client", [], client=True)
make_ocsp("b", "b.test")


# --- TLS origins: a small threaded HTTPS server (keep-alive, counts) ---

class TLSOrigin:
    """An HTTPS origin on 127.0.0.1 with certificate CERT; REQUIRE_CLIENT
    asks for a client certificate signed by the test CA."""

    def __init__(self, name, cert, require_client=False,
                 host=(socket.AF_INET, "127.0.0.1")):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(p(cert + ".pem"), p(cert + ".key"))
        if require_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(p("ca.pem"))
        self.name = name
        self.conns = 0
        self.requests = 0
        self.handshake_failures = 0
        self.resumed = 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                try:
                    self.request.do_handshake()
                except (ssl.SSLError, OSError):
                    origin.handshake_failures += 1
                    raise
                origin.conns += 1
                origin.resumed += self.request.session_reused
                super().setup()

            def do_POST(self):
                origin.requests += 1
                n = int(self.headers.get("Content-Length", "0"))
                got = 0
                while got < n:
                    chunk = self.rfile.read(min(65536, n - got))
                    if not chunk:
                        break
                    got += len(chunk)
                body = b"received %d\n" % got
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if "eof=" in self.path:
                    # A close-delimited answer (no Content-Length, no
                    # chunks), ended with close_notify or by a bare FIN.
                    origin.requests += 1
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: "
                                     b"close\r\n\r\n" + b"z" * 1000)
                    self.close_connection = True
                    if self.path.endswith("eof=clean"):
                        try:
                            self.request.unwrap()
                        except (ssl.SSLError, OSError):
                            pass
                    # else the server's shutdown sends a FIN only
                    return
                if "size=" in self.path:
                    n = int(self.path.split("size=")[1])
                    self.send_response(200)
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    block = b"y" * 65536
                    while n > 0:
                        self.wfile.write(block[:min(n, len(block))])
                        n -= min(n, len(block))
                    return
                origin.requests += 1
                peer = self.request.getpeercert() or {}
                cn = ""
                for rdn in peer.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
                body = ("%s %s\n%s" % (origin.name, self.path,
                                       self.headers)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Origin", origin.name)
                self.send_header("X-Client-CN", cn)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = host[0]

            def get_request(self):
                sock, addr = self.socket.accept()
                return ctx.wrap_socket(sock, server_side=True,
                                       do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass

        self.server = Server((host[1], 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port


good = TLSOrigin("good", "origin")
# "localhost" in a config is the first address the resolver gives (::1
# where /etc/hosts lists it first): the origin named so listens there.
_lh = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
byname = TLSOrigin("byname", "origin", host=(_lh[0], _lh[4][0]))
wrong = TLSOrigin("wrong", "wrong")
expired = TLSOrigin("expired", "expired")
mtls = TLSOrigin("mtls", "origin", require_client=True)
checked = TLSOrigin("checked", "origin")
wrong2 = TLSOrigin("wrong2", "wrong")
plain = Origin("plain")


class Trickler:
    """A TLS origin that never finishes a handshake: after the ClientHello
    it announces a 16 KiB handshake record and sends it one byte every
    0.25 s, so no read timeout ever fires (for 30 s at most)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self.trickle, args=(s,),
                             daemon=True).start()

    @staticmethod
    def trickle(s):
        try:
            s.recv(4096)  # the ClientHello
            s.sendall(b"\x16\x03\x03\x40\x00")
            end = time.time() + 30
            while time.time() < end:
                s.sendall(b"\x00")
                time.sleep(0.25)
        except OSError:
            pass
        s.close()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port


trickler = Trickler()

# --- the sluice under test: an HTTP and an HTTPS listener ---

port = free_port()
tls_port = free_port()
admin_port = free_port()
CONFIG = """
[sluice]
workers = 2
control_socket = {tmp}/ctl-{port}.sock
state_file = {tmp}/state-{port}.ini
admin = 127.0.0.1:{admin}
header_timeout = 2s

[listener:main]
bind = 127.0.0.1:{port}

[listener:tls]
bind = 127.0.0.1:{tls_port}
tls_cert = {pki}/a.pem
tls_key = {pki}/a.key

[cert:b]
cert = {pki}/b.pem
key = {pki}/b.key
ocsp = {pki}/b.ocsp

[service:shop]
path_prefix = /
stable = v1

[version:shop/v1]
servers = {plain}

[service:secure]
path_prefix = /tls/
stable = v1
tls = yes
tls_ca = {pki}/ca.pem

[service:checked]
path_prefix = /checked/
stable = v1
tls = yes
tls_ca = {pki}/ca.pem
health_path = /health
health_interval = 200ms
health_fall = 1

[version:checked/v1]
servers = {checked}

[version:secure/v1]
servers = {good}

[service:byname]
path_prefix = /byname/
stable = v1

[version:byname/v1]
servers = localhost:{byname_port}
tls = yes
tls_ca = {pki}/ca.pem

[service:wrong]
path_prefix = /wrong/
stable = v1
tls = yes
tls_ca = {pki}/ca.pem
tls_sni = localhost

[service:trickle]
path_prefix = /trickle/
stable = v1
tls = yes
tls_ca = {pki}/ca.pem
tls_sni = localhost

[version:trickle/v1]
servers = {trickle}

[service:checkwrong]
path_prefix = /checkwrong/
stable = v1
tls = yes
tls_ca = {pki}/ca.pem
tls_sni = localhost
health_path = /health
health_interval = 200ms
health_fall = 1

[version:checkwrong/v1]
servers = {wrong2}

[version:wrong/v1]
servers = {wrong}

[service:expired]
path_prefix = /expired/
stable = v1

[version:expired/v1]
servers = {expired}
tls = yes
tls_ca = {pki}/ca.pem

[service:insecure]
path_prefix = /insecure/
stable = v1

[version:insecure/v1]
servers = {wrong}
tls = yes
tls_verify = no

[service:mtls]
path_prefix = /mtls/
stable = v1
tls = yes
tls_ca = {pki}/ca.pem
tls_client_cert = {pki}/client.pem
tls_client_key = {pki}/client.key

[version:mtls/v1]
servers = {mtls}

[service:plaintoTLS]
path_prefix = /plain-to-tls/
stable = v1

[version:plaintoTLS/v1]
servers = {good}
"""


def render(**extra):
    return CONFIG.format(tmp=TMP, port=port, tls_port=tls_port,
                         admin=admin_port, pki=PKI, plain=plain.addr,
                         good=good.addr, byname_port=byname.port,
                         wrong=wrong.addr, expired=expired.addr,
                         mtls=mtls.addr, checked=checked.addr,
                         wrong2=wrong2.addr, trickle=trickler.addr,
                         **extra)


sl = Sluice(text=render(), port=port)

CTX = client_context(p("ca.pem"))


class Conn(http.client.HTTPSConnection):
    """HTTPS to sluice's TLS port on 127.0.0.1, with SNI NAME."""

    def __init__(self, name="a.test", ctx=None, timeout=10):
        super().__init__(name, tls_port, context=ctx or CTX, timeout=timeout)

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", tls_port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def https_get(path, name="a.test"):
    c = Conn(name)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r, body


def admin(path):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read().decode()


def metric(name, **labels):
    return metric_value(admin("/metrics")[1], name, **labels)


def s_client(*args):
    """openssl s_client against the TLS port, sending one request and
    waiting for the answer (so TLS 1.3 tickets arrive too); (returncode,
    output)."""
    r = subprocess.run(["openssl", "s_client", "-ign_eof", "-connect",
                        "127.0.0.1:%d" % tls_port, "-CAfile", p("ca.pem")]
                       + list(args), input=b"GET /s HTTP/1.1\r\nHost: "
                       b"a.test\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=20)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def subject(out):
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN = ", 1)[-1].strip()
    return None


def der_of(sock):
    return sock.getpeercert(binary_form=True)


# --- HTTPS and HTTP side by side ---

r = subprocess.run(["curl", "-s", "--cacert", p("ca.pem"), "--resolve",
                    "a.test:%d:127.0.0.1" % tls_port, "-D", "-",
                    "https://a.test:%d/hello?echo=1" % tls_port],
                   capture_output=True, timeout=20)
check(r.returncode == 0 and r.stdout.startswith(b"HTTP/1.1 200"),
      "curl --cacert gets 200 over HTTPS")
check(b"X-Origin: plain" in r.stdout and b"GET /hello?echo=1 HTTP/1.1" in
      r.stdout, "the request reached the origin")
check(b"X-Forwarded-Proto: https\r\n" in r.stdout,
      "requests that came over TLS carry X-Forwarded-Proto: https")
status, resp, body = sl.get("/hello?echo=1")
check(status == 200 and b"X-Forwarded-Proto: http\r\n" in body,
      "the plain listener beside it still serves HTTP (X-Forwarded-Proto: "
      "http)")

# --- protocol versions, SNI, ALPN ---

rc, out = s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
check(rc != 0 and "alert protocol version" in out,
      "TLS 1.1 is refused (openssl s_client -tls1_1 fails)")
rc, out = s_client("-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
check(rc != 0, "TLS 1.0 is refused")
rc, out = s_client("-tls1_2", "-servername", "a.test")
check(rc == 0 and "Protocol  : TLSv1.2" in out, "TLS 1.2 is accepted")
rc, out = s_client("-tls1_3", "-servername", "a.test")
check(rc == 0 and "Protocol  : TLSv1.3" in out, "TLS 1.3 is accepted")
rc, out = s_client("-tls1_2", "-cipher", "AES128-SHA")
check(rc != 0, "a weak TLS 1.2 cipher (RSA key exchange, CBC) is refused")

for name, want in [("a.test", "a.test"), ("b.test", "b.test"),
                   ("api.b.test", "b.test"), ("www.a.test", "a.test"),
                   ("unknown.test", "a.test")]:
    rc, out = s_client("-servername", name)
    check(rc == 0 and subject(out) == want,
          "SNI %s gets the certificate of %s" % (name, want))
rc, out = s_client("-noservername")
check(rc == 0 and subject(out) == "a.test",
      "no SNI gets the listener's default certificate")
rc, out = s_client("-servername", "b.test", "-verify_hostname", "b.test",
                   "-verify_return_error")
check(rc == 0 and "Verify return code: 0 (ok)" in out,
      "the SNI certificate verifies against the CA for its name")
check(https_get("/sni", "x.b.test")[0] == 200,
      "HTTPS with SNI x.b.test (wildcard certificate) works end to end")

rc, out = s_client("-servername", "a.test", "-alpn", "h2,http/1.1")
check("ALPN protocol: http/1.1" in out, "ALPN negotiates http/1.1")
rc, out = s_client("-servername", "a.test", "-alpn", "h2")
check("No ALPN negotiated" in out,
      "a client offering only h2 gets no ALPN protocol (not h2)")

rc, out = s_client("-servername", "b.test", "-status")
check("OCSP Response Status: successful" in out and "Cert Status: good"
      in out, "an OCSP response is stapled for the certificate that has one")
rc, out = s_client("-servername", "a.test", "-status")
check("OCSP response: no response sent" in out,
      "and none for the certificate without one")

# --- session resumption (tickets), on any worker ---

for v in ("-tls1_2", "-tls1_3"):
    sess = os.path.join(TMP, "sess%s.pem" % v)
    rc, out = s_client(v, "-servername", "a.test", "-sess_out", sess)
    reused = 0
    for i in range(6):
        rc, out = s_client(v, "-servername", "a.test", "-sess_in", sess)
        reused += "Reused, TLSv1." in out
    check(reused == 6, "%s sessions resume from a ticket (%d/6, two "
          "workers)" % (v[1:], reused))
check((metric("sluice_tls_resumed_total") or 0) >= 12,
      "resumed handshakes are counted")


# RFC 6066 section 3: a session resumes only under the server name it was
# made for. Offered under another name (even one the same certificate
# serves), or with none, it gets a full handshake with the certificate of
# the name asked for; a session made without a name resumes only without.
def sni(name):
    return ["-servername", name] if name else ["-noservername"]


for v in ("-tls1_2", "-tls1_3"):
    for made, offers in [
            ("a.test", [("b.test", "b.test"), ("www.a.test", "a.test"),
                        ("unknown.test", "a.test"), (None, "a.test"),
                        ("A.Test", None)]),
            ("b.test", [("a.test", "a.test"), ("x.b.test", "b.test"),
                        ("b.test", None)]),
            (None, [("a.test", "a.test"), (None, None)])]:
        sess = os.path.join(TMP, "sni%s-%s.pem" % (v, made))
        rc, out = s_client(v, *sni(made), "-sess_out", sess)
        check(rc == 0 and "New, TLSv1." in out,
              "%s: a session made for %s" % (v[1:], made or "no name"))
        for name, want in offers:
            rc, out = s_client(v, *sni(name), "-sess_in", sess)
            if want is None:
                check(rc == 0 and "Reused, TLSv1." in out,
                      "%s: offered under %s again, it resumes"
                      % (v[1:], name or "no name"))
            else:
                check(rc == 0 and "New, TLSv1." in out and
                      subject(out) == want,
                      "%s: a session made for %s, offered under %s: full "
                      "handshake with the certificate of %s (%s)"
                      % (v[1:], made or "no name", name or "no name", want,
                         "resumed" if "Reused" in out else subject(out)))

# --- plain HTTP to the TLS port ---

s = socket.create_connection(("127.0.0.1", tls_port), 5)
s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
data = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
s.close()
check(data.startswith(b"HTTP/1.1 400") and b"TLS port" in data,
      "plain HTTP sent to the TLS port gets a plain 400 saying why")
check(re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n",
                data.split(b"\r\n\r\n")[0] + b"\r\n") is not None,
      "with a Date, as every answer of sluice's own (%r)" % data[:80])
check((metric("sluice_tls_plaintext_total") or 0) >= 1,
      "plaintext on the TLS port is counted")
# Any method, not only the five OpenSSL knows (GET, POST, HEAD, PUT,
# CONNECT): the others were closed silently, counted as handshake
# failures.
plain0 = metric("sluice_tls_plaintext_total") or 0
methods = ("DELETE", "OPTIONS", "PATCH", "TRACE", "PROPFIND", "M-SEARCH")
for m in methods:
    data = sl.raw(b"%s /x HTTP/1.1\r\nHost: a.test\r\n\r\n" % m.encode(),
                  port=tls_port)
    check(data.startswith(b"HTTP/1.1 400") and b"TLS port" in data,
          "plain HTTP %s to the TLS port gets the plain 400 too" % m)
check(wait_until(lambda: (metric("sluice_tls_plaintext_total") or 0) -
                 plain0 == len(methods)),
      "and is counted as plaintext (%d of %d)"
      % ((metric("sluice_tls_plaintext_total") or 0) - plain0, len(methods)))
# RFC 9110 9.3.2: the answer to a HEAD is its head alone.
data = sl.raw(b"HEAD /x HTTP/1.1\r\nHost: a.test\r\n\r\n", port=tls_port)
check(data.startswith(b"HTTP/1.1 400") and data.endswith(b"\r\n\r\n"),
      "a plain HEAD to the TLS port gets the 400's head, no body (%r)"
      % data[-20:])
# Bytes that are no request line still end silently (a token, then
# something else than a space).
try:
    data = sl.raw(b"GET\x01/ HTTP/1.1\r\n\r\n", port=tls_port)
except ConnectionResetError:
    data = b""
check(data == b"", "non-HTTP bytes on the TLS port get no answer (%r)"
      % data[:20])

# --- reload with a new certificate: new handshakes, old connections ---

keep = Conn("a.test")
keep.request("GET", "/before")
r1 = keep.getresponse()
r1.read()
old_der = der_of(keep.sock)
check(r1.status == 200, "a keep-alive HTTPS connection is open")
make_cert("a", "a.test", ["DNS:a.test", "DNS:www.a.test"])  # new key too
sl.proc.send_signal(signal.SIGHUP)
check(wait_until(lambda: "reloaded" in sl.logtext()),
      "SIGHUP reloads the config")
c = Conn("a.test")
c.connect()
new_der = der_of(c.sock)
c.close()
check(new_der != old_der, "new handshakes present the new certificate")
keep.request("GET", "/after")
r2 = keep.getresponse()
r2.read()
check(r2.status == 200 and der_of(keep.sock) == old_der,
      "the connection opened before the reload keeps working")
keep.close()

# A bad certificate: the reload is refused, the running one keeps serving.
with open(p("a.pem"), "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n"
            "-----END CERTIFICATE-----\n")
sl.proc.send_signal(signal.SIGHUP)
wait_until(lambda: "reload refused" in sl.logtext())
log = sl.logtext()
check("reload refused" in log and "a.pem" in log and "tls_cert" in log,
      "a bad new certificate refuses the reload, naming the file")
check("cannot load the certificate chain" in log, "and saying why")
ev = sl.ctl("show events 5")
refused = [e for e in ev.get("events", []) if e.get("command") ==
           "reload refused"]
check(refused and "a.pem" in json.dumps(refused[-1]),
      "the refused reload is an event with the reason (show events)")
c = Conn("a.test")
c.connect()
check(der_of(c.sock) == new_der,
      "after the refused reload the last good certificate still serves")
c.close()
make_cert("a", "a.test", ["DNS:a.test", "DNS:www.a.test"])
# Key and certificate that do not match.
shutil.copy(p("b.key"), p("a.key"))
sl.proc.send_signal(signal.SIGHUP)
check(wait_until(lambda: "does not match the certificate" in sl.logtext()),
      "a key that does not match the certificate refuses the reload")
make_cert("a", "a.test", ["DNS:a.test", "DNS:www.a.test"])
n = sl.logtext().count("reloaded")
sl.proc.send_signal(signal.SIGHUP)
wait_until(lambda: sl.logtext().count("reloaded") > n)
check(https_get("/again")[0] == 200, "a fixed certificate reloads again")

# --- origins over TLS ---

conns_before = good.conns
c = Conn("a.test")
ok = 0
for i in range(20):
    c.request("GET", "/tls/x%d" % i)
    r = c.getresponse()
    b = r.read()
    ok += r.status == 200 and r.getheader("X-Origin") == "good"
c.close()
check(ok == 20, "an origin over TLS with a valid certificate serves 20/20")
check(good.conns - conns_before <= 2,
      "upstream TLS connections are pooled (%d new for 20 requests)"
      % (good.conns - conns_before))
status, resp, body = https_get("/byname/x")
check(status == 200 and resp.getheader("X-Origin") == "byname",
      "a server given by name (localhost) is verified against its name")

before = wrong.requests
status, resp, body = https_get("/wrong/x")
check(status == 502, "an origin with a wrong-host certificate: 502")
check(b"certificate verify failed" in body and b"hostname mismatch" in body,
      "the 502 says why: %r" % body.strip())
check(wrong.requests == before,
      "nothing was sent to the origin that failed verification")
status, resp, body = https_get("/expired/x")
check(status == 502 and b"expired" in body,
      "an origin with an expired certificate: 502 (%r)" % body.strip())
check(metric("sluice_upstream_errors_total", service="wrong",
             kind="tls") == 1 and
      metric("sluice_upstream_errors_total", service="expired",
             kind="tls") == 1,
      "the failures are counted as upstream errors of kind tls")

# Active health checks speak TLS to TLS origins, verified like requests.
hs = sl.ctl("show service checked")["service"]["versions"][0]["servers"][0]
check(hs["health"] == "up", "health checks over TLS: the good origin is up")
deadline = time.time() + 5
while time.time() < deadline:
    hw = sl.ctl("show service checkwrong")["service"]["versions"][0][
        "servers"][0]
    if hw["health"] == "down":
        break
    time.sleep(0.1)
check(hw["health"] == "down",
      "and the wrong-host origin is down (%s)" % hw.get("health_last_failure"))
check("hostname mismatch" in (hw.get("health_last_failure") or ""),
      "the health check says why: %s" % hw.get("health_last_failure"))
status, resp, body = https_get("/insecure/x")
check(status == 200 and resp.getheader("X-Origin") == "wrong",
      "tls_verify = no connects anyway (explicitly insecure)")
status, resp, body = https_get("/mtls/x")
check(status == 200 and resp.getheader("X-Client-CN") == "sluice-client",
      "mTLS: the origin sees sluice's client certificate")
status, resp, body = https_get("/plain-to-tls/x")
check(status == 502, "plain HTTP to a TLS origin (tls not set) is a 502")

# An origin that trickles its handshake a byte at a time restarts the read
# timeout with each byte; the handshake as a whole gets connect_timeout
# (3 s by default): a 504 soon after, not when the origin gives up (30 s).
t0 = time.time()
status, resp, body = https_get("/trickle/x")
took = time.time() - t0
check(status == 504 and took < 15,
      "an origin trickling its TLS handshake: 504 after %.1f s (%r)"
      % (took, body.strip()))
check(metric("sluice_upstream_errors_total", service="trickle",
             kind="connect_timeout") >= 1,
      "counted as a connect timeout")

# --- bodies stream through TLS both ways, with backpressure ---

SIZE = 20 * 1024 * 1024


def raw_tls(port=None, ragged_ok=True):
    sock = socket.create_connection(("127.0.0.1", port or tls_port), 30)
    return CTX.wrap_socket(sock, server_hostname="a.test",
                           suppress_ragged_eofs=ragged_ok)


def read_to_end(s):
    """Everything S sends and whether it ended with close_notify (on a
    socket from raw_tls(ragged_ok=False); a ragged end raises SSLError on
    Python 3.11.2, SSLEOFError on later releases)."""
    data = b""
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                return data, True
            data += chunk
    except (ssl.SSLError, ConnectionResetError):
        return data, False


# RFC 9112 section 9.8: over TLS, a close-delimited body is whole only
# when the origin's close_notify ends it. A bare FIN cuts it: the client
# must see the cut too (no close_notify), and it is counted.
resets0 = metric("sluice_upstream_errors_total", service="secure",
                 kind="reset") or 0
for how in ("clean", "ragged"):
    s = raw_tls(ragged_ok=False)
    s.sendall(b"GET /tls/x?eof=%s HTTP/1.1\r\nHost: a.test\r\n\r\n"
              % how.encode())
    data, clean = read_to_end(s)
    s.close()
    if how == "clean":
        check(data.startswith(b"HTTP/1.1 200") and
              data.endswith(b"\r\n\r\n" + b"z" * 1000) and clean,
              "a close-delimited body from a TLS origin that ends with "
              "close_notify arrives whole, with close_notify")
    else:
        check(data.startswith(b"HTTP/1.1 200") and not clean,
              "one its origin ends with a bare FIN reaches the client "
              "without close_notify: the cut is visible (%d bytes)"
              % len(data))
resets = (metric("sluice_upstream_errors_total", service="secure",
                 kind="reset") or 0) - resets0
check(resets == 1, "the cut body is counted as an upstream reset (%d)"
      % resets)

# New connections to a TLS origin resume the session it gave before (each
# worker keeps one per server): a close-delimited answer ends its origin
# connection, so each of these requests opens a new one.
conns0, resumed0 = good.conns, good.resumed
counted0 = metric("sluice_upstream_tls_resumed_total") or 0
for i in range(6):
    s = raw_tls()
    s.sendall(b"GET /tls/r%d?eof=clean HTTP/1.1\r\nHost: a.test\r\n\r\n" % i)
    read_to_end(s)
    s.close()
opened, resumed = good.conns - conns0, good.resumed - resumed0
# A worker's first request may still find a pooled connection, and a
# worker with an empty cache makes one full handshake (two workers).
check(opened >= 4 and resumed >= opened - 2,
      "new TLS connections to an origin resume a session (%d of %d)"
      % (resumed, opened))
check((metric("sluice_upstream_tls_resumed_total") or 0) - counted0 ==
      resumed, "resumed origin handshakes are counted")

for path, what in [("/dl?size=%d" % SIZE, "from a plain origin"),
                   ("/tls/dl?size=%d" % SIZE, "from a TLS origin")]:
    s = raw_tls()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
              b"\r\n" % path.encode())
    time.sleep(0.5)  # a slow reader at first: backpressure must engage
    data = read_to_end(s)[0]
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200") and len(body) == SIZE,
          "a 20 MB download over HTTPS %s arrives whole (%d bytes)"
          % (what, len(body)))

s = raw_tls()
s.sendall(b"POST /tls/ul HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n"
          b"Connection: close\r\n\r\n" % SIZE)
block = b"x" * (1 << 20)
for _ in range(SIZE // len(block)):
    s.sendall(block)
data = read_to_end(s)[0]
s.close()
check(data.startswith(b"HTTP/1.1 200") and
      (b"received %d" % SIZE) in data,
      "a 20 MB upload over HTTPS reaches a TLS origin whole")

# A close-delimited answer (HTTP/1.0) ends with a TLS close_notify, so the
# client can tell it from a cut connection.
s = raw_tls(ragged_ok=False)
s.sendall(b"GET /ten HTTP/1.0\r\nHost: a.test\r\n\r\n")
data, clean = read_to_end(s)
s.close()
check(clean and data.startswith(b"HTTP/1.1 200"),
      "closing after a response sends close_notify (no ragged EOF)")

# --- several TLS records in one segment, then a TCP half-close ---
# Three requests, each its own TLS record, reach sluice in one send: one
# read has to decrypt all three. The client then half-closes (FIN, no
# close_notify) and still gets the three answers, in order.
sock = socket.create_connection(("127.0.0.1", tls_port), 10)
obj, inc, out = memory_tls(CTX, sock, "a.test")
for i in range(3):
    obj.write(b"GET /rec%d?echo=1%s HTTP/1.1\r\nHost: a.test\r\n\r\n"
              % (i, b"&delay=200" if i == 0 else b""))
sock.sendall(out.read())  # three records, one send
sock.shutdown(socket.SHUT_WR)
answers, ended = read_tls(sock, obj, inc)
sock.close()
order = [answers.find(b"GET /rec%d?" % i) for i in range(3)]
check(answers.count(b"HTTP/1.1 200") == 3 and -1 not in order and
      order == sorted(order),
      "3 TLS records in one segment, then a half-close: 3 answers in order "
      "(%d, at %s)" % (answers.count(b"HTTP/1.1 200"), order))
check(ended, "and the connection ends with close_notify")

# --- garbage and stalled handshakes do not affect other clients ---

fails0 = metric("sluice_tls_handshake_failures_total") or 0
timeouts0 = metric("sluice_tls_handshake_timeouts_total") or 0
stalled = [socket.create_connection(("127.0.0.1", tls_port), 5)
           for _ in range(30)]
for s in stalled[:10]:
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a hello
for i in range(5):
    g = socket.create_connection(("127.0.0.1", tls_port), 5)
    # Garbage that cannot start a TLS record: 0x00 is no record type and
    # 0xff no protocol major version, so OpenSSL refuses the header at
    # once. (With random bytes, a header that happens to read as a record
    # of version 3.x with a plausible length — about once in 900 tries —
    # makes OpenSSL wait for the rest, and the connection ends as a
    # handshake timeout instead of a failure; CI saw it once.)
    g.sendall(b"\x00\xff" + os.urandom(298))
    try:
        g.recv(100)
    except OSError:
        pass
    g.close()
trickle = socket.create_connection(("127.0.0.1", tls_port), 5)
hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32
t0 = time.time()
served, slowest, sent, next_byte = 0, 0.0, 0, 0.0
# At least 3 s and 20 requests (10 s at most, for a slow ASan build).
while (time.time() - t0 < 3.0 or served < 20) and time.time() - t0 < 10:
    a = time.time()
    if https_get("/busy")[0] == 200:
        served += 1
    slowest = max(slowest, time.time() - a)
    if time.time() >= next_byte:
        # One byte of a ClientHello every 0.2 s: never idle for long,
        # never done either.
        next_byte = time.time() + 0.2
        try:
            trickle.send(hello[sent:sent + 1])
            sent += 1
        except OSError:
            pass
# A worker stuck on a stalled handshake would hold requests until
# header_timeout (2 s) closes it; scheduling noise stays well below.
check(served >= 20 and slowest < 1.5,
      "while 30 handshakes stall and garbage arrives, other clients are "
      "served (%d requests, slowest %.2fs)" % (served, slowest))
closed = 0
for s in stalled + [trickle]:
    s.settimeout(3)
    try:
        closed += s.recv(100) == b""
    except ConnectionResetError:
        closed += 1
    except OSError:
        pass
    s.close()
check(closed == 31, "stalled handshakes (and one trickling byte by byte) "
      "are closed after header_timeout (%d/31)" % closed)
timeouts = (metric("sluice_tls_handshake_timeouts_total") or 0) - timeouts0
fails = (metric("sluice_tls_handshake_failures_total") or 0) - fails0
check(timeouts >= 31, "handshake timeouts are counted (%d)" % timeouts)
check(fails >= 5, "garbage handshakes are counted as failures (%d)" % fails)
check(metric("sluice_tls_handshakes_total") >= 30,
      "completed handshakes are counted")

# --- reloads that would change what a running listener is ---

sl.write(render().replace("tls_cert = %s/a.pem\ntls_key = %s/a.key\n"
                          % (PKI, PKI), "").replace(
    "[cert:b]\ncert = %s/b.pem\nkey = %s/b.key\nocsp = %s/b.ocsp\n"
    % (PKI, PKI, PKI), ""))
sl.proc.send_signal(signal.SIGHUP)
check(wait_until(
    lambda: "a running TLS listener cannot lose tls_cert" in sl.logtext()),
      "a reload that would turn the TLS listener plain is refused")
check(https_get("/still")[0] == 200, "and HTTPS keeps working")
sl.write(render())

code = sl.stop()
check(code == 0, "sluice stops cleanly (exit %d)" % code)

# --- config errors, with file:line ---


BASE = ("[listener:main]\nbind = 127.0.0.1:%d\n[service:s]\nstable = v\n"
        "[version:s/v]\nservers = 127.0.0.1:1\n" % free_port())
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           % p("a.pem"),
           ":7: [listener:t]: tls_cert and tls_key must be set together "
           "(tls_key is missing)", "tls_cert without tls_key")
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = /nonexistent/key.pem\n" % p("a.pem"),
           ":10: [listener:t] tls_key: cannot read '/nonexistent/key.pem'",
           "an unreadable key file")
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = %s\ntls_min_version = 1.1\n" % (p("a.pem"), p("a.key")),
           ":11: [listener:t] tls_min_version: invalid version '1.1': use "
           "1.2 or 1.3", "a bad tls_min_version")
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = %s\n" % (p("a.pem"), p("b.key")),
           ":10: [listener:t] tls_key: the key", "a key that does not match")
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = %s\ntls_ocsp = %s\n" % (p("a.pem"), p("a.key"),
                                              p("a.pem")),
           ":11: [listener:t] tls_ocsp: '%s' is not a DER OCSP response"
           % p("a.pem"), "an OCSP file that is not an OCSP response")
check_conf(BASE + "[cert:x]\ncert = %s\nkey = %s\nlisteners = nope\n"
           % (p("b.pem"), p("b.key")),
           ":10: [cert:x] listeners: no [listener:nope]",
           "a [cert:] for an unknown listener")
check_conf(BASE.replace("servers = 127.0.0.1:1\n",
                        "servers = 127.0.0.1:1\ntls_ca = %s\n" % p("ca.pem")),
           ":7: [version:s/v] tls_ca: has no effect without tls = yes",
           "origin TLS keys without tls = yes")
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = %s\ntls_ciphers = NOTACIPHER\n" % (p("a.pem"),
                                                         p("a.key")),
           ":11: [listener:t] tls_ciphers: no usable cipher",
           "a cipher list OpenSSL cannot use")

# A [cert:] serving two listeners is loaded for each; its error is told
# once (it was printed twice, and twice in the reload event).
two = os.path.join(TMP, "two-listeners.ini")
with open(two, "w") as f:
    f.write(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
            "tls_key = %s\n[listener:u]\nbind = 127.0.0.1:2\n"
            "tls_cert = %s\ntls_key = %s\n[cert:x]\ncert = %s\nkey = %s\n"
            % (p("a.pem"), p("a.key"), p("a.pem"), p("a.key"), p("b.pem"),
               p("a.key")))
r = subprocess.run([SLUICE, "-t", "-c", two], capture_output=True, text=True,
                   timeout=60)
out = r.stdout + r.stderr
check(r.returncode == 1 and out.count(two + ":17: [cert:x] key: the key") == 1,
      "a bad [cert:] serving two listeners: its error once (%d times)"
      % out.count("[cert:x] key"))

# Every error at once: key errors are found with the file's other errors
# (a bad names used to hide the key's: the certificates were only loaded
# once the rest was right).
every = os.path.join(TMP, "every-error.ini")
with open(every, "w") as f:
    f.write(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
            "tls_key = %s\n[cert:x]\ncert = %s\nkey = %s\nnames = *.*.x\n"
            % (p("a.pem"), p("b.key"), p("b.pem"), p("a.key")))
r = subprocess.run([SLUICE, "-t", "-c", every], capture_output=True,
                   text=True, timeout=60)
out = r.stdout + r.stderr
for want in (":10: [listener:t] tls_key: the key '%s' does not match the "
             "certificate '%s': key values mismatch" % (p("b.key"), p("a.pem")),
             ":13: [cert:x] key: the key '%s' does not match the "
             "certificate '%s': key values mismatch" % (p("a.key"), p("b.pem")),
             ":14: [cert:x] names: invalid server name '*.*.x'"):
    check(r.returncode == 1 and every + want in out,
          "sluice -t reports every error at once: %s" % want.split(": ")[1])

# --- keys sluice cannot use: encrypted, or of another type ---

# An encrypted key: sluice never asks for a passphrase. OpenSSL's default
# prompts on the terminal, else reads stdin: with stdin a pipe left open
# (and no terminal), -t, the start and a reload (the control thread) would
# wait for ever.
openssl("pkey", "-in", p("a.key"), "-aes256", "-passout", "pass:x",
        "-out", p("enc.key"))
openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
        p("rsa.key"), "-out", p("rsa.pem"), "-days", "30", "-subj",
        "/CN=rsa.test")


def run_stdin_open(*args):
    """sluice ARGS with stdin a pipe that stays open and no controlling
    terminal: (exit code, None if it still ran after 20 s; output)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([SLUICE] + list(args), stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        proc.stdin.close()
        out.seek(0)
        return code, out.read().decode("utf-8", "replace")


ENCRYPTED = "is encrypted; sluice does not read passphrases"
ORIGIN_MTLS = ("[service:m]\npath_prefix = /m/\nstable = v\n[version:m/v]\n"
               "servers = 127.0.0.1:1\ntls = yes\ntls_ca = %s\n"
               "tls_client_cert = %s\ntls_client_key = %s\n")
for what, text, line, where in [
        ("a listener's tls_key",
         BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
         "tls_key = %s\n" % (p("a.pem"), p("enc.key")),
         10, "[listener:t] tls_key"),
        ("a [cert:]'s key",
         BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
         "tls_key = %s\n[cert:x]\ncert = %s\nkey = %s\n"
         % (p("b.pem"), p("b.key"), p("a.pem"), p("enc.key")),
         13, "[cert:x] key"),
        ("an origin's tls_client_key",
         BASE + ORIGIN_MTLS % (p("ca.pem"), p("a.pem"), p("enc.key")),
         15, "[version:m/v] tls_client_key")]:
    path = os.path.join(TMP, "encrypted-%d.ini" % line)
    with open(path, "w") as f:
        f.write(text)
    want = "%s:%d: %s: the key '%s' %s" % (path, line, where, p("enc.key"),
                                          ENCRYPTED)
    for args, how in [(("-t", "-c", path), "sluice -t"),
                      (("-c", path), "the start")]:
        code, out = run_stdin_open(*args)
        check(code == 1 and want in out and "pass phrase" not in out,
              "%s with an encrypted key in %s: no prompt, exit 1 with "
              "file:line and why (%s: %s)" % (how, what, code,
                                             out.strip()[-160:]))

# A key of another type than its certificate (RSA certificate, EC key) is
# a mismatch too, and said so: not "no certificate assigned".
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = %s\n" % (p("rsa.pem"), p("a.key")),
           ":10: [listener:t] tls_key: the key '%s' does not match the "
           "certificate '%s': key type mismatch" % (p("a.key"), p("rsa.pem")),
           "an EC key for an RSA certificate")
check_conf(BASE + "[listener:t]\nbind = 127.0.0.1:1\ntls_cert = %s\n"
           "tls_key = %s\n" % (p("a.pem"), p("rsa.key")),
           ":10: [listener:t] tls_key: the key '%s' does not match the "
           "certificate '%s': key type mismatch" % (p("rsa.key"), p("a.pem")),
           "an RSA key for an EC certificate")
check_conf(BASE + ORIGIN_MTLS % (p("ca.pem"), p("rsa.pem"), p("client.key")),
           ":15: [version:m/v] tls_client_key: the key '%s' does not match "
           "the certificate '%s': key type mismatch"
           % (p("client.key"), p("rsa.pem")),
           "an origin client key of another type than its certificate")

# A reload that finds an encrypted key is refused at once; the control
# thread goes on serving (it used to wait on stdin for a passphrase). The
# daemon's stdin is a pipe left open, as a terminal would be.
rk_port, rk_tls = free_port(), free_port()
shutil.copy(p("a.key"), p("reload.key"))
rk_conf = ("[sluice]\ncontrol_socket = {tmp}/ctl-{port}.sock\n"
           "state_file = {tmp}/state-{port}.ini\n"
           "[listener:main]\nbind = 127.0.0.1:{port}\n"
           "[listener:tls]\nbind = 127.0.0.1:{tls}\ntls_cert = {pki}/a.pem\n"
           "tls_key = {pki}/reload.key\n"
           "[service:s]\npath_prefix = /\nstable = v\n[version:s/v]\n"
           "servers = {plain}\n").format(tmp=TMP, port=rk_port, tls=rk_tls,
                                         pki=PKI, plain=plain.addr)
stdin_r, stdin_w = os.pipe()
saved_stdin = os.dup(0)
os.dup2(stdin_r, 0)
try:
    rk = Sluice(text=rk_conf, port=rk_port)
finally:
    os.dup2(saved_stdin, 0)
    os.close(saved_stdin)
    os.close(stdin_r)
shutil.copy(p("enc.key"), p("reload.key"))
rk.proc.send_signal(signal.SIGHUP)
check(wait_until(lambda: ENCRYPTED in rk.logtext()),
      "a reload that finds an encrypted key is refused at once, saying why")
ev = rk.ctl("show events 5", timeout=5)
check(any(e.get("command") == "reload refused" and ENCRYPTED in
          json.dumps(e) for e in ev.get("events", [])),
      "and the control thread answers (the refusal is an event)")
c = socket.create_connection(("127.0.0.1", rk_tls), 10)
t = CTX.wrap_socket(c, server_hostname="a.test")
t.sendall(b"GET /rk HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
check(read_to_end(t)[0].startswith(b"HTTP/1.1 200"),
      "the running certificate keeps serving")
t.close()
check(rk.stop() == 0, "that sluice stops cleanly")
os.close(stdin_w)

done()
