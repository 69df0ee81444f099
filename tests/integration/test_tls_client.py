#!/usr/bin/env python3
"""Client certificates on TLS listeners (mTLS): tls_client_ca with
tls_verify_client = required (the default) or optional; the
X-Client-Cert-* headers the origin gets, checked against what the openssl
command says of the certificate; the same headers sent by clients removed
on every listener; refused handshakes counted and never forwarded;
session resumption keeping the identity, and not surviving a change of
CA on reload; a bad CA on reload keeping the old one; config errors with
file:line.

Certificates are made here with the openssl CLI: the trusted CA, another
CA, a server certificate, and client certificates from each CA (one
expired).
"""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess

from harness import (Origin, Sluice, SLUICE, TMP, check, check_conf, done,
                     free_port, metric_value, skip, wait_until)
from tlskit import PKI as TestPKI, client_context, openssl

if shutil.which("openssl") is None:
    skip("the openssl command is not installed")

pki = TestPKI(os.path.join(TMP, "pki"))
p = pki.path
pki.make_ca()
pki.make_ca("other", "another CA")
pki.make_cert("a", "a.test", ["DNS:a.test"])
# A subject with a comma and two attributes: RFC 4514 escaping matters.
pki.make_cert("alice", None, [], client=True,
              subj="/O=Example Corp/CN=Alice\\, Smith")
pki.make_cert("old", "old-client", [], client=True, days=-1)
# A subject of some 5 KB (80 OUs), more than a small request head.
pki.make_cert("long", None, [], client=True,
              subj="".join("/OU=%02d-%s" % (i, "u" * 58) for i in range(80))
              + "/CN=long")
pki.make_cert("mallory", "mallory", [], client=True, ca="other")
with open(p("junk.pem"), "w") as f:
    f.write("not a certificate\n")

origin = Origin("o")
port, req_port, opt_port, tls_port = (free_port() for _ in range(4))
admin_port = free_port()
CONFIG = """
[sluice]
workers = 2
control_socket = {tmp}/ctl-{port}.sock
state_file = {tmp}/state-{port}.ini
admin = 127.0.0.1:{admin}

[listener:plain]
bind = 127.0.0.1:{port}

[listener:req]
bind = 127.0.0.1:{req}
tls_cert = {pki}/a.pem
tls_key = {pki}/a.key
tls_client_ca = {pki}/{req_ca}.pem

[listener:opt]
bind = 127.0.0.1:{opt}
tls_cert = {pki}/a.pem
tls_key = {pki}/a.key
tls_client_ca = {pki}/ca.pem
tls_verify_client = optional

[listener:tls]
bind = 127.0.0.1:{tls}
tls_cert = {pki}/a.pem
tls_key = {pki}/a.key

[service:s]
stable = v

[version:s/v]
servers = {origin}
"""


def render(req_ca="ca"):
    return CONFIG.format(tmp=TMP, port=port, req=req_port, opt=opt_port,
                         tls=tls_port, admin=admin_port, pki=pki.dir,
                         req_ca=req_ca, origin=origin.addr)


sl = Sluice(text=render(), port=port)


def metric(name):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    c.request("GET", "/metrics")
    return metric_value(c.getresponse().read().decode(), name) or 0


def context(cert=None, tls12=False):
    ctx = client_context(p("ca.pem"))
    if cert:
        ctx.load_cert_chain(p(cert + ".pem"), p(cert + ".key"))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def get(port, cert=None, headers=None, ctx=None, session=None):
    """One GET /who over TLS: (status, None, sslsocket) or (None, why,
    None). The socket is returned open (for its session)."""
    ctx = ctx or context(cert)
    try:
        raw = socket.create_connection(("127.0.0.1", port), 10)
        s = ctx.wrap_socket(raw, server_hostname="a.test", session=session)
        c = http.client.HTTPConnection("a.test", port, timeout=10)
        c.sock = s
        c.request("GET", "/who", headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status, None, s
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        return None, "%s: %s" % (type(e).__name__, e), None


def forwarded():
    """The X-Client-Cert-* lines of the last request the origin got, as
    (name, value) pairs in order."""
    head = origin.last().decode("latin-1")
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"(?im)^(x[-_]client[-_]cert[-_][a-z0-9_-]*):"
                        r"[ \t]*(.*?)\r?$",
                        head)]


