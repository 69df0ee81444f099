#!/usr/bin/env python3
"""sluicectl against the real daemon: every command succeeds with readable
output and exit 0, each error path exits 1 with the daemon's reason on
stderr, --json passes the reply through, --owner acts under locks."""

import json
import os
import socket
import subprocess

import harness
from harness import (BUILD, SLUICE, Origin, Sluice, check, config, done,
                     free_port, wait_until)

CTL = os.path.join(BUILD, "sluicectl")
blue = Origin("blue")
green = Origin("green")
# A server that refuses connections: bound, not listening.
dead = socket.socket()
dead.bind(("127.0.0.1", 0))
dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
port = free_port()
sl = Sluice(text=config(port, {"shop": {
    "path_prefix": "/", "stable": "blue", "sticky": "header:X-User-Id",
    "eject_after": "2", "eject_max": "100%",
    "versions": {"blue": ([blue.addr], 100), "green": ([green.addr], 0),
                 "dead": ([dead_addr], 0)}}})
    + "[rollout:shop]\nsteps = 10 50\nstep_time = 60s\ninterval = 1s\n",
    port=port)


def run(*args, owner=None, json_out=False):
    cmd = [CTL, "-s", sl.ctl_path]
    if json_out:
        cmd.append("--json")
    if owner:
        cmd += ["--owner", owner]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


ok_cases = [
    (("show", "services"), "shop"),
    (("show", "service", "shop"), blue.addr),
    (("show", "stats", "shop"), "blue"),
    (("show", "stats", "shop", "10"), "blue"),
    (("set", "weights", "shop", "blue=90", "green=10"), "90"),
    (("switch", "shop", "green"), "green"),
    (("switch", "shop", "previous"), "blue"),
    (("set", "server", "shop", "green", green.addr, "drain"), "drain"),
    (("set", "server", "shop", "green", green.addr, "ready"), "ready"),
    (("show", "events", "5"), "set weights"),
    (("reset", "shop"), "shop"),
    (("help",), "set weights"),
]
for args, want in ok_cases:
    rc, out, err = run(*args)
    check(rc == 0 and want in out,
          "sluicectl %s: exit 0, output mentions %r" % (" ".join(args), want))

ev = sl.ctl("show events 1")["events"]
check(ev and ev[0]["command"] == "reset shop",
      "reset is an event though the weights it restores are those in force "
      "(%r)" % ev[:1])
n_events = len(sl.ctl("show events 1000")["events"])
rc, out, err = run("reset", "shop")
check(rc == 0 and len(sl.ctl("show events 1000")["events"]) == n_events,
      "a reset with nothing to drop is answered, and no event (%d events, "
      "were %d)" % (len(sl.ctl("show events 1000")["events"]), n_events))

# switch to the stable version: what it cut, or that it changed nothing.
run("set", "weights", "shop", "blue=80", "green=20")
rc, out, err = run("switch", "shop", "blue")
check(rc == 0 and out == "shop: stable blue at 100% (was blue=80.00, "
      "green=20.00)\n", "sluicectl switch to the stable version names what "
      "it cut (%r)" % out)
rc, out, err = run("switch", "shop", "blue")
check(rc == 0 and out == "shop: stable blue at 100% (it was already)\n",
      "and says when nothing changed (%r)" % out)

# PROTOCOL.md: words are separated by spaces or tabs; other control
# characters are refused. sluicectl reads its arguments the same way.
r = sl.ctl("show\tservice \t shop")
check(r["ok"] and r["service"]["name"] == "shop",
      "the daemon takes tabs between words")
r = sl.ctl("show\x0bservice shop")
check(not r["ok"] and "control character" in r["error"],
      "the daemon refuses another control character")
rc, out, err = run("show\tservice", "shop")
check(rc == 0 and blue.addr in out, "sluicectl takes a tab between words")
rc, out, err = run("show\x0bservice", "shop")
check(rc == 2 and "control character" in err,
      "sluicectl refuses another control character (%r)" % err)

