#!/usr/bin/env python3
"""What sluice refuses at start, and what it warns about: a control socket
path that names a file (it was deleted), two control sockets on one path,
a listener or admin address another process already listens on (traffic
was split silently between two daemons), a state directory that cannot be
written, and listeners a reload adds, removes or moves (which only a
restart applies), a SIGHUP sent as soon as the port answers, names
that control commands or sluicectl reserve ("previous", "--json"), files
made under umask 000, and a stderr pipe nobody reads (it stopped the
workers)."""

import os
import signal
import socket
import subprocess
import time

import harness
from harness import (SLUICE, TMP, Origin, Sluice, check, check_conf, config,
                     done, free_port, wait_port, wait_until)
from tlskit import PKI

blue = Origin("blue")
green = Origin("green")


def base(port, extra=""):
    """The reviewer's base config: one worker, one listener, service s
    with blue at 100% and green at 0%."""
    return config(port, {"s": {"stable": "blue", "versions": {
        "blue": ([blue.addr], 100), "green": ([green.addr], 0)}}},
        sluice_extra=extra, workers=1)


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start_fails(path, *args):
    """Start sluice on config PATH; it must exit non-zero by itself.
    Returns (exited, its output)."""
    try:
        r = subprocess.run([SLUICE, "-c", path] + list(args),
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as e:  # it started: run() killed it
        out = e.stderr or b""
        return False, out.decode("utf-8", "replace") if isinstance(
            out, bytes) else out
    return r.returncode != 0, r.stdout + r.stderr


ctl_command = harness.ctl_at


# --- control_socket naming a file that is not a socket: refused, kept.
port = free_port()
cfg = os.path.join(TMP, "self.ini")
text = base(port, "control_socket = %s\n" % cfg)
write("self.ini", text)
r = subprocess.run([SLUICE, "-t", "-c", cfg], capture_output=True,
                   text=True, timeout=60)
out = r.stdout + r.stderr
check(r.returncode == 1 and
      "%s:3: [sluice] control_socket: '%s' exists and is not a socket; "
      "sluice will not remove it" % (cfg, cfg) in out,
      "sluice -t: control_socket naming the config file is an error with "
      "its line (%s)" % out.strip())
exited, out = start_fails(cfg)
check(exited and "exists and is not a socket" in out,
      "and sluice refuses to start on it (%s)" % out.strip()[-200:])
with open(cfg) as f:
    check(f.read() == text, "the config file is still there, unchanged")

# --- control_socket_ro: a path of its own.
port = free_port()
ctl = os.path.join(TMP, "ctl-%d.sock" % port)
check_conf(base(port, "control_socket = %s\ncontrol_socket_ro = %s\n"
                % (ctl, ctl)),
           ":4: [sluice] control_socket_ro: '%s' is control_socket too "
           "(line 3); the read-only socket needs a path of its own" % ctl,
           "sluice -t: control_socket_ro equal to control_socket")
# The same file under another spelling passes -t, and start says why.
path = write("ro-%d.ini" % port, base(
    port, "control_socket = %s\ncontrol_socket_ro = %s\n"
    % (ctl, ctl.replace("/ctl-", "//ctl-"))))
exited, out = start_fails(path)
check(exited and "needs a path of its own" in out and
      "in use by another process" not in out,
      "the same socket spelled twice: start refused, saying so (%s)"
      % out.strip()[-200:])

# --- admin on a listener's address: both bound with SO_REUSEPORT, so
# requests landed on either at random. A config error now.
port = free_port()
check_conf(base(port, "admin = 127.0.0.1:%d\n" % port),
           ":3: [sluice] admin: address '127.0.0.1:%d' is already bound by "
           "[listener:main] (line " % port,
           "sluice -t: admin on the listener's address")

# --- A second sluice (no --takeover) on addresses a running one listens
# on: refused. With SO_REUSEPORT alone it started, and the kernel split
# the connections between two daemons with different runtime state.
port, admin = free_port(), free_port()
a = Sluice(text=base(port, "admin = 127.0.0.1:%d\n" % admin), port=port)
check("cannot be written" not in a.logtext(),
      "a state directory that can be written is not warned about")


def other(name, listen, extra=""):
    """A config of another sluice: its own control socket and state."""
    return write(name + ".ini", base(listen, (
        "control_socket = %s/%s.sock\nstate_file = %s/%s-state.ini\n"
        % (TMP, name, TMP, name)) + extra))


exited, out = start_fails(other("same-listener", port))
check(exited and ("[listener:main]: cannot listen on 127.0.0.1:%d: address "
                  "already in use (to replace a running sluice, start with "
                  "--takeover)" % port) in out,
      "a second sluice on the listener's address is refused (%s)"
      % out.strip()[-300:])
check(not os.path.exists(os.path.join(TMP, "same-listener.sock")),
      "before it opened its control socket")
exited, out = start_fails(other("same-admin", free_port(),
                                "admin = 127.0.0.1:%d\n" % admin))
check(exited and ("admin 127.0.0.1:%d: cannot listen: address already in "
                  "use (to replace a running sluice, start with --takeover)"
                  % admin) in out,
      "a second sluice on the admin address is refused (%s)"
      % out.strip()[-300:])
statuses = [a.get("/n%d" % i)[0] for i in range(20)]
check(a.proc.poll() is None and statuses == [200] * 20,
      "the running sluice serves every request (%r)" % statuses)
# --takeover is how a second one starts beside it (test_resilience has
# the whole upgrade).
path = other("takeover", port)
log = open(os.path.join(TMP, "takeover.log"), "ab")
b = subprocess.Popen([SLUICE, "--takeover", "-c", path], stdout=log,
                     stderr=log)
harness._procs.append(b)  # killed at exit if the test fails
check(wait_until(lambda: b.poll() is not None or os.path.exists(
    os.path.join(TMP, "takeover.sock")), 20) and b.poll() is None,
      "with --takeover a second sluice starts on the same address")
b.send_signal(signal.SIGTERM)
check(b.wait(30) == 0, "and stops cleanly")

# --- A state directory that cannot be written is warned about at start
# (sluice still starts; changes are refused until it can be written).
# access(W_OK) said yes to a regular file standing where the directory
# should be, and to root on a read-only file system. No state file can be
# there, so there is none to read: sluice starts (it refused to, saying it
# could not read the file, right after the warning that it would run).
plain = write("plain-file", "not a directory\n")
port = free_port()
path = write("plain-%d.ini" % port,
             base(port, "state_file = %s/state.ini\n" % plain))
logpath = os.path.join(TMP, "plain-%d.log" % port)
with open(logpath, "ab") as log:
    p = subprocess.Popen([SLUICE, "-c", path], stdout=log, stderr=log)
harness._procs.append(p)
wait_port(port, p, log=logpath)
with open(logpath) as f:
    text = f.read()
check(("state file %s/state.ini: its directory %s is not a directory (a "
       "file stands there or above it)" % (plain, plain)) in text,
      "a regular file where the state directory should be is warned about")
ctl = os.path.join(TMP, "ctl-%d.sock" % port)
check(wait_until(lambda: os.path.exists(ctl)), "sluice started")
r = ctl_command(ctl, "set weights s blue=50 green=50")
check(not r["ok"] and "cannot write state file" in r.get("error", ""),
      "and a change is refused, as the warning said (%s)" % r.get("error"))
p.terminate()
check(p.wait(30) == 0, "sluice stops cleanly")
if os.path.isdir("/sys/kernel"):
    # sysfs takes no new files, not even from root.
    port = free_port()
    sl = Sluice(text=base(port, "state_file = /sys/sluice-test-state.ini\n"),
                port=port)
    check("state file /sys/sluice-test-state.ini: its directory /sys cannot "
          "be written" in sl.logtext(),
          "/sys as the state directory is warned about (uid %d)"
          % os.geteuid())
    check(sl.stop() == 0, "and sluice ran")
check(not [f for f in os.listdir(TMP) if ".check." in f],
      "the check leaves no file behind")

# --- Reload: listeners are bound at start only. A reload that adds,
# removes or moves one names it in a warning (it was ignored silently),
# compared with what runs, not with the last reload.
port, old_port, moved, new_port = (free_port() for _ in range(4))
started = base(port) + "[listener:old]\nbind = 127.0.0.1:%d\n" % old_port
sl = Sluice(text=started, port=port)


def reload(text):
    n = sl.logtext().count("reloaded ")
    sl.write(text)
    sl.proc.send_signal(signal.SIGHUP)
    check(wait_until(lambda: sl.logtext().count("reloaded ") > n, 20),
          "reload %d done" % (n + 1))


def listener_warnings():
    return [line.split(" warn: ", 1)[1] for line in sl.logtext().splitlines()
            if " warn: reload: [listener:" in line]


reload(base(port).replace("bind = 127.0.0.1:%d\n" % port,
                          "bind = 127.0.0.1:%d\n" % moved) +
       "[listener:new]\nbind = 127.0.0.1:%d\n" % new_port)
want = [
    "reload: [listener:main] bind changed from 127.0.0.1:%d to 127.0.0.1:%d; "
    "it keeps listening on 127.0.0.1:%d until sluice restarts"
    % (port, moved, port),
    "reload: [listener:old] was removed; it keeps listening on "
    "127.0.0.1:%d until sluice restarts" % old_port,
    "reload: [listener:new] is new; it takes effect (listening on "
    "127.0.0.1:%d) when sluice restarts" % new_port]
got = listener_warnings()
check(sorted(got) == sorted(want),
      "a listener moved, removed and added: one warning each (%r)" % got)
check(sl.get("/")[0] == 200 and
      sl.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             port=old_port).startswith(b"HTTP/1.1 200"),
      "both listeners bound at start still serve")