def cert_facts(name):
    """What openssl says: subject and issuer (RFC 2253), SHA-256."""
    def one(*opts):
        return openssl("x509", "-in", p(name + ".pem"), "-noout",
                       *opts).stdout.strip()
    subject = one("-subject", "-nameopt", "RFC2253").split("=", 1)[1]
    issuer = one("-issuer", "-nameopt", "RFC2253").split("=", 1)[1]
    fp = one("-fingerprint", "-sha256").split("=", 1)[1]
    return subject, issuer, fp.replace(":", "").lower()


def requests_seen():
    return origin.stats()["requests"]


SPOOF = {"X-Client-Cert-Verify": "SUCCESS",
         "X-Client-Cert-Subject": "CN=admin",
         "x-client-cert-sha256": "00",
         "X-Client-Cert-CN": "admin",  # every length, not only sluice's
         "X_Client_Cert_Verify": "SUCCESS"}  # CGI reads it as the same

# --- required: a verified certificate, and what the origin learns ---

subject, issuer, fp = cert_facts("alice")
status, why, s = get(req_port, "alice")
check(status == 200, "a client certificate from the CA is accepted (%s)"
      % (status or why))
want = [("X-Client-Cert-Verify", "SUCCESS"),
        ("X-Client-Cert-Subject", subject),
        ("X-Client-Cert-Issuer", issuer),
        ("X-Client-Cert-SHA256", fp)]
check(forwarded() == want,
      "the origin gets verify, subject, issuer and fingerprint as openssl "
      "prints them (%r)" % forwarded())
check(subject == "CN=Alice\\, Smith,O=Example Corp",
      "the subject is RFC 4514 text, escaped (%s)" % subject)

status, why, s = get(req_port, "alice", headers=SPOOF)
check(status == 200 and forwarded() == want,
      "X-Client-Cert-* sent by the client are replaced, not added to (%r)"
      % forwarded())

status, why, s = get(req_port, "long")
lines = dict(forwarded())
check(status == 200 and
      lines.get("X-Client-Cert-Subject") == cert_facts("long")[0],
      "a 5 KB subject goes to the origin whole (%s, %d bytes)"
      % (status or why, len(lines.get("X-Client-Cert-Subject", ""))))

# curl, a real client, with and without its certificate.
url = "https://a.test:%d/who" % req_port
base = ["curl", "-sS", "--max-time", "10", "--cacert", p("ca.pem"),
        "--resolve", "a.test:%d:127.0.0.1" % req_port, "-o", "/dev/null",
        "-w", "%{http_code}"]
r = subprocess.run(base + ["--cert", p("alice.pem"), "--key", p("alice.key"),
                           url], capture_output=True, text=True, timeout=30)
check(r.returncode == 0 and r.stdout == "200",
      "curl --cert gets 200 (%d, %s)" % (r.returncode, r.stdout))

# --- required: no certificate, another CA's, an expired one ---

refused0 = metric("sluice_tls_client_cert_refused_total")
seen0 = requests_seen()
r = subprocess.run(base + [url], capture_output=True, text=True, timeout=30)
check(r.returncode != 0 and r.stdout in ("", "000"),
      "curl without a certificate gets no answer (exit %d: %s)"
      % (r.returncode, r.stderr.strip()))
for who, cert in (("no", None), ("another CA's", "mallory"),
                  ("an expired", "old")):
    status, why, s = get(req_port, cert)
    check(status is None, "%s certificate is refused (%s)"
          % (who, why or status))
check(wait_until(
    lambda: metric("sluice_tls_client_cert_refused_total") - refused0 >= 4),
      "the 4 refusals are counted in sluice_tls_client_cert_refused_total "
      "(%d)" % (metric("sluice_tls_client_cert_refused_total") - refused0))
check(requests_seen() == seen0,
      "and none of those requests reached the origin (%d)"
      % (requests_seen() - seen0))

# --- optional: with or without, but never an unverified one ---

status, why, s = get(opt_port, None, headers=SPOOF)
check(status == 200 and forwarded() == [("X-Client-Cert-Verify", "NONE")],
      "optional, no certificate: 200 with X-Client-Cert-Verify: NONE alone "
      "(%s, %r)" % (status or why, forwarded()))
