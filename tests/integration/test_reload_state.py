#!/usr/bin/env python3
"""A reload (SIGHUP) keeps the runtime state it can keep, and what runs
agrees with what is routed, as after a restart.

Removing a version that the saved weights give 0% keeps the other saved
weights: a running canary stays routed at its step, an operator's weights
stay, a blue/green switch stays with its guard watching; and a restart
then routes the same. Removing a version that carried weight leaves no
faithful way to keep them: the config's weights and stable version apply,
together, and a guard watching a version that is no longer stable ends,
with an event, instead of passing on no traffic."""

import signal

from harness import (Origin, Sluice, check, config, done, free_port,
                     wait_until)

blue = Origin("blue", "--latency", "2")
green = Origin("green", "--latency", "2")
other = Origin("other", "--latency", "2")

# Rollouts that stay at their first step (10%) for the whole test, and
# guards that watch for the whole test: no verdict moves anything.
ROLLOUT = """
[rollout:%s]
steps = 10 50 100
step_time = 600s
interval = 300ms
"""
GUARD = """
[rollout:%s]
guard = 600s
step_time = 600s
interval = 300ms
"""


def service(name, versions, stable="blue"):
    return {"path_prefix": "/" + name, "stable": stable,
            "sticky": "header:X-User-Id", "expose_version": "yes",
            "versions": versions}


def three(name):
    """blue 100%, green and old 0%."""
    return service(name, {"blue": ([blue.addr], 100),
                          "green": ([green.addr], 0),
                          "old": ([other.addr], 0)})


def abc(name):
    """a 100% (stable), b and c 0%."""
    return service(name, {"a": ([blue.addr], 100), "b": ([other.addr], 0),
                          "c": ([green.addr], 0)}, stable="a")


def without(svc, version):
    s = dict(svc)
    s["versions"] = {k: v for k, v in svc["versions"].items()
                     if k != version}
    return s


port = free_port()
full = {"ro": three("ro"), "op": three("op"), "pay": abc("pay"),
        "pay2": abc("pay2")}
extra = ROLLOUT % "ro" + GUARD % "pay" + GUARD % "pay2"
sl = Sluice(text=config(port, full, workers=1) + extra, port=port)


def routing(svc):
    r = sl.ctl("show service %s" % svc)["service"]
    return {v["name"]: v["weight"] for v in r["versions"]}, r["stable"]


def rollout(svc):
    return sl.ctl("show rollout %s" % svc)["rollout"]


def guard(svc):
    return sl.ctl("show service %s" % svc)["service"]["guard"]


def events(text):
    return [e for e in sl.ctl("show events 1000")["events"]
            if text in e["command"]]


def served(prefix, users=200):
    """The versions that answered one request from each of USERS users."""
    seen = set()
    for i in range(users):
        status, resp, _ = sl.get("/%s/x" % prefix,
                                 headers={"X-User-Id": "u%d" % i})
        if status == 200:
            seen.add(resp.getheader("X-Sluice-Version"))
    return seen


def reload(services):
    """Write a config of SERVICES, SIGHUP, and return the reload event."""
    sl.write(config(port, services, workers=1) + extra)
    n = len(sl.ctl("show events 1000")["events"])
    sl.proc.send_signal(signal.SIGHUP)
    check(wait_until(lambda: any(
        e["command"] in ("reload", "reload refused")
        for e in sl.ctl("show events 1000")["events"][n:])),
        "the reload is done")
    return [e for e in sl.ctl("show events 1000")["events"][n:]
            if e["command"] in ("reload", "reload refused")][-1]


check(sl.ctl("rollout start ro green")["ok"], "ro: rollout of green started")
check(routing("ro")[0] == {"blue": 90, "green": 10, "old": 0},
      "ro: green at 10%% (%r)" % (routing("ro")[0],))
check(sl.ctl("set weights op blue=70 green=30")["ok"], "op: set 70/30")
check(sl.ctl("switch pay c")["ok"] and guard("pay")["state"] == "watching",
      "pay: switched to c, its guard watching")
