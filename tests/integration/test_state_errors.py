#!/usr/bin/env python3
"""A state file that cannot be written: an operator's rollout command
fails and changes nothing (neither the rollout nor the routing), the
analyzer holds a canary it would advance instead of advancing it on paper
only, and its revert of a canary that starts failing still takes the
canary out (the event says the state file was not written). Once the file
can be written again, everything goes on. And a rollout restored at a step
the config's steps no longer have goes on from its routed weight. A
service a reload removes loses its runtime state, its rollout record too:
a reload that brings it back starts it afresh."""

import http.client
import os
import shutil
import signal
import subprocess
import threading
import time

from harness import (SLUICE, Origin, Sluice, check, config, done, free_port,
                     wait_until)

blue = Origin("blue", "--latency", "2")
green = Origin("green", "--latency", "2")
# rev's canary: healthy until it is stopped, once the file is unwritable.
rev_green = Origin("rev-green", "--latency", "2")

ROLLOUT = """
[rollout:%s]
steps = 10 50 100
step_time = %s
interval = 300ms
min_requests = 20
max_error_rate = 1%%
max_latency_ratio = 3
"""


def service(name, canary):
    return {"path_prefix": "/" + name, "stable": "blue",
            "sticky": "header:X-User-Id",
            "versions": {"blue": ([blue.addr], 100),
                         "green": ([canary.addr], 0)}}


port = free_port()
text = config(port, {"ops": service("ops", green),
                     "adv": service("adv", green),
                     "rev": service("rev", rev_green)}, workers=1)
text += ROLLOUT % ("ops", "600s") + ROLLOUT % ("adv", "1s") + \
    ROLLOUT % ("rev", "600s")
sl = Sluice(text=text, port=port)
stop = threading.Event()


def load(prefix):
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    i = 0
    while not stop.is_set():
        try:
            c.request("GET", "%s/x" % prefix,
                      headers={"X-User-Id": "u%d" % i})
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
        i += 1
        time.sleep(0.003)


threads = [threading.Thread(target=load, args=(p,), daemon=True)
           for p in ("/ops", "/adv", "/rev")]
for t in threads:
    t.start()


def rollout(svc):
    return sl.ctl("show rollout %s" % svc)["rollout"]


def routing(svc):
    r = sl.ctl("show service %s" % svc)["service"]
    return {v["name"]: v["weight"] for v in r["versions"]}, r["stable"]


def events(text):
    return [e for e in sl.ctl("show events 1000")["events"]
            if text in e["command"]]


def break_state():
    """Put a directory where the state file goes: writes fail."""
    os.rename(sl.state_path, sl.state_path + ".kept")
    os.mkdir(sl.state_path)


def mend_state():
    os.rmdir(sl.state_path)
    os.rename(sl.state_path + ".kept", sl.state_path)


for svc in ("ops", "adv", "rev"):
    check(sl.ctl("rollout start %s green" % svc)["ok"],
          "rollout of %s started" % svc)
check(wait_until(lambda: rollout("adv")["step"] >= 2, 60),
      "adv advances while the state file can be written (step %r)"
      % rollout("adv")["step"])
# Hold adv below its last step: pause it while we break the file.
check(sl.ctl("rollout pause adv")["ok"], "adv paused")
adv_before = rollout("adv")
break_state()

# --- Operator commands: refused, nothing changed.
before = rollout("ops"), routing("ops")
for verb in ("pause", "promote", "abort"):
    r = sl.ctl("rollout %s ops" % verb)
    check(not r["ok"] and "cannot write state file" in r.get("error", ""),
          "rollout %s with the state file unwritable fails (%s)"
          % (verb, r.get("error")))
    after = rollout("ops"), routing("ops")
    check(after[0]["state"] == "running" and
          after[0]["step"] == before[0]["step"] and after[1] == before[1],
          "and changes nothing: rollout %s at step %d, weights %r, stable "
          "%s" % (after[0]["state"], after[0]["step"], after[1][0],
                  after[1][1]))
r = sl.ctl("rollout resume adv")
check(not r["ok"] and rollout("adv")["state"] == "paused",
      "resume fails too, and adv stays paused")
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock is not None and lock["owner"] == "rollout",
      "the running rollout still holds its lock (%r)" % lock)

