#!/usr/bin/env python3
"""Control clients that hold a slot without using it are closed, so that
256 silent connections (the read-only socket is mode 0666: any local
user) cannot lock sluicectl out; what legitimately stays connected
(rollout wait, watch, the takeover handshake) is not. And sluicectl
treats "too many control clients" as the socket being unusable, never as
the daemon's answer: rollout wait tries again within its --timeout and
exits 3, not 1 ("reverted or aborted"), if no slot comes free."""

import http.client
import os
import socket
import subprocess
import time

from harness import (BUILD, Origin, Sluice, TMP, check, config, done,
                     free_port, metric_value, wait_until)

CTL = os.path.join(BUILD, "sluicectl")
ROLLOUT = "[rollout:shop]\nsteps = 10 50\nstep_time = 600s\ninterval = 1s\n"
blue = Origin("blue")
green = Origin("green")


def services():
    return {"shop": {"path_prefix": "/", "stable": "blue",
                     "sticky": "header:X-User-Id",
                     "versions": {"blue": ([blue.addr], 100),
                                  "green": ([green.addr], 0)}}}


def start(extra):
    port = free_port()
    ro = os.path.join(TMP, "ro-%d.sock" % port)
    sl = Sluice(text=config(port, services(), "control_socket_ro = %s\n%s"
                            % (ro, extra)) + ROLLOUT, port=port)
    return sl, ro