check(sl.ctl("switch pay2 c")["ok"] and
      sl.ctl("set weights pay2 a=0 b=10 c=90")["ok"] and
      guard("pay2")["state"] == "watching",
      "pay2: switched to c, then b given 10%, its guard watching")

# --- Reload: old (0% in ro and op), b (0% in pay, 10% in pay2) removed.
e = reload({"ro": without(full["ro"], "old"),
            "op": without(full["op"], "old"),
            "pay": without(full["pay"], "b"),
            "pay2": without(full["pay2"], "b")})
check(e["command"] == "reload" and e["after"]["runtime_state_dropped"] == 1,
      "reloaded; only pay2's weights count as dropped (%r)" % e["after"])
check("a version that had weight in the saved weights is no longer "
      "configured" in sl.logtext() and
      sl.logtext().count("is no longer configured; using the config") == 1,
      "the log says so for pay2 only")

r = rollout("ro")
check(routing("ro") == ({"blue": 90, "green": 10}, "blue"),
      "ro: removing old (0%%) keeps the canary routed at 10%% (%r)"
      % (routing("ro"),))
check(r["state"] == "running" and r["step"] == 1 and r["weight"] == 10,
      "ro: and the rollout runs on at step 1, 10%% (%s, %r)"
      % (r["state"], r["step"]))
check(served("ro") == {"blue", "green"},
      "ro: requests reach the canary (%r)" % served("ro"))
check(routing("op") == ({"blue": 70, "green": 30}, "blue"),
      "op: the operator's 70/30 stays (%r)" % (routing("op"),))
check(routing("pay") == ({"a": 0, "c": 100}, "c") and
      guard("pay")["state"] == "watching",
      "pay: c stays stable at 100%%, its guard watching (%r, %r)"
      % (routing("pay"), guard("pay")))

# pay2: b had 10%: the config's weights and stable version, together; the
# guard on c, no longer stable nor routed, ends with an event.
check(routing("pay2") == ({"a": 100, "c": 0}, "a"),
      "pay2: the config's weights and its stable a, together (%r)"
      % (routing("pay2"),))
check(served("pay2", 20) == {"a"}, "pay2: and a serves")
g = guard("pay2")
check(g is not None and g["state"] == "ended",
      "pay2: the guard on c ended (%r)" % g)
check(events("guard pay2: ended after a reload: its version is no longer "
             "the stable one"),
      "pay2: an event says why (%r)" % [x["command"] for x in events("pay2")])
with open(sl.state_path) as f:
    saved = f.read()
pay2 = saved.split("[service:pay2]")[-1].split("\n[")[0]
check("guard =" not in pay2 and "stable = a" in pay2 and
      "weight = a 100.00" in pay2,
      "pay2: the state file says what is routed, without the guard (%r)"
      % pay2)
pay = saved.split("[service:pay]")[-1].split("\n[")[0]
check("guard = c a " in pay, "pay: the state file keeps its guard")

# --- A restart routes as the reloaded process did.
check(sl.restart() == 0, "sluice restarts (exit 0)")
r = rollout("ro")
check(routing("ro") == ({"blue": 90, "green": 10}, "blue") and
      r["state"] == "running" and r["step"] == 1,
      "after a restart ro's rollout still runs at 10%% (%s, %r)"
      % (r["state"], routing("ro")))
check(routing("op") == ({"blue": 70, "green": 30}, "blue"),
      "after a restart op is still 70/30")
check(routing("pay") == ({"a": 0, "c": 100}, "c") and
      guard("pay")["state"] == "watching",
      "after a restart pay's guard on c is resumed")
check(routing("pay2") == ({"a": 100, "c": 0}, "a") and guard("pay2") is None,
      "after a restart pay2 routes as before, no guard")
check(sl.stop() == 0, "sluice exits 0")
done()
