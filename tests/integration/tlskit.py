"""TLS helpers shared by the TLS integration tests: a throwaway PKI made
with the openssl command, and a TLS client over memory BIOs (for tests that
must control exactly which bytes go out in which TCP write)."""

import os
import socket
import ssl
import subprocess


def openssl(*args):
    """Run the openssl command; its CompletedProcess, or RuntimeError."""
    r = subprocess.run(["openssl"] + list(args), capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))
    return r


class PKI:
    """A test CA and certificates it signs, as files in DIR."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def make_ca(self, name="ca", cn="sluice test CA"):
        """NAME.pem and NAME.key: an ECDSA P-256 test CA."""
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                self.path(name + ".key"), "-out", self.path(name + ".pem"),
                "-days", "30", "-subj", "/CN=" + cn)

    def make_cert(self, name, cn, sans, days=10, client=False, ca="ca",
                  subj=None):
        """A certificate signed by the test CA (or CA): NAME.pem,
        NAME.key; SUBJ replaces the subject "/CN=CN"."""
        p = self.path
        openssl("req", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                p(name + ".key"), "-out", p(name + ".csr"), "-subj",
                subj or "/CN=" + cn)
        with open(p(name + ".ext"), "w") as f:
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client
                                               else "serverAuth"))
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p(ca + ".pem"),
                "-CAkey", p(ca + ".key"), "-CAcreateserial", "-out",
                p(name + ".pem"), "-days", str(days), "-extfile",
                p(name + ".ext"))


def client_context(cafile):
    """A client context that tells a close_notify from a bare TCP FIN.
    Debian 12's Python (3.11.2) sets OP_IGNORE_UNEXPECTED_EOF in
    create_default_context, so a ragged end reads as a clean one there
    (later 3.11 releases dropped it): checks of how a stream ends would
    pass for nothing."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def memory_tls(ctx, sock, server_hostname):
    """Handshake over SOCK through memory BIOs: (SSLObject, incoming BIO,
    outgoing BIO). Writes to the object queue records in the outgoing BIO;
    the caller decides when and in how many sends they leave."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            got = sock.recv(65536)
            if not got:
                raise ConnectionError("closed during the handshake")
            inc.write(got)
    sock.sendall(out.read())
    return obj, inc, out


def read_tls(sock, obj, inc, on_data=None):
    """Plaintext from a memory_tls connection until close_notify, TCP EOF or
    a timeout: (data, clean), clean when it ended with close_notify.
    ON_DATA(len(data)) runs after each piece."""
    data = b""
    while True:
        try:
            got = sock.recv(65536)
        except socket.timeout:
            return data, False
        if not got:
            return data, False
        inc.write(got)
        while True:
            try:
                piece = obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:
                return data, False
            if not piece:  # close_notify
                return data, True
            data += piece
            if on_data is not None:
                on_data(len(data))