# help COMMAND, by sluicectl and by the daemon: the commands whose words
# start with COMMAND's; an unknown prefix is an error.
for args in (("help", "set", "weights"), ("help", "set weights"),
             ("help", "--daemon", "set", "weights")):
    rc, out, err = run(*args)
    check(rc == 0 and "set weights SVC" in out and "set server" not in out,
          "sluicectl %s: just set weights (%d, %r)" % (" ".join(args), rc,
                                                       err))
rc, out, err = run("help", "show stats", json_out=True)
check(rc == 0 and [c["usage"] for c in json.loads(out)["commands"]] ==
      ["show stats SVC [SECONDS]"],
      "the daemon's help show stats: one command (%r)" % out)
rc, out, err = run("help", "rollout", json_out=True)
check(rc == 0 and sorted(c["usage"].split()[1] for c in
                         json.loads(out)["commands"]) ==
      ["abort", "pause", "promote", "resume", "start"],
      "the daemon's help rollout: the five rollout commands")
rc, out, err = run("help", "--daemon", "set", "weightz")
check(rc == 1 and "no command starts with 'set weightz'" in err,
      "the daemon's help for an unknown prefix: refused, named (%r)" % err)
rc, out, err = run("help", "--daemon")
check(rc == 0 and "help [COMMAND]" in out and "reset SVC" in out,
      "the daemon's help without COMMAND: every command")

err_cases = [
    (("show", "service", "nope"), "unknown service"),
    (("set", "weights", "shop", "blue=50", "green=40"), "sum to 90.00"),
    (("switch", "shop", "purple"), "no version"),
    (("set", "server", "shop", "blue", "1.2.3.4:1", "drain"), "no server"),
    (("unlock", "shop", "ci"), "not locked"),
    (("rollout", "pause", "shop"), "no rollout"),
    (("bogus",), "unknown command"),
]
for args, want in err_cases:
    rc, out, err = run(*args)
    check(rc == 1 and want in err,
          "sluicectl %s: exit 1, stderr says %r (%r)" % (" ".join(args), want,
                                                       err.strip()))

# The readable show service tells why a server is out: ejected (and for
# how long, why), or its health; the guard line is there too.
check(run("set", "weights", "shop", "blue=0", "green=0", "dead=100")[0] == 0,
      "all traffic to dead")
for i in range(3):
    sl.get("/x%d" % i)
check(run("set", "weights", "shop", "blue=100", "green=0", "dead=0")[0] == 0,
      "and back to blue")
rc, out, err = run("show", "service", "shop")
row = [l for l in out.splitlines() if dead_addr in l]
check(rc == 0 and "HEALTH" in out and "NOTE" in out and row and
      "unchecked" in row[0] and "ejected " in row[0] and
      "(connect failures)" in row[0] and "guard:" in out,
      "sluicectl show service: a server's health and ejection, and the "
      "guard (%r)" % row)

rc, out, err = run("show", "services", json_out=True)
doc = json.loads(out)
check(rc == 0 and doc["ok"] is True and doc["services"][0]["name"] == "shop",
      "--json prints the daemon's reply unchanged")
rc, out, err = run("show", "services", "--json")
check(rc == 0 and json.loads(out)["services"][0]["name"] == "shop",
      "--json after the command works too (%d, %s)" % (rc, err.strip()))

# Locks with --owner.
rc, out, err = run("lock", "shop", "ci", "60", owner="ci")
check(rc == 0, "--owner ci lock shop ci 60")
rc, out, err = run("set", "weights", "shop", "blue=50", "green=50")
check(rc == 1 and "locked by 'ci'" in err, "others are refused while ci holds it")
rc, out, err = run("set", "weights", "shop", "blue=50", "green=50", owner="ci")
check(rc == 0, "the owner may change it")
rc, out, err = run("unlock", "shop", "ci", owner="ci")
check(rc == 0, "unlock")