reload(started)
check(listener_warnings() == got,
      "back to the listeners it runs: no warning (%r)"
      % listener_warnings()[len(got):])
# A plain listener cannot come back with TLS (removed by one reload, back
# by the next): its socket would go on serving plain HTTP. The check is
# against what runs, so the second reload is refused as a direct one is.
reload(base(port))
pki = PKI(os.path.join(TMP, "pki"))
pki.make_ca()
n = sl.logtext().count("reload refused")
sl.write(started + "tls_cert = %s\ntls_key = %s\n"
         % (pki.path("ca.pem"), pki.path("ca.key")))
sl.proc.send_signal(signal.SIGHUP)
check(wait_until(lambda: sl.logtext().count("reload refused") > n, 20) and
      "[listener:old]: a running plain HTTP listener cannot turn to TLS "
      "without a restart" in sl.logtext(),
      "a listener turned to TLS by two reloads is refused, naming it")
check(sl.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             port=old_port).startswith(b"HTTP/1.1 200"),
      "and it goes on serving plain HTTP")
check(sl.stop() == 0, "sluice stops cleanly")

# A config whose path is not UTF-8 (a directory named by another locale):
# the start and reload events keep their details, the bytes as \xNN
# (jansson refuses such a string, and the whole 'after' object was lost,
# the reason for a refused reload with it).
odd = os.path.join(TMP.encode(), b"conf\xffdir")
os.mkdir(odd)
odd_path = os.path.join(odd, b"s.ini")
odd_port = free_port()
odd_text = config(odd_port, {"s": {"stable": "v", "versions": {
    "v": ([blue.addr], 100)}}})