def sluicectl(path, *args, timeout=60):
    p = subprocess.run([CTL, "-s", path] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def background(path, *args):
    return subprocess.Popen([CTL, "-s", path] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def connect(path, send=b""):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    if send:
        s.sendall(send)
    return s


def closed_within(s, seconds):
    """Seconds until the daemon closed S (EOF or reset, nothing read), or
    None if it is still open after SECONDS."""
    t0 = time.time()
    s.settimeout(seconds)
    try:
        data = s.recv(100)
    except socket.timeout:
        return None
    except ConnectionResetError:
        data = b""
    return time.time() - t0 if data == b"" else None


# Run as root the socket's limit (256) is met; as anyone else a user's
# share (64) is (test_control.py says more).
if os.geteuid() == 0:
    LIMIT, REFUSAL = 256, "too many control clients"
else:
    LIMIT, REFUSAL = 64, "too many control clients of this user"


def refused(sl, path):
    try:
        return sl.ctl("show services", path).get("error") == REFUSAL
    except (OSError, ValueError):
        return False


# ---- with the defaults (control_line_timeout 10s) ----
sl, ro = start("")
check(sluicectl(sl.ctl_path, "rollout", "start", "shop", "green")[0] == 0,
      "a rollout runs (step_time 600s: it waits for its promote)")

# Slots held by clients that did send a command (between commands, within
# control_idle_timeout): a rollout wait and a one-shot command cannot talk
# to sluice, which is exit 3, not the daemon's "no" (1).
held = []
for _ in range(LIMIT):
    s = connect(ro, b"help\n")
    s.recv(1)  # its reply: the command is done
    held.append(s)
check(wait_until(lambda: refused(sl, ro)),
      "%d clients that sent a command hold every slot of the read-only "
      "socket" % LIMIT)
t0 = time.time()
rc, out, err = sluicectl(ro, "rollout", "wait", "shop", "--timeout", "3")
check(rc == 3 and REFUSAL in err and time.time() - t0 >= 2.5,
      "rollout wait that never gets a slot tries again until its "
      "--timeout and exits 3, never 1 (reverted or aborted): %d after "
      "%.1f s: %s" % (rc, time.time() - t0, err.strip()[-160:]))
rc, out, err = sluicectl(ro, "--json", "rollout", "wait", "shop",
                         "--timeout", "1")
check(rc == 3 and '"ok":false' in out and REFUSAL in out,
      "with --json too: exit 3 and the error line names the refusal (%d: "
      "%s)" % (rc, out.strip()[-160:]))
rc, out, err = sluicectl(ro, "show", "services")
check(rc == 3 and REFUSAL in err,
      "sluicectl show services, refused a slot, exits 3 (cannot talk to "
      "sluice), not 1 (%d: %s)" % (rc, err.strip()[-120:]))
for s in held:
    s.close()
check(wait_until(lambda: not refused(sl, ro)), "slots free again")

# Now silent clients: connected, nothing sent, or half a line. They hold
# every slot, until control_line_timeout closes them.
held = [connect(ro, b"show serv" if i % 8 == 0 else b"")
        for i in range(LIMIT)]
check(wait_until(lambda: refused(sl, ro)),
      "%d silent clients hold every slot of the read-only socket" % LIMIT)
t_full = time.time()
wait = background(ro, "rollout", "wait", "shop", "--timeout", "120")
watch = background(ro, "watch", "shop", "--interval", "0.2", "--count", "2")
check(wait_until(lambda: refused(sl, ro) and wait.poll() is None, 2),
      "rollout wait, refused a slot, keeps waiting (no exit 1)")
check(wait_until(lambda: sluicectl(ro, "show", "services")[0] == 0, 40),
      "sluicectl is served again once the silent clients are closed "
      "(control_line_timeout 10s; after %.1f s)" % (time.time() - t_full))
gone = [closed_within(s, 5) is not None for s in held]
check(all(gone), "every silent client was closed (%d of %d)"
      % (sum(gone), len(gone)))
for s in held:
    s.close()
try:
    out, err = watch.communicate(timeout=40)
except subprocess.TimeoutExpired:
    watch.kill()
    out, err = watch.communicate()
check(watch.returncode == 0 and out.count("stable: blue") == 2,
      "watch started while every slot was taken draws its frames once one "
      "comes free, exit 0 (%s: %s)" % (watch.returncode, err.strip()[-160:]))
check(sluicectl(sl.ctl_path, "rollout", "promote", "shop")[0] == 0,
      "promote the rollout")
try:
    out, err = wait.communicate(timeout=40)
except subprocess.TimeoutExpired:
    wait.kill()
    out, err = wait.communicate()
check(wait.returncode == 0 and REFUSAL in err and "promoted" in out,
      "that rollout wait said the socket was full, got a slot, and reports "
      "the promotion: exit 0 (%s: %s)" % (wait.returncode,
                                         err.strip()[-200:]))
log = sl.logtext()
n = log.count("closed a client")
check(1 <= n <= 5 and "control_line_timeout" in log,
      "the closures are logged, %d lines for %d clients (at most one a "
      "10 s)" % (n, LIMIT))
n = log.count("refusing one")
check(1 <= n <= 10, "and so are the refusals, %d lines for many more" % n)
check(sl.stop() == 0, "sluice stops cleanly")

# ---- short timeouts: what is closed when, and what never is ----
admin_port = free_port()
sl, ro = start("control_line_timeout = 1s\ncontrol_idle_timeout = 2s\n"
               "admin = 127.0.0.1:%d\n" % admin_port)

s = connect(sl.ctl_path)
t = closed_within(s, 15)
check(t is not None, "a client that sends nothing is closed after "
      "control_line_timeout (%s s)" % (t and "%.1f" % t))
s.close()

# A line sent a byte at a time does not hold the slot longer: its
# deadline runs from its first byte.
s = connect(sl.ctl_path)
t0 = time.time()
closed = False
try:
    for b in b"show services show services show services":
        s.sendall(bytes([b]))
        time.sleep(0.25)
except OSError:
    closed = True
t = time.time() - t0
closed = closed or closed_within(s, 10) is not None
check(closed and t < 8, "a line dripped a byte every 0.25 s is closed "
      "within control_line_timeout of its start (%.1f s)" % t)
s.close()

s = connect(sl.ctl_path, b"show services\n")
check(s.makefile("rb").readline().startswith(b'{"ok":true'),
      "a command is answered")
t = closed_within(s, 15)
check(t is not None, "then, idle after its reply, the client is closed "
      "after control_idle_timeout (%s s)" % (t and "%.1f" % t))
s.close()

# A client that keeps sending commands is never idle, for 3 times the
# idle timeout.
s = connect(sl.ctl_path)
f = s.makefile("rb")
answered = 0
for _ in range(12):
    s.sendall(b"show rollout shop\n")
    answered += f.readline().startswith(b'{"ok":true')
    time.sleep(0.5)
check(answered == 12, "a client sending a command every 0.5 s for 6 s is "
      "served all along (%d of 12)" % answered)
f.close()
s.close()

check(sluicectl(sl.ctl_path, "rollout", "start", "shop", "green")[0] == 0,
      "a rollout runs")
t0 = time.time()
rc, out, err = sluicectl(sl.ctl_path, "rollout", "wait", "shop",
                         "--timeout", "7")
check(rc == 2 and "reconnect" not in err and time.time() - t0 >= 6.5,
      "rollout wait polls on one connection for 3.5 times "
      "control_idle_timeout, never closed under it: exit 2 at its "
      "--timeout (%d: %s)" % (rc, err.strip()[-160:]))
rc, out, err = sluicectl(ro, "watch", "shop", "--interval", "4", "--count",
                         "2")
check(rc == 0 and out.count("stable: blue") == 2,
      "watch --interval 4 (longer than control_idle_timeout) draws every "
      "frame: it connects again when its idle connection was closed (%d: "
      "%s)" % (rc, err.strip()[-160:]))

c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
c.request("GET", "/metrics")
text = c.getresponse().read().decode()
c.close()
n = metric_value(text, "sluice_control_timeouts_total")
check(n is not None and n >= 3,
      "sluice_control_timeouts_total counts the closures (%s)" % n)

# The takeover handshake's connection waits for the new sluice to start,
# however long: it is never timed out.
s = connect(sl.ctl_path, b"takeover begin\n")
f = s.makefile("rb")
check(f.readline().startswith(b'{"ok":true'), "takeover begin is answered")
check(closed_within(s, 5) is None,
      "the takeover connection is still open after 5 s (2.5 times "
      "control_idle_timeout)")
s.sendall(b"takeover done\n")
check(f.readline().startswith(b'{"ok":true'),
      "and takeover done is answered on it")
f.close()
s.close()
# (takeover done closes the admin endpoint: the new sluice has it.)

done()