# --- The analyzer's revert still takes a failing canary out.
rev_green.stop()
check(wait_until(lambda: rollout("rev")["state"] == "reverted", 60),
      "rev: the failing canary is reverted (%s)" % rollout("rev")["state"])
w, stable = routing("rev")
check(w["green"] == 0 and w["blue"] == 100 and stable == "blue",
      "and routed to 0%% at once, state file or not (%r)" % w)
check(any("state file not written" in e["command"]
          for e in events("rollout rev: reverted")),
      "the revert's event says the state file was not written")
# Meanwhile no new sluice may take over: it would read a file that still
# routes the failing canary.
new = subprocess.run([SLUICE, "--takeover", "-c", sl.path],
                     stdin=subprocess.DEVNULL, capture_output=True,
                     timeout=30)
check(new.returncode == 1 and b"not in its state file yet" in new.stderr,
      "a --takeover now is refused by the running sluice, saying why "
      "(%d, %r)" % (new.returncode, new.stderr[-200:]))
r = sl.ctl("rollout pause ops")
check(sl.ctl("show services")["ok"] and not r["ok"] and
      "taking over" not in r["error"],
      "which still answers and decides: not passive (%r)" % r.get("error"))

# --- Advancing needs the file: held, not advanced on paper.
mend_state()


def rev_saved():
    with open(sl.state_path) as f:
        rev = f.read().split("[service:rev]")[-1].split("\n[")[0]
    return "weight = green 0.00" in rev and " reverted " in rev


check(wait_until(rev_saved, 10),
      "once the file can be written, it catches up with the revert by "
      "itself, before any other change")
check(sl.ctl("rollout resume adv")["ok"], "adv resumed (file writable)")
step = rollout("adv")["step"]
w_before = routing("adv")
break_state()
check(wait_until(lambda: events("rollout adv: held at step"), 60),
      "when the analyzer would advance adv, an event says it is held, and "
      "why (%r)" % [e["command"] for e in events("adv")][-3:])
r = rollout("adv")
check(r["state"] == "running" and r["step"] == step and
      routing("adv") == w_before,
      "adv is held at its step while the file is unwritable (step %d -> "
      "%d, %r)" % (step, r["step"], routing("adv")[0]))

# --- Mended: everything goes on, and the file is what runs.
mend_state()
check(wait_until(lambda: rollout("adv")["state"] == "promoted", 60),
      "adv promoted once the file is writable (%s)" % rollout("adv")["state"])
check(sl.ctl("rollout abort ops")["ok"] and
      routing("ops")[0]["green"] == 0, "ops aborted now, canary at 0%")
check(rev_saved(), "and the state file still has rev's revert")

stop.set()
for t in threads:
    t.join(5)
check(sl.stop() == 0, "sluice exits 0")

# --- A rollout saved at a step the config's steps no longer have (they
# changed between stop and start): it goes on from the weight the canary
# is routed at, and says so, instead of showing one weight and routing
# another.
steps_text = config(port, {"steps": service("steps", green)}, workers=1)
for steps, saved_step, want_step in (("10 100", 1, 1), ("5 20 100", 1, 2)):
    sl.write(steps_text + (ROLLOUT % ("steps", "600s")).replace(
        "steps = 10 50 100", "steps = " + steps))
    with open(sl.state_path, "w") as f:
        f.write("[service:steps]\nweight = blue 50.00\nweight = green 50.00\n"
                "rollout = green blue paused %d %d 0\n"
                % (saved_step, int(time.time()) - 60))
    sl.start()
    r = rollout("steps")
    w, _ = routing("steps")
    check(r["state"] == "paused" and r["weight"] == 50.0 and
          w["green"] == 50.0 and r["step"] == want_step,
          "steps now %s, saved at step %d of 10 50 100: paused at step %d "
          "with the routed 50%% (%s, step %r, weight %r, routed %r)"
          % (steps, saved_step + 1, want_step, r["state"], r["step"],
             r["weight"], w["green"]))
    if want_step != saved_step + 1:
        said = "steps changed; going on from step %d/" % want_step
    else:
        said = ("step %d/3 goes on at 50.00%%, the canary's routed weight "
                "(the config's step is 20.00%%)" % want_step)
    check(said in sl.logtext(), "and the log says why (%s)" % said)
    check(events("rollout steps: restored green, paused at step %d/"
                 % want_step),
          "the event says it was restored paused (not 'resumed')")
    check(sl.stop() == 0, "sluice exits 0")
    # Restarted as it is: the step is the one it was aligned to, and the
    # log does not say again that the steps changed.
    warned = sl.logtext().count("steps changed")
    sl.start()
    r = rollout("steps")
    check(r["state"] == "paused" and r["step"] == want_step and
          r["weight"] == 50.0,
          "restarted: still paused at step %d at 50%% (%r, %r, %r)"
          % (want_step, r["state"], r["step"], r["weight"]))
    check(sl.logtext().count("steps changed") == warned,
          "a second restart does not warn again that the steps changed")
    check(sl.stop() == 0, "sluice exits 0")

