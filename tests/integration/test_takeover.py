#!/usr/bin/env python3
"""Zero-downtime upgrade (--takeover) with a rollout running: from the
moment the new sluice starts, the old one makes no decisions. An
operator's abort sent to the new one stays aborted: the old one's analyzer
does not go on to promote the canary it still routes, nor writes the state
file, so a later restart does not bring the promotion back. A takeover
whose new sluice fails to start hands control back to the old one."""

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import SLUICE, Origin, Sluice, check, config, done, free_port, \
    wait_until

blue = Origin("blue")
green = Origin("green")

port = free_port()
admin_port = free_port()
text = config(port, {"shop": {
    "stable": "blue", "sticky": "header:X-User-Id",
    "versions": {"blue": ([blue.addr], 100), "green": ([green.addr], 0)}}},
    sluice_extra="admin = 127.0.0.1:%d\n" % admin_port, workers=1)
# Healthy canary, short steps: left alone, the analyzer promotes it
# within a few seconds.
text += """
[rollout:shop]
steps = 10 50 100
step_time = 1s
interval = 300ms
min_requests = 10
max_error_rate = 5%
max_latency_ratio = 5
"""
sl_started = time.monotonic()
sl = Sluice(text=text, port=port)
stop = threading.Event()


def load():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    while not stop.is_set():
        try:
            c.request("GET", "/x", headers={"X-User-Id": "u%d" % i})
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i += 1
        time.sleep(0.002)


loader = threading.Thread(target=load, daemon=True)
loader.start()


raw_ctl = harness.ctl_exchange


def logged(path, pattern):
    with open(path, "rb") as f:
        return re.search(pattern.encode(), f.read()) is not None


check(sl.ctl("show services")["pid"] == sl.proc.pid,
      "show services names the sluice that answers (its pid)")
r = sl.ctl("rollout start shop green")
check(r["ok"] and r["rollout"]["state"] == "running",
      "a rollout of green runs on the old sluice")
# An operator's connection to the old sluice, open before the upgrade.
old_conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
old_conn.settimeout(10)
old_conn.connect(sl.ctl_path)
check(raw_ctl(old_conn, "show rollout shop")["ok"], "it answers")

# The old one's uptime must differ from the new one's to tell them apart.
time.sleep(max(0, 4 - (time.monotonic() - sl_started)))
old = sl.proc
old_log = sl.logpath
new_log = sl.logpath + ".new"
log2 = open(new_log, "ab")
new_started = time.monotonic()
new = subprocess.Popen([SLUICE, "--takeover", "-c", sl.path], stdout=log2,
                       stderr=log2)
harness._procs.append(new)
check(wait_until(lambda: logged(new_log, r"took over from pid %d" % old.pid)
                 or new.poll() is not None),
      "the new sluice says it took over from the old one's pid")
check(logged(old_log, r"takeover begin: pid %d is taking over" % new.pid) and
      logged(old_log, r"takeover done: pid %d has taken over" % new.pid),
      "the old one records the handshake with the new one's pid")
# The admin port is the new one's alone from then on: scrapes taking
# turns between two processes would read each drop as a counter reset.
uptimes = [harness.metric_value(harness.admin_metrics(admin_port),
                                "sluice_uptime_seconds") for _ in range(20)]
check(new.poll() is None and old.poll() is None and
      all(u <= time.monotonic() - new_started + 1.5 for u in uptimes),
      "after the takeover every scrape of the admin port reaches the new "
      "sluice, though the old one runs (uptimes %r)" % sorted(set(uptimes)))
r = raw_ctl(old_conn, "rollout abort shop")
check(not r["ok"] and "pid %d is taking over" % new.pid in r["error"],
      "a mutating command reaching the old one is refused, naming the new "
      "one (%r)" % r)
check(raw_ctl(old_conn, "show rollout shop")["ok"],
      "reading it still works")
old_conn.close()

sl.proc = new
sl.logpath = new_log
# README's upgrade recipe waits for this: the new one's pid in the reply.
check(sl.ctl("show services")["pid"] == new.pid,
      "once it is up, the control socket's path reaches the new one")
r = sl.ctl("rollout abort shop")
check(r["ok"] and r["rollout"]["state"] == "aborted",
      "the operator aborts the rollout on the new sluice")
with open(old_log, "rb") as f:
    mark = len(f.read())
# Long enough for the old analyzer to advance twice and promote, were it
# still judging (steps of 1 s, looks every 300 ms).
time.sleep(3.5)
with open(old_log, "rb") as f:
    after = f.read()[mark:].decode(errors="replace")
check("rollout shop:" not in after,
      "the old sluice judges the rollout no more (%r)" % after[:300])
with open(sl.state_path) as f:
    saved = f.read()
check(" aborted " in saved and "weight = green 0.00" in saved and
      "promoted" not in saved,
      "the state file holds the abort, not a promotion (%r)" % saved)
old.send_signal(signal.SIGTERM)
check(old.wait(20) == 0, "the old sluice drains and exits 0")
with open(sl.state_path) as f:
    check(f.read() == saved, "and wrote nothing on its way out")