with open(odd_path, "w") as f:
    f.write(odd_text)
odd_log = open(os.path.join(TMP, "odd.log"), "wb")
p = subprocess.Popen([SLUICE.encode(), b"-c", odd_path], stdout=odd_log,
                     stderr=odd_log)
harness._procs.append(p)
wait_port(odd_port, p)
odd_ctl = os.path.join(TMP, "ctl-%d.sock" % odd_port)
with open(odd_path, "w") as f:
    f.write(odd_text + "[bogus\n")
p.send_signal(signal.SIGHUP)
evs = []
for _ in range(200):
    # The port answers before the control socket exists: a refused or
    # missing socket is tried again.
    try:
        evs = harness.ctl_at(odd_ctl, "show events")["events"]
    except OSError:
        evs = []
    if any(e["command"] == "reload refused" for e in evs):
        break
    time.sleep(0.05)
after = {e["command"]: e["after"] for e in evs}
check(after.get("start") is not None and
      after["start"]["config"].endswith("conf\\xffdir/s.ini") and
      after.get("reload refused") is not None and
      "missing ']'" in after["reload refused"]["error"],
      "a config path that is not UTF-8: the events keep it, as \\xNN, and "
      "the refused reload's reason (%r)" % after)
p.terminate()
p.wait(10)