# Rollouts through sluicectl.
rc, out, err = run("rollout", "start", "shop", "green")
check(rc == 0 and "running" in out, "rollout start shop green")
rc, out, err = run("show", "rollout", "shop")
check(rc == 0 and "green" in out and "running" in out, "show rollout shop")
for verb, want in (("pause", "paused"), ("resume", "running"),
                   ("abort", "aborted")):
    rc, out, err = run("rollout", verb, "shop")
    check(rc == 0 and want in out, "rollout %s shop -> %s" % (verb, want))
rc, out, err = run("rollout", "wait", "shop", "--timeout", "5")
check(rc == 1 and "aborted" in (out + err),
      "rollout wait on an aborted rollout exits 1 with the reason")



def waiter(*args):
    """`sluicectl rollout wait shop ARGS` in the background, once it has
    printed its first line (it is connected and polling)."""
    p = subprocess.Popen([CTL, "-s", sl.ctl_path, "rollout", "wait", "shop"]
                         + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    harness._procs.append(p)
    return p, p.stdout.readline()


def outcome(p):
    """The waiter's (stdout, stderr) once it exits (killed after 60 s)."""
    try:
        return p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


# rollout wait outlives a restart: sluice resumes the rollout from its
# state file, and the wait reconnects to the new process and follows it
# to the end (here an abort sent to the new process).
rc, out, err = run("rollout", "start", "shop", "green")
check(rc == 0, "rollout start shop green again")
p, first = waiter("--timeout", "300")
check("running" in first, "rollout wait is waiting (%r)" % first)
check(sl.restart() == 0, "sluice stopped with SIGTERM mid-rollout exits 0")
r = sl.ctl("show rollout shop")["rollout"]
check(r["state"] == "running", "the new sluice resumed the rollout (%s)"
      % r["state"])
rc, out, err = run("rollout", "abort", "shop")
check(rc == 0, "abort it through the new sluice")
out, err = outcome(p)
check(p.returncode == 1 and "aborted" in out and
      err.count("; reconnecting") == 1 and
      "reconnected to " + sl.ctl_path in err,
      "rollout wait reconnected after the restart and exits 1 on the "
      "abort (%d, %r, %r)" % (p.returncode, out, err))

# ... and a --takeover upgrade: the path leads to the new sluice while
# the old one still answers on the wait's connection; the wait follows
# the path (the promote goes to the new sluice only).
rc, out, err = run("rollout", "start", "shop", "green")
check(rc == 0, "rollout start shop green once more")
p, first = waiter()
check("running" in first, "rollout wait (no --timeout) is waiting")
old_ino = os.stat(sl.ctl_path).st_ino
log2 = open(sl.logpath + ".2", "ab")
new = subprocess.Popen([SLUICE, "--takeover", "-c", sl.path], stdout=log2,
                       stderr=log2)
harness._procs.append(new)


def taken_over():
    try:
        if os.stat(sl.ctl_path).st_ino == old_ino:
            return False
        return sl.ctl("show rollout shop")["rollout"]["state"] == "running"
    except (OSError, ValueError):
        return False


check(wait_until(lambda: taken_over() or new.poll() is not None, 30) and
      new.poll() is None, "a second sluice took the control socket over")
rc, out, err = run("rollout", "promote", "shop")
check(rc == 0, "promote through the new sluice")
out, err = outcome(p)
check(p.returncode == 0 and "promoted" in out and "takeover" in err and
      "reconnected" in err and sl.proc.poll() is None,
      "rollout wait followed the takeover while the old sluice ran: "
      "promoted, exit 0 (%d, %r, %r)" % (p.returncode, out, err))
check(sl.stop() == 0, "the old sluice exits 0")
sl.proc = new

# Usage and connection errors.
rc, out, err = run("set")
check(rc in (1, 2), "an incomplete command is an error (%d)" % rc)
p = subprocess.run([CTL, "-s", "/nonexistent/sluice.sock", "show", "services"],
                   capture_output=True, text=True, timeout=10)
check(p.returncode == 3 and "cannot connect" in p.stderr,
      "no daemon: exit 3 with a clear message")
check(sl.stop() == 0, "sluice exits 0")
done()
