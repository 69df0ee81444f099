"""Integration test harness: real sluice daemons in front of real origins.

Every test script imports this module. It finds the binaries through
SL_TOP_BUILDDIR (set by `make check`), starts processes on free loopback
ports with generated configs, and kills every process it started (by pid)
when the test ends, even on failure.

Test scripts are plain Python: they assert, print what they checked, and
exit non-zero on the first failure. `skip(reason)` exits 77, which the
automake test driver reports as SKIP.
"""

import atexit
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("SL_TOP_BUILDDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.environ.get("SL_TOP_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICE = os.path.join(BUILD, "sluice")
ORIGIN = os.path.join(BUILD, "tests", "origin", "sl-origin")

_procs = []


def _built_with_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# Under AddressSanitizer freed memory sits in a quarantine, so RSS says
# nothing about buffering: memory assertions are skipped there.
ASAN = _built_with_asan(SLUICE)
_tmp = tempfile.TemporaryDirectory(prefix="sluice-test-")
TMP = _tmp.name


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def _too_slow(*_):
    # A stalled connection must fail the test, not hang the suite (a
    # thread still running would keep sys.exit from returning).
    print("FAIL: still running after %d s (a stall?)" % LIMIT, flush=True)
    _cleanup()
    os._exit(1)


LIMIT = int(os.environ.get("SL_TEST_LIMIT", "600"))
signal.signal(signal.SIGALRM, _too_slow)
signal.alarm(LIMIT)

_checks = 0


def check(cond, what):
    """Assert one user-visible property; print it so logs show progress."""
    global _checks
    _checks += 1
    if not cond:
        print("FAIL: " + what, flush=True)
        sys.exit(1)
    print("ok - " + what, flush=True)


def wait_until(cond, timeout=10.0):
    """Poll COND until it is true or TIMEOUT seconds pass; its last value.
    Tests wait for what they check this way, never with a fixed sleep."""
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value or time.time() >= deadline:
            return value
        time.sleep(0.05)


def check_conf(text, expect, what):
    """`sluice -t` on a file holding TEXT must exit 1 and print the file's
    path followed by EXPECT (":LINE: message")."""
    path = os.path.join(TMP, "bad-%d.ini" % free_port())
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([SLUICE, "-t", "-c", path], capture_output=True,
                       text=True, timeout=60)
    out = r.stdout + r.stderr
    check(r.returncode == 1 and (path + expect) in out,
          "%s: %s" % (what, out.strip().splitlines()[-1] if out.strip()
                      else "(no output)"))


def done():
    print("%d passed, 0 failed" % _checks, flush=True)
    sys.exit(0)


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(77)


# Ports for daemons the tests start. A port the kernel handed out with
# bind(0) and that was then closed sits in the ephemeral range, where any
# process's outgoing connection may take it before the daemon binds it (a
# CI run failed so: sluice exited "address in use"). So ports come from
# below that range, where connect() never picks, and each is held by an
# flock on TMPDIR/sluice-test-ports/PORT for as long as this test runs,
# so tests running in parallel never pick the same one.
_PORT_DIR = os.path.join(tempfile.gettempdir(), "sluice-test-ports")
_port_locks = []


def _unreserved_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if low - 1 - 10000 < 2000:
        return None
    return 10000, low - 1


def _bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _kernel_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port():
    """A port on 127.0.0.1 that is free and stays this test's: outside
    the ephemeral range and locked against other tests of the run."""
    import fcntl
    import random
    span = _unreserved_range()
    try:
        os.makedirs(_PORT_DIR, mode=0o1777, exist_ok=True)
    except OSError:
        span = None
    if span is None:
        return _kernel_port()
    for _ in range(200):
        port = random.randint(*span)
        try:
            fd = os.open(os.path.join(_PORT_DIR, str(port)),
                         os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _bindable(port):
            _port_locks.append(fd)
            return port
        os.close(fd)
    return _kernel_port()


def _log_tail(path, lines=8):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_port(port, proc=None, timeout=10.0, log=None):
    """Wait until something listens on PORT; if PROC exits first, fail
    with the end of its LOG (the daemon's own reason)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                "process exited with %d before listening on %d%s"
                % (proc.returncode, port,
                   (":\n" + _log_tail(log)) if log else ""))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on port %d" % port)


class Origin:
    """One sl-origin process."""

    def __init__(self, name, *args, port=None):
        self.name = name
        self.port = port or free_port()
        self.args = list(args)
        self.start()

    def start(self):
        self.log = open(os.path.join(TMP, "origin-%s.log" % self.name), "ab")
        self.proc = subprocess.Popen(
            [ORIGIN, "--listen", "127.0.0.1:%d" % self.port,
             "--name", self.name] + self.args,
            stdout=self.log, stderr=self.log)
        _procs.append(self.proc)
        wait_port(self.port, self.proc, log=self.log.name)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def stats(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/__origin/stats")
        import json
        return json.loads(c.getresponse().read())

    def reset(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/__origin/reset")
        c.getresponse().read()

    def last(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/__origin/last")
        return c.getresponse().read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def config(listen_port, services, sluice_extra="", workers=2):
    """Render an INI config. SERVICES maps a service name to a dict:
    {"versions": {"blue": ([addrs], weight)}, "stable": "blue", ...} with
    any other keys copied into the [service:] section."""
    import re
    if not re.search(r"^control_socket\s*=", sluice_extra, re.M):
        sluice_extra += "\ncontrol_socket = %s/ctl-%d.sock\n" % (TMP, listen_port)
    if not re.search(r"^state_file\s*=", sluice_extra, re.M):
        sluice_extra += "\nstate_file = %s/state-%d.ini\n" % (TMP, listen_port)
    lines = ["[sluice]", "workers = %d" % workers, sluice_extra, "",
             "[listener:main]", "bind = 127.0.0.1:%d" % listen_port, ""]
    for name, svc in services.items():
        lines.append("[service:%s]" % name)
        for k, v in svc.items():
            if k in ("versions", "rollout"):
                continue
            lines.append("%s = %s" % (k, v))
        lines.append("")
        for vname, (addrs, weight) in svc["versions"].items():
            lines.append("[version:%s/%s]" % (name, vname))
            lines.append("servers = %s" % " ".join(addrs))
            lines.append("weight = %s" % weight)
            lines.append("")
    return "\n".join(lines) + "\n"


class Sluice:
    """One sluice daemon with a generated config. Its control socket is
    TMP/ctl-PORT.sock and its state file TMP/state-PORT.ini unless the
    config says otherwise."""

    def __init__(self, services=None, sluice_extra="", workers=2,
                 text=None, port=None):
        self.port = port or free_port()
        self.path = os.path.join(TMP, "sluice-%d.ini" % self.port)
        if text is None:
            text = config(self.port, services, sluice_extra, workers)
        self.write(text)
        self.start()

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def start(self):
        self.logpath = os.path.join(TMP, "sluice-%d.log" % self.port)
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([SLUICE, "-c", self.path],
                                     stdout=self.log, stderr=self.log)
        _procs.append(self.proc)
        wait_port(self.port, self.proc, log=self.logpath)
        # Ready once the control socket answers too (when it is ours).
        with open(self.path) as f:
            ours = self.ctl_path in f.read()
        deadline = time.time() + 10
        while ours and time.time() < deadline and self.proc.poll() is None:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.ctl_path)
                s.close()
                break
            except OSError:
                time.sleep(0.05)

    def stop(self, timeout=15):
        """SIGTERM, wait; returns the exit code (must be 0)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode

    def restart(self):
        code = self.stop()
        self.start()
        return code

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    @property
    def ctl_path(self):
        return os.path.join(TMP, "ctl-%d.sock" % self.port)

    @property
    def state_path(self):
        return os.path.join(TMP, "state-%d.ini" % self.port)

    def ctl(self, line, path=None, timeout=10):
        """Send one control command; return the decoded JSON reply."""
        return ctl_at(path or self.ctl_path, line, timeout)

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def get(self, path="/", headers=None, method="GET", body=None):
        """One request on a new connection; returns (status, headers, body)."""
        c = self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, r, data

    def raw(self, data, timeout=5.0, shutdown=True, port=None):
        """Send raw bytes (to PORT, by default the first listener's);
        return everything read until close or timeout."""
        s = socket.create_connection(("127.0.0.1", port or self.port),
                                     timeout)
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        out = b""
        s.settimeout(timeout)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        s.close()
        return out


def ctl_exchange(s, line):
    """One control command on connected Unix socket S; the decoded JSON
    reply."""
    import json
    s.sendall(line.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data)


def ctl_at(path, line, timeout=10):
    """One control command on a new connection to the socket at PATH."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return ctl_exchange(s, line)
    finally:
        s.close()


def admin_metrics(port):
    """The Prometheus text of the admin endpoint on 127.0.0.1:PORT."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()
    finally:
        c.close()


def metric_value(text, name, **labels):
    """The value of sample NAME with LABELS (a subset of its labels) in
    Prometheus text TEXT, or None when there is none."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(
                ('%s="%s"' % kv) in line for kv in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(name + " ") and not labels:
            return float(line.rsplit(" ", 1)[1])
    return None


def status_of(raw_response):
    """Status code of the first response in RAW_RESPONSE, or 0."""
    if not raw_response.startswith(b"HTTP/1."):
        return 0
    try:
        return int(raw_response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def pipelined(port, requests, timeout=10.0):
    """Send REQUESTS (bytes each) on one connection without waiting, then
    read the responses; returns a list of (status, headers dict, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.sendall(b"".join(requests))
    f = s.makefile("rb")
    out = []
    for req in requests:
        line = f.readline()
        if not line:
            break
        status = int(line.split(b" ", 2)[1])
        headers = {}
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if req.startswith(b"HEAD ") or status in (204, 304):
            n = 0
        body = f.read(n) if n else b""
        out.append((status, headers, body))
    s.close()
    return out