# A SIGHUP sent as soon as the listener's port answers (a deploy script
# that waits for the port, then reloads) is a reload, not the end of
# sluice: signals are caught before anything is bound. Sessions up to 15
# died of it in 1 to 3 starts of 20.
hup_port = free_port()
hup_path = write("hup.ini", base(hup_port))
died = []
for i in range(20):
    p = subprocess.Popen([SLUICE, "-c", hup_path], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    harness._procs.append(p)
    deadline = time.time() + 10
    while time.time() < deadline:  # no sleep: the window is short
        try:
            socket.create_connection(("127.0.0.1", hup_port), 0.5).close()
            break
        except OSError:
            pass
    p.send_signal(signal.SIGHUP)
    hup_ctl = os.path.join(TMP, "ctl-%d.sock" % hup_port)
    reloaded = False
    for _ in range(200):
        if p.poll() is not None:
            break
        try:
            evs = harness.ctl_at(hup_ctl, "show events")["events"]
            if any(e["command"] == "reload" for e in evs):
                reloaded = True
                break
        except OSError:
            pass
        time.sleep(0.05)
    if p.poll() is not None or not reloaded:
        died.append((i, p.returncode, reloaded))
    p.terminate()
    p.wait(10)
check(not died, "a SIGHUP as soon as the port answers reloads, 20 of 20 "
      "starts (failed: %r)" % died)

# --- Reserved names. `switch SVC previous` is the instant rollback to the
# previous stable version: a version named "previous" made the second
# `switch s2 previous` switch to it instead (replying "was b" falsely).
# And sluicectl takes "--json" as its option wherever it stands, so a
# service or version of that name could not be named.
port = free_port()
for svc, version, why in (
        ("s2", "previous", "'previous' is reserved: `switch SVC previous` "
         "names the previous stable version"),
        ("s2", "--json", "'--json' is reserved: sluicectl reads it as its "
         "option wherever it is"),
        ("--json", "b", "'--json' is reserved: sluicectl reads it as its "
         "option wherever it is")):
    text = config(port, {svc: {"stable": "a", "versions": {
        "a": ([blue.addr], 100), version: ([green.addr], 0)}}}, workers=1)
    title = "version:%s/%s" % (svc, version) if version != "b" \
        else "service:" + svc
    line = text.splitlines().index("[%s]" % title) + 1
    check_conf(text, ":%d: invalid name in [%s]: %s" % (line, title, why),
               "sluice -t: [%s] is refused with its line" % title)

# Started with umask 000: the state file and the event log are still
# never writable by others (whoever can write the state file routes the
# traffic after the next restart; the event log is the audit trail), and
# the event log's missing directory is created, as the state file's is.
events = os.path.join(TMP, "made", "by", "sluice", "events.jsonl")
old_mask = os.umask(0)
try:
    port = free_port()
    um = Sluice(text=base(port, "event_log = %s\n" % events), port=port)
finally:
    os.umask(old_mask)
check(um.ctl("set weights s blue=90 green=10")["ok"], "a change under umask 0")
modes = {p: os.stat(p).st_mode & 0o777 for p in (um.state_path, events)}
check(all(m & 0o022 == 0 for m in modes.values()),
      "state file and event log are not writable by group or others "
      "(%s)" % {os.path.basename(p): oct(m) for p, m in modes.items()})
check(um.stop() == 0, "that sluice stops cleanly")

# stderr is a pipe whose reader stalled (a log shipper, "| logger"):
# sluice loses log lines, counted, instead of blocking the workers that
# write them (they stopped serving once 64 KiB of lines waited).
port = free_port()
admin = free_port()
path = write("stderr-pipe.ini", base(port, "admin = 127.0.0.1:%d\n" % admin))
proc = subprocess.Popen([SLUICE, "-d", "-c", path], stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
harness._procs.append(proc)  # killed at exit if a check fails
wait_port(port, proc)
served = 0
for i in range(1500):  # each a debug line: ~150 KB, the pipe holds 64
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"\x01 not http %d\r\n\r\n" % i)
        if s.recv(100).startswith(b"HTTP/1.1 400"):
            served += 1
        s.close()
    except OSError:
        break
check(served == 1500, "with stderr a full pipe, 1500 bad requests are all "
      "answered (%d)" % served)
m = harness.admin_metrics(admin)
lost = harness.metric_value(m, "sluice_log_lines_dropped_total")
check(lost is not None and lost > 0,
      "and the lines the pipe could not take are counted (%r)" % lost)
os.set_blocking(proc.stderr.fileno(), False)
while True:  # the reader catches up
    try:
        if not os.read(proc.stderr.fileno(), 65536):
            break
    except BlockingIOError:
        break
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"\x01\r\n\r\n")
s.recv(100)
s.close()
proc.send_signal(signal.SIGTERM)
os.set_blocking(proc.stderr.fileno(), True)
rest = proc.stderr.read().decode("utf-8", "replace")
check(proc.wait(20) == 0, "that sluice stops cleanly")
check("log lines lost: stderr, a pipe, was full" in rest,
      "once read again, the log says how many lines were lost")

done()