# --- A service a reload removes takes its runtime state with it: out of
# the state file at once (a restart must not bring a drained server or a
# lock back), and out of the running process (a reload that brings the
# service back starts it afresh, as the config has it).
two = {"a": service("a", green), "b": service("b", green)}
two_text = config(port, two, workers=1)
sl.write(two_text)
os.unlink(sl.state_path)
sl.start()
check(sl.ctl("set server b blue %s drain" % blue.addr)["ok"] and
      sl.ctl("as ops lock b ops 600")["ok"], "b's blue drained and locked")
check(sl.ctl("as ops rollout start b green")["ok"] and
      sl.ctl("as ops rollout promote b")["ok"] and
      sl.ctl("show rollout b")["rollout"]["state"] == "promoted",
      "b's green rolled out and promoted")


def reload_event():
    n = len(sl.ctl("show events 1000")["events"])
    sl.proc.send_signal(signal.SIGHUP)
    check(wait_until(lambda: len(sl.ctl("show events 1000")["events"]) > n),
          "the reload is done")
    return sl.ctl("show events 1000")["events"][-1]


e = reload_event() if sl.write(config(port, {"a": two["a"]}, workers=1)) \
    is None else None
check(e["command"] == "reload" and e["after"]["runtime_state_dropped"] == 1,
      "removing b: the reload counts its state as dropped (%r)" % e)
with open(sl.state_path) as f:
    saved = f.read()
check("[service:b]" not in saved,
      "and the state file no longer holds it (%r)" % saved)
sl.write(two_text)
check(reload_event()["command"] == "reload", "b back by reload")
svc = sl.ctl("show service b")["service"]
states = [srv["state"] for v in svc["versions"] for srv in v["servers"]]
check(svc.get("lock") is None and all(st == "ready" for st in states),
      "b comes back afresh: not locked, its servers ready (%r, %r)"
      % (svc.get("lock"), states))
b_listed = [x for x in sl.ctl("show services")["services"]
            if x["name"] == "b"][0]
check(sl.ctl("show rollout b")["rollout"] is None and
      b_listed["rollout"] is None and svc["stable"] == "blue",
      "and without its old rollout: no 'green promoted' (%r, %r)"
      % (sl.ctl("show rollout b")["rollout"], b_listed["rollout"]))
r = subprocess.run([os.path.join(os.path.dirname(SLUICE), "sluicectl"),
                    "-s", sl.ctl_path, "rollout", "wait", "b",
                    "--timeout", "5"], capture_output=True, timeout=60)
check(r.returncode != 0, "rollout wait b does not report it promoted "
      "(exit %d)" % r.returncode)
with open(sl.state_path) as f:
    saved = f.read()
check("rollout = green blue promoted" not in saved,
      "nor does the state file bring it back (%r)" % saved)
check(sl.get("/b/x")[0] == 200, "and b serves")
check(sl.restart() == 0, "sluice exits 0")
svc = sl.ctl("show service b")["service"]
states = [srv["state"] for v in svc["versions"] for srv in v["servers"]]
check(all(st == "ready" for st in states) and sl.get("/b/x")[0] == 200,
      "and a restart does not bring the drained server back (%r)" % states)
check(sl.ctl("show rollout b")["rollout"] is None,
      "nor the old rollout")
check(sl.stop() == 0, "sluice exits 0")
done()