status, why, s = get(opt_port, "alice")
check(status == 200 and forwarded() == want,
      "optional, a good certificate: identified like on a required "
      "listener (%s)" % (status or why))
status, why, s = get(opt_port, "mallory")
check(status is None, "optional, a certificate that does not verify: "
      "refused (%s)" % (why or status))

# --- listeners that ask for no certificate pass none on ---

for what, send in (("a TLS listener without tls_client_ca",
                    lambda: get(tls_port, None, headers=SPOOF)[0]),
                   ("a plain listener", None)):
    if send is None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/who", headers=SPOOF)
        r = c.getresponse()
        r.read()
        status = r.status
    else:
        status = send()
    check(status == 200 and forwarded() == [],
          "%s removes the client's X-Client-Cert-* (%r)"
          % (what, forwarded()))

# --- resumption keeps the identity (TLS 1.2 session) ---

ctx12 = context("alice", tls12=True)
status, why, s = get(req_port, ctx=ctx12)
session = s.session if s is not None else None
status, why, s2 = get(req_port, ctx=ctx12, session=session)
check(status == 200 and s2 is not None and s2.session_reused and
      forwarded() == want,
      "a resumed session is still identified as alice (%s, reused %s)"
      % (status or why, s2.session_reused if s2 else None))

# --- reload: a new CA applies to new handshakes, old sessions included ---

n = sl.logtext().count("reloaded")
sl.write(render(req_ca="other"))
sl.proc.send_signal(signal.SIGHUP)
check(wait_until(lambda: sl.logtext().count("reloaded") > n),
      "reload with tls_client_ca = the other CA")
status, why, s = get(req_port, "mallory")
check(status == 200 and ("X-Client-Cert-Issuer", "CN=another CA")
      in forwarded(), "after it, the other CA's client is accepted (%s)"
      % (status or why))
status, why, s = get(req_port, "alice")
check(status is None, "and alice is refused (%s)" % (why or status))
status, why, s3 = get(req_port, ctx=ctx12, session=session)
check(status is None,
      "alice's session from before the reload does not resume past the "
      "new CA (%s)" % (why or status))

n = sl.logtext().count("reload refused")
sl.write(render(req_ca="junk"))
sl.proc.send_signal(signal.SIGHUP)
check(wait_until(lambda: sl.logtext().count("reload refused") > n),
      "a reload with a CA file holding no certificate is refused")
check("tls_client_ca: no CA certificate in" in sl.logtext(),
      "and the log says why")
status, why, s = get(req_port, "mallory")
check(status == 200, "the previous CA keeps serving (%s)" % (status or why))
sl.write(render(req_ca="other"))

code = sl.stop()
check(code == 0, "sluice stops cleanly (exit %d)" % code)

# --- config errors, with file:line ---


BASE = ("[service:s]\nstable = v\n[version:s/v]\nservers = 127.0.0.1:1\n"
        "[listener:t]\nbind = 127.0.0.1:1\n")
TLS = "tls_cert = %s\ntls_key = %s\n" % (p("a.pem"), p("a.key"))
check_conf(BASE + TLS + "tls_verify_client = optional\n",
           ":9: [listener:t] tls_verify_client: needs tls_client_ca",
           "tls_verify_client without tls_client_ca")
check_conf(BASE + TLS + "tls_client_ca = %s\ntls_verify_client = maybe\n"
           % p("ca.pem"),
           ":10: [listener:t] tls_verify_client: invalid value 'maybe': use "
           "required or optional", "a bad tls_verify_client")
check_conf(BASE + TLS + "tls_client_ca = /nonexistent/ca.pem\n",
           ":9: [listener:t] tls_client_ca: cannot read '/nonexistent/ca.pem'",
           "an unreadable tls_client_ca")
check_conf(BASE + TLS + "tls_client_ca = %s\n" % p("junk.pem"),
           ":9: [listener:t] tls_client_ca: no CA certificate in",
           "a tls_client_ca without certificates")
check_conf(BASE + "tls_client_ca = %s\n" % p("ca.pem"),
           ":7: [listener:t] tls_client_ca: only for TLS listeners",
           "tls_client_ca on a plain listener")
r = subprocess.run([SLUICE, "-t", "-c", sl.path], capture_output=True,
                   text=True, timeout=60)
check(r.returncode == 0, "and the test's own config checks out (%s)"
      % (r.stdout + r.stderr).strip())

done()