check(sl.restart() == 0, "the new sluice exits 0")
r = sl.ctl("show rollout shop")["rollout"]
svc = sl.ctl("show service shop")["service"]
w = {v["name"]: v["weight"] for v in svc["versions"]}
check(r["state"] == "aborted" and svc["stable"] == "blue" and
      w == {"blue": 100.0, "green": 0.0},
      "after a restart the rollout is still aborted, blue stable at 100%% "
      "(%s, %s, %r)" % (r["state"], svc["stable"], w))
check(r["reason"] == "aborted by an operator" and r["step_started"] is None
      and r["ended"] is not None,
      "with its reason kept by the state file, and no made-up step start "
      "(%r, %r)" % (r["reason"], r["step_started"]))

# A takeover whose new sluice dies before it is up: the running one
# decides again. (Here its event log cannot be opened: below a file.)
bad_path = os.path.join(harness.TMP, "takeover-bad-%d.ini" % port)
with open(bad_path, "w") as f:
    f.write(text.replace("[sluice]\n", "[sluice]\nevent_log = %s/x\n"
                         % sl.state_path, 1))
with open(sl.logpath, "rb") as f:
    mark = len(f.read())
bad = subprocess.Popen([SLUICE, "--takeover", "-c", bad_path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
harness._procs.append(bad)
_, err = bad.communicate(timeout=20)
check(bad.returncode == 1, "a new sluice that cannot start exits 1 (%r)"
      % err[-200:])
check(wait_until(lambda: logged(sl.logpath, r"takeover abandoned: pid %d"
                                % bad.pid)),
      "the running one notices it went")
r = sl.ctl("set weights shop blue=90 green=10")
check(r["ok"], "and takes commands again (%r)" % r.get("error"))

# One that fails later, with its control socket already bound (its
# read-only socket is the same file spelt another way): it has not taken
# the path yet, so the running sluice is still the one sluicectl reaches.
ctl_dir, ctl_name = os.path.split(sl.ctl_path)
with open(bad_path, "w") as f:
    f.write(text.replace("[sluice]\n", "[sluice]\ncontrol_socket_ro = %s//%s\n"
                         % (ctl_dir, ctl_name), 1))
bad = subprocess.Popen([SLUICE, "--takeover", "-c", bad_path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
harness._procs.append(bad)
_, err = bad.communicate(timeout=20)
check(bad.returncode == 1 and b"is the socket" in err,
      "a new sluice whose sockets clash exits 1 (%r)" % err[-200:])
check(wait_until(lambda: logged(sl.logpath, r"takeover abandoned: pid %d"
                                % bad.pid)),
      "the running one notices it went")
r = sl.ctl("show service shop")
check(r["ok"] and r["service"]["versions"][1]["weight"] == 10.0,
      "and still answers on its control socket's path (%r)" % r.get("error"))
with open(sl.state_path) as f:
    check("weight = green 10.00" in f.read(), "and writes its state file")

# The old one stopped right after the new one starts (a script that does
# not wait): the old one closes the handshake's connection unanswered as
# it goes, and the new one must start on its own. It exited 1 ("no
# answer: Connection reset by peer"), leaving nothing listening.
def answers(pid):
    """Does the control socket's path reach the sluice PID?"""
    try:
        return sl.ctl("show services").get("pid") == pid
    except (OSError, ValueError):
        return False


lost = []
for i in range(5):
    old = sl.proc
    log2 = open(sl.logpath + ".%d" % i, "ab")
    new = subprocess.Popen([SLUICE, "--takeover", "-c", sl.path],
                           stdout=log2, stderr=log2)
    harness._procs.append(new)
    time.sleep(0.002 * i)
    old.send_signal(signal.SIGTERM)
    old.wait(20)
    up = wait_until(lambda: new.poll() is not None or answers(new.pid), 20)
    if not up or new.poll() is not None:
        lost.append((i, new.poll()))
        break
    sl.proc = new
    sl.logpath = log2.name
check(not lost, "the old one stopped at once, 5 times: the new one is up "
      "each time (lost: %r)" % lost)
check(sl.get("/x")[0] == 200, "and serves")

stop.set()
loader.join(10)
check(sl.stop() == 0, "sluice exits 0")

# Deterministic, with a stand-in for the old one: it takes the handshake's
# connection, removes its socket and closes without a word, as a stopping
# sluice does.
fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
fake.bind(sl.ctl_path)
fake.listen(1)


def stand_in():
    c, _ = fake.accept()
    c.recv(100)
    os.unlink(sl.ctl_path)
    c.close()
    fake.close()


t = threading.Thread(target=stand_in, daemon=True)
t.start()
log3 = open(sl.logpath + ".fake", "ab")
new = subprocess.Popen([SLUICE, "--takeover", "-c", sl.path], stdout=log3,
                       stderr=log3)
harness._procs.append(new)
check(wait_until(lambda: new.poll() is not None or
                 logged(log3.name, r"starting on its own") and
                 os.path.exists(sl.ctl_path), 20) and new.poll() is None,
      "an old one that goes mid-handshake: the new one starts on its own "
      "(exit %r)" % new.poll())
sl.proc = new
sl.logpath = log3.name
check(wait_until(lambda: sl.get("/x")[0] == 200, 10), "and serves")
check(sl.stop() == 0, "and exits 0")
done()
