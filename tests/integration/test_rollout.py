#!/usr/bin/env python3
"""Rollouts with the real daemon, real origins and real traffic: a healthy
canary is promoted through every step, a canary with 5% errors and one 3x
slower are reverted, a canary that starts cold is promoted with a warm-up
and reverted without one, a canary 4 ms slower is reverted, and promoted
when latency_tolerance says 4 ms do not matter, operators pause, resume, abort and promote, a
restart resumes the rollout at its step, and locks are respected."""

import http.client
import os
import re
import subprocess
import threading
import time

from harness import BUILD, Origin, Sluice, check, done, wait_until

CTL = os.path.join(BUILD, "sluicectl")

blue = Origin("blue", "--latency", "5")
green_ok = Origin("green-ok", "--latency", "5")
green_err = Origin("green-err", "--latency", "5", "--error-rate", "0.05",
                   "--seed", "7")
green_slow = Origin("green-slow", "--latency", "15")
green_ops = Origin("green-ops", "--latency", "5")
green_down = Origin("green-down", "--latency", "5")
# Canaries that start cold: 60 ms slower for their first 3 s of traffic.
green_cold = Origin("green-cold", "--latency", "5", "--cold", "3000",
                    "--cold-latency", "60")
green_cold_nw = Origin("green-cold-nw", "--latency", "5", "--cold", "3000",
                       "--cold-latency", "60")
# A canary 4 ms slower on every request, each service with its own stable
# origin: reverted with latency_tolerance = 0, promoted with 20ms.
blue_tol = Origin("blue-tol", "--latency", "5")
green_tol = Origin("green-tol", "--latency", "9")
blue_tol0 = Origin("blue-tol0", "--latency", "5")
green_tol0 = Origin("green-tol0", "--latency", "9")

ROLLOUT = """
[rollout:%s]
steps = 10 50 100
step_time = 2s
interval = 500ms
min_requests = 30
max_error_rate = 1%%
max_latency_ratio = 1.5
"""


def service(name, canary, stable=blue):
    return {"path_prefix": "/" + name, "stable": "blue",
            "sticky": "header:X-User-Id", "expose_version": "yes",
            "versions": {"blue": ([stable.addr], 100),
                         "green": ([canary.addr], 0)}}


from harness import config, free_port
port = free_port()
admin_port = free_port()
text = config(port, {"ok": service("ok", green_ok),
                     "err": service("err", green_err),
                     "slow": service("slow", green_slow),
                     "ops": service("ops", green_ops),
                     "down": service("down", green_down),
                     "cold": service("cold", green_cold),
                     "coldnw": service("coldnw", green_cold_nw),
                     "tol": service("tol", green_tol, blue_tol),
                     "tol0": service("tol0", green_tol0, blue_tol0),
                     "mid": service("mid", green_ops),
                     "high": service("high", green_ops)},
              sluice_extra="admin = 127.0.0.1:%d\n" % admin_port)
text += "".join(ROLLOUT % s for s in ("ok", "err", "slow", "down"))
# ops: long steps so that operator commands act on a running rollout
text += "".join(ROLLOUT.replace("step_time = 2s", "step_time = 600s") % s
                for s in ("ops", "mid", "high"))
# cold: half the traffic at once, judged only after a 5 s warm-up.
COLD = ROLLOUT.replace("steps = 10 50 100", "steps = 50 100").replace(
    "step_time = 2s", "step_time = 6s")
text += (COLD % "cold" + "warmup = 5s\n" +
         COLD.replace("step_time = 6s", "step_time = 6500ms") % "coldnw")
text += (COLD % "tol" + "latency_tolerance = 20ms\n" + COLD % "tol0" +
         "latency_tolerance = 0\n")
sl = Sluice(text=text, port=port)
sl_text = text

stop = threading.Event()


def load(prefix, n):
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    i = 0
    while not stop.is_set():
        try:
            c.request("GET", "%s/x" % prefix, headers={"X-User-Id": "u%d-%d" % (n, i)})
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
        i += 1
        time.sleep(0.004)


threads = [threading.Thread(target=load, args=(p, n), daemon=True)
           for n, p in enumerate(["/ok", "/ok", "/err", "/err", "/slow", "/slow",
                                  "/ops", "/down", "/cold", "/cold",
                                  "/coldnw", "/coldnw", "/tol", "/tol",
                                  "/tol0", "/tol0"])]
for t in threads:
    t.start()


def rollout(svc):
    return sl.ctl("show rollout %s" % svc)["rollout"]


def wait_final(svc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = rollout(svc)
        if r and r["state"] in ("promoted", "reverted", "aborted"):
            return r
        time.sleep(0.25)
    return rollout(svc)


def weights(svc):
    r = sl.ctl("show service %s" % svc)["service"]
    return {v["name"]: v["weight"] for v in r["versions"]}, r["stable"]


time.sleep(0.5)
# A lock held by someone else blocks a rollout.
check(sl.ctl("as alice lock ok alice 60")["ok"], "alice locks service ok")
r = sl.ctl("rollout start ok green")
check(not r["ok"] and "locked by 'alice'" in r["error"],
      "rollout start on a service locked by someone else is refused")
check(sl.ctl("as alice unlock ok alice")["ok"], "alice unlocks")

# The canary's only server is in maintenance: its users get 503.
check(sl.ctl("set server down green %s maint" % green_down.addr)["ok"],
      "down: the canary's only server in maintenance")
for svc in ("ok", "err", "slow", "ops", "down"):
    r = sl.ctl("rollout start %s green" % svc)
    check(r["ok"] and r["rollout"]["state"] == "running" and
          r["rollout"]["weight"] == 10.0,
          "rollout start %s green: running at 10%%" % svc)
for svc in ("cold", "coldnw", "tol", "tol0"):
    r = sl.ctl("rollout start %s green" % svc)
    check(r["ok"] and r["rollout"]["weight"] == 50.0 and
          r["rollout"]["warming_up"] == (svc == "cold") and
          r["rollout"]["warmup"] == (5.0 if svc == "cold" else 0),
          "rollout start %s green: 50%%, warmup %s" % (svc, r["rollout"]["warmup"]))
    # In seconds: an integer when whole, as always; 6500ms is 6.5.
    st = r["rollout"]["step_time"]
    check(st == 6.5 if svc == "coldnw" else
          (st == 6 and isinstance(st, int)),
          "rollout start %s: step_time %r s" % (svc, st))
check(wait_until(lambda: len(rollout("coldnw")["verdicts"]) >= 2 or
                 rollout("coldnw")["state"] == "reverted"),
      "coldnw, without warmup, is judged at once (%s)"
      % rollout("coldnw")["reason"])
r = rollout("cold")
check(r["state"] == "running" and r["warming_up"] and not r["verdicts"],
      "cold, with warmup = 5s, is not judged meanwhile (%s, %d verdicts)"
      % (r["state"], len(r["verdicts"])))
# A canary that has users keeps every one of them: the rollout goes on
# from the first step at or above its weight, or is refused.
check(sl.ctl("set weights mid blue=80 green=20")["ok"] and
      sl.ctl("set weights high blue=40 green=60")["ok"], "mid at 20%, high at 60%")
r = sl.ctl("rollout start mid green")
check(r["ok"] and r["rollout"]["step"] == 2 and
      r["rollout"]["weight"] == 50.0 and weights("mid")[0]["green"] == 50.0,
      "rollout start with the canary at 20%%: step 2/3 at 50%%, not 10%% "
      "(%s)" % r)
r = sl.ctl("rollout start high green")
check(not r["ok"] and r["error"] == "'green' already has 60.00%, more than "
      "every step of the rollout below 100: promote it with 'switch high "
      "green', or lower it with 'set weights'" and
      weights("high")[0]["green"] == 60.0,
      "rollout start with the canary above every step: refused, weights "
      "kept (%s)" % r.get("error"))
check(sl.ctl("rollout abort mid")["ok"], "rollout abort mid")
r = sl.ctl("rollout start ok green")
check(not r["ok"] and "already running" in r["error"],
      "a second rollout on the same service is refused")
r = sl.ctl("set weights ok blue=50 green=50")
check(not r["ok"] and "locked by 'rollout'" in r["error"],
      "a running rollout holds the service lock")
r = sl.ctl("rollout start ok blue")
check(not r["ok"], "rolling out the stable version is refused")

# Operator commands on ops, once the analyzer has looked a few times (a
# resume must start a fresh window the analyzer can judge).
check(wait_until(lambda: len(rollout("ops")["verdicts"]) >= 3),
      "ops: three verdicts before the pause")
r = sl.ctl("rollout pause ops")
check(r["ok"] and r["rollout"]["state"] == "paused", "rollout pause ops")
r = sl.ctl("rollout pause ops")
check(not r["ok"] and "already paused" in r["error"], "pausing twice is refused")
time.sleep(1.0)
check(rollout("ops")["state"] == "paused" and weights("ops")[0]["green"] == 10.0,
      "a paused rollout holds its weight")
r = sl.ctl("rollout resume ops")
check(r["ok"] and r["rollout"]["state"] == "running", "rollout resume ops")

# The rollout's lock is sluice's own: nobody acts as "rollout", unlocks it
# or changes the weights under it; the refusal says what to use instead.
for line, what in (("as rollout set weights ops blue=30 green=70",
                    "acting as 'rollout'"),
                   ("as bob unlock ops rollout", "unlocking the rollout"),
                   ("set weights ops blue=30 green=70",
                    "changing its weights"),
                   ("as bob lock ok rollout 30", "taking a lock as 'rollout'")):
    r = sl.ctl(line)
    check(not r["ok"] and "rollout" in r["error"] and
          ("pause" in r["error"] or "abort" in r["error"] or
           "another name" in r["error"]),
          "%s is refused, saying what to do (%s)" % (what, r.get("error")))
n = len(rollout("ops")["verdicts"])
check(wait_until(lambda: len(rollout("ops")["verdicts"]) >= n + 2),
      "the analyzer judges twice meanwhile")
judged = [v["summary"] for v in rollout("ops")["verdicts"][n:]]
check(judged and not any(s.startswith("not judged") for s in judged),
      "after the resume every look is judged (%r)" % judged[:2])
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock["owner"] == "rollout" and lock["expires_in"] > 600000,
      "and the rollout's lock is still held and renewed (%r)" % lock)

# Outcomes of the analyzer.
r = wait_final("ok")
check(r["state"] == "promoted", "healthy canary: promoted (%s)" % r["reason"])
w, stable = weights("ok")
check(stable == "green" and w == {"blue": 0.0, "green": 100.0},
      "after promotion green is stable at 100%")
check(sl.ctl("show service ok")["service"]["previous_stable"] == "blue",
      "blue is remembered as the previous stable")
check(r["verdict_counts"]["fail"] == 0, "no failing verdict for the healthy canary")

r = wait_final("err")
check(r["state"] == "reverted" and "error" in r["reason"],
      "5%% error canary: reverted (%s)" % r["reason"])
w, stable = weights("err")
check(stable == "blue" and w == {"blue": 100.0, "green": 0.0},
      "after the revert blue has 100%")
last = r["verdicts"][-1]
check(last["decision"] == "fail" and any(
    c["decision"] == "fail" and c["name"].startswith("error") and
    c["p_value"] <= c["alpha"] and c["canary"] > c["threshold"]
    for c in last["checks"]),
      "the failing verdict carries its evidence (numbers, threshold, p-value)")
check(sl.ctl("show service err")["service"]["lock"] is None,
      "the revert released the lock")

r = wait_final("down")
check(r["state"] == "reverted",
      "canary with every server down: reverted (%s)" % r["reason"])

r = wait_final("slow")
check(r["state"] == "reverted" and "latency" in r["reason"],
      "3x slower canary: reverted (%s)" % r["reason"])

# A cold canary: judged like any other data without a warm-up (reverted
# on latency), judged from the end of its warm-up with one (promoted).
r = wait_final("coldnw")
check(r["state"] == "reverted" and "latency" in r["reason"],
      "a canary 60 ms slower for its first 3 s, no warmup: reverted (%s)"
      % r["reason"])
r = wait_final("cold")
check(r["state"] == "promoted" and r["verdict_counts"]["fail"] == 0,
      "with warmup = 5s it is promoted (%s)" % r["reason"])
check(not r["warming_up"], "and is no longer warming up")
p = subprocess.run([CTL, "-s", sl.ctl_path, "show", "rollout", "cold"],
                   capture_output=True, text=True, timeout=30)
check("5 s at the start of each step, not judged" in p.stdout,
      "sluicectl show rollout shows the warm-up (%r)" % p.stdout[-300:])

# A canary 4 ms slower than its stable version (9 against 5 ms): a
# latency regression without a tolerance, none within 20 ms.
r = wait_final("tol0")
check(r["state"] == "reverted" and "latency" in r["reason"],
      "4 ms slower, latency_tolerance = 0: reverted (%s)" % r["reason"])
r = wait_final("tol")
shift = [c for c in r["verdicts"][-1]["checks"] if c["name"] == "latency_shift"]
check(r["state"] == "promoted" and r["verdict_counts"]["fail"] == 0,
      "4 ms slower, latency_tolerance = 20ms: promoted (%s)" % r["reason"])
check("slower by more than 20ms in" in shift[0]["why"],
      "the verdict says which differences count (%r)" % shift[0]["why"])
check(r["latency_tolerance_ms"] == 20 and
      rollout("ok")["latency_tolerance_ms"] == 0.25,
      "show rollout has latency_tolerance_ms (20, default 0.25)")
p = subprocess.run([CTL, "-s", sl.ctl_path, "show", "rollout", "tol"],
                   capture_output=True, text=True, timeout=30)
check("tolerance:" in p.stdout and
      "20 ms (latencies no further apart are ties)" in p.stdout,
      "sluicectl show rollout prints the tolerance (%r)" % p.stdout[:600])
check("ended after" in p.stdout,
      "an ended rollout's step time says so (%r)" % p.stdout[:300])
e1 = rollout("tol")["step_elapsed"]
time.sleep(1.5)
check(rollout("tol")["step_elapsed"] == e1,
      "an ended rollout's step_elapsed no longer grows (%s s)" % e1)

# ops: still running on long steps; promote it by hand.
r = sl.ctl("rollout promote ops")
check(r["ok"] and r["rollout"]["state"] == "promoted", "rollout promote ops")
check(weights("ops")[1] == "green", "operator promotion makes green stable")
r = sl.ctl("rollout abort ops")
check(not r["ok"] and "already promoted" in r["error"],
      "abort after the end is refused")

# A rollout started under its starter's lock obeys that lock: nobody
# else pauses, promotes or aborts it (the error names the owner); the
# owner does. Here a new rollout of blue on ops (green is stable now).
check(sl.ctl("as job1 lock ops job1 600")["ok"], "job1 locks ops")
r = sl.ctl("as job1 rollout start ops blue")
check(r["ok"], "job1 starts a new rollout after the last one ended")
for verb in ("pause", "promote", "abort"):
    r = sl.ctl("as intruder rollout %s ops" % verb)
    check(not r["ok"] and "locked by 'job1'" in r["error"],
          "rollout %s by another owner is refused (%r)" % (verb, r))
check(rollout("ops")["state"] == "running" and weights("ops")[1] == "green",
      "and the rollout runs on, green stable")
check(sl.ctl("as job1 rollout pause ops")["ok"] and
      sl.ctl("as job1 rollout resume ops")["ok"],
      "the lock's owner pauses and resumes it")
# Abort by its owner; the lock goes back to job1, who releases it.
r = sl.ctl("as job1 rollout abort ops")
check(r["ok"] and r["rollout"]["state"] == "aborted", "rollout abort ops")
w, stable = weights("ops")
check(stable == "green" and w["blue"] == 0.0, "abort puts the canary back to 0%")
check(sl.ctl("as job1 unlock ops job1")["ok"], "job1 has its lock back and "
      "releases it")

# Rollout metrics: valid Prometheus text with the three families.
import shutil
import subprocess
import urllib.request
mtext = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port,
                               timeout=10).read()
check(b'sluice_rollout_state{service="ok",canary="green"} 3' in mtext and
      b'sluice_rollout_state{service="err",canary="green"} 4' in mtext,
      "sluice_rollout_state: ok promoted (3), err reverted (4)")
check(b'sluice_rollout_verdicts_total{service="err",result="fail"} 1' in mtext,
      "sluice_rollout_verdicts_total counts the failing verdict")
if shutil.which("promtool"):
    p = subprocess.run(["promtool", "check", "metrics"], input=mtext,
                       capture_output=True, timeout=30)
    check(p.returncode == 0, "promtool accepts /metrics with rollouts (%s)"
          % (p.stdout + p.stderr).decode().strip()[:200])

# Events and metrics.
evs = sl.ctl("show events 1000")["events"]
check(any(e["command"].startswith("verdict ") for e in evs),
      "verdicts are recorded as events")
check(any(e["command"].startswith("rollout ok: step 1 passed") for e in evs),
      "step transitions are recorded as events")
# Restart mid-rollout resumes at the same step.
r = sl.ctl("rollout start ops blue")
check(r["ok"], "rollout start ops blue again")
time.sleep(0.6)
check(sl.ctl("rollout pause ops")["ok"], "paused before the restart")
check(sl.restart() == 0, "sluice stops cleanly mid-rollout")
r = rollout("ops")
check(r is not None and r["state"] == "paused" and r["step"] == 1 and
      r["canary"] == "blue", "after a restart the rollout is back, paused at step 1")
check(weights("ops")[0]["blue"] == 10.0, "and the canary keeps its 10%")
check(sl.ctl("rollout resume ops")["ok"], "it resumes")
# Its windows so far: the first, the restart's, the resume's: the state
# file counts the two begun after the first, so that another restart
# takes a fresh share of the budget.
with open(sl.state_path) as f:
    line = [ln for ln in f if ln.startswith("rollout = blue ")]
check(len(line) == 1 and line[0].split()[-1] == "2",
      "the state file counts the analysis windows begun (%r)" % line)
evs = sl.ctl("show events 100")["events"]
check(any("restored blue, paused at step 1/3" in e["command"] for e in evs),
      "the restart is recorded as an event (restored, paused)")
r = sl.ctl("rollout abort ops")
check(r["ok"], "and can be aborted")

# A pipeline's own lock (lock, rollout start, rollout wait, unlock) is set
# aside while its rollout holds the service, and given back when the
# rollout ends, across a restart too.
check(sl.ctl("as ci-7 lock ops ci-7 600")["ok"], "ci-7 locks ops for 600 s")
r = sl.ctl("as ci-7 rollout start ops blue")
check(r["ok"] and
      sl.ctl("show service ops")["service"]["lock"]["owner"] == "rollout",
      "ci-7 starts a rollout, which holds the lock")
aside = sl.ctl("show service ops")["service"]["lock"].get("set_aside")
check(aside is not None and aside["owner"] == "ci-7" and
      0 < aside["expires_in"] <= 600,
      "show service shows ci-7's lock, set aside, with its expiry (%r)"
      % aside)
check(sl.restart() == 0, "sluice restarts mid-rollout")
aside = sl.ctl("show services")["services"]
aside = [s for s in aside if s["name"] == "ops"][0]["lock"].get("set_aside")
check(aside is not None and aside["owner"] == "ci-7",
      "and show services too, after the restart (%r)" % aside)
lock = sl.ctl("show rollout ops").get("lock") or {}
check(lock.get("owner") == "rollout" and
      (lock.get("set_aside") or {}).get("owner") == "ci-7",
      "and show rollout, beside the rollout: who may steer it (%r)" % lock)
p = subprocess.run([CTL, "-s", sl.ctl_path, "show", "rollout", "ops"],
                   capture_output=True, text=True, timeout=30)
check("set aside: ci-7 (" in p.stdout and
      "given back when the rollout ends" in p.stdout,
      "sluicectl show rollout prints the set-aside lock (%r)"
      % [ln for ln in p.stdout.splitlines() if "lock" in ln])
check(sl.ctl("as ci-7 rollout abort ops")["ok"], "ci-7 aborts the rollout")
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock is not None and lock["owner"] == "ci-7" and
      0 < lock["expires_in"] <= 600, "ci-7's lock is back (%r)" % lock)
check(sl.ctl("as ci-7 unlock ops ci-7")["ok"],
      "and ci-7's closing unlock succeeds")


# A live rollout holds its lock for as long as it lives, whatever the
# state file's expiry says: a sluice stopped past the lock's TTL (7 days),
# or a rollout paused or inconclusive that long, came back with the
# rollout running and nothing locked, and weights could then be changed
# under it.
def edit_state(fn):
    with open(sl.state_path) as f:
        text = f.read()
    with open(sl.state_path, "w") as f:
        f.write(fn(text))


check(sl.ctl("rollout start ops blue")["ok"], "a rollout of ops again")
check(sl.stop() == 0, "sluice stops mid-rollout")
past = int(time.time()) - 60
edit_state(lambda t: re.sub(r"lock = rollout \d+", "lock = rollout %d" % past,
                            t))
sl.start()
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock is not None and lock["owner"] == "rollout" and
      lock["expires_in"] > 24 * 3600,
      "a rollout lock expired while sluice was down is held again (%r)" % lock)
r = sl.ctl("set weights ops blue=0 green=100")
check(not r["ok"] and "running rollout" in r["error"],
      "and weights cannot be changed under the rollout (%s)" % r.get("error"))
# Someone else's lock in the file (edited by hand) is set aside, as at a
# start, and comes back when the rollout ends.
check(sl.stop() == 0, "sluice stops mid-rollout")
until = int(time.time()) + 600
edit_state(lambda t: re.sub(r"lock = rollout \d+", "lock = ops-9 %d" % until,
                            t))
sl.start()
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock is not None and lock["owner"] == "rollout",
      "a running rollout takes its lock back from ops-9 (%r)" % lock)
check(not sl.ctl("rollout abort ops")["ok"] and
      sl.ctl("as ops-9 rollout abort ops")["ok"],
      "ops-9's lock, set aside, still counts: only ops-9 aborts")
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock is not None and lock["owner"] == "ops-9", "and ops-9 has it back")
check(sl.ctl("as ops-9 unlock ops ops-9")["ok"], "ops-9 unlocks")
# A live rollout whose canary comes back routed at 0% (its saved weights
# not restored) would show one weight and route another: it is aborted.
check(sl.ctl("rollout start ops blue")["ok"], "a rollout of ops again")
check(sl.stop() == 0, "sluice stops mid-rollout")
edit_state(lambda t: re.sub(
    r"(\[service:ops\][^[]*)", lambda m: re.sub(
        r"weight = blue \d+(\.\d+)?", "weight = blue 0",
        re.sub(r"weight = green \d+(\.\d+)?", "weight = green 100",
               m.group(1))), t))
sl.start()
r = rollout("ops")
check(r["state"] == "aborted" and "routed at 0%" in r["reason"],
      "a running rollout routed at 0%% after a restart is aborted (%s)"
      % r.get("reason"))
lock = sl.ctl("show service ops")["service"]["lock"]
check(lock is None and weights("ops")[0]["blue"] == 0.0,
      "and it holds no lock, and routing is as it was (%r)" % lock)
# A set-aside lock is released like any lock, by naming its owner (an
# operator clearing a stale one): then anyone may steer the rollout.
check(sl.ctl("as ci-9 lock ops ci-9 600")["ok"] and
      sl.ctl("as ci-9 rollout start ops blue")["ok"],
      "ci-9 locks ops and starts a rollout")
r = sl.ctl("as bob unlock ops ci-9")
check(r["ok"] and r["lock"]["owner"] == "rollout" and
      "set_aside" not in r["lock"],
      "unlock naming the set-aside lock's owner releases it (%s)" % r)
check(sl.ctl("as bob rollout abort ops")["ok"],
      "and then anyone may abort the rollout")
# The starter's lock, set aside while its rollout runs, expires on time
# with an event like any lock (it ended silently).
check(sl.ctl("as ci-8 lock ops ci-8 2")["ok"] and
      sl.ctl("as ci-8 rollout start ops blue")["ok"],
      "ci-8 locks ops for 2 s and starts a rollout")
check(wait_until(lambda: any(
    e["command"] == "lock expired: ops (held by ci-8, set aside by the "
    "rollout)" for e in sl.ctl("show events 100")["events"]), 10),
    "its set-aside lock expires with an event")
check(sl.ctl("as bob rollout abort ops")["ok"],
      "and then anyone may abort the rollout")

# Reload keeps runtime decisions; a reload that removes the canary aborts
# its rollout.
import os
import re
import signal


def reload():
    """SIGHUP, then wait for sluice to record the reload (or its refusal)
    as an event; returns that event's command."""
    def reloads():
        return [e["command"] for e in sl.ctl("show events 1000")["events"]
                if e["command"] in ("reload", "reload refused")]
    n = len(reloads())
    os.kill(sl.proc.pid, signal.SIGHUP)
    deadline = time.time() + 30
    while time.time() < deadline:
        seen = reloads()
        if len(seen) > n:
            return seen[-1]
        time.sleep(0.05)
    return "no reload within 30 s"


before = weights("ok")
r = sl.ctl("rollout start err green")
check(r["ok"], "a new rollout on err before the reload (%s)" % r)
what = reload()
check(what == "reload", "SIGHUP reloads the config (%s)" % what)
check(weights("ok") == before, "SIGHUP keeps the promoted weights of ok")
check(rollout("err")["state"] == "running", "and the running rollout of err")
sl.write(sl_text.replace("[version:err/green]\nservers = %s\nweight = 0\n"
                         % green_err.addr, ""))
what = reload()
check(what == "reload", "SIGHUP reloads the edited config (%s)" % what)
r = rollout("err")
check(r["state"] == "aborted" and
      "the canary 'green' was removed by a reload" in r["reason"],
      "removing the canary by reload aborts its rollout (%s)" % r["reason"])
check(weights("err")[0] == {"blue": 100.0}, "and err serves blue alone")
with open(sl.state_path) as f:
    saved = f.read().split("[service:err]")[-1].split("\n[")[0]
check("lock = rollout" not in saved and " running " not in saved,
      "and the state file says so at once: no running rollout, no lock "
      "(%r)" % saved)

# Without latency measurement the analyzer could never promote: a config
# with [rollout:] and measure = no is refused (file:line), a reload that
# turns measurement off aborts a running rollout, and rollout start says
# why it cannot start.
sl.write(sl_text)
check(reload() == "reload", "green of err back by reload")
check(sl.ctl("rollout start err green")["ok"], "a rollout of err again")
sl.write(sl_text.replace("[sluice]\n", "[sluice]\nmeasure = no\n", 1))
check(reload() == "reload refused", "measure = no with [rollout:] sections: "
      "the reload is refused")
err = [e for e in sl.ctl("show events 1000")["events"]
       if e["command"] == "reload refused"][-1]["after"]["error"]
check(":2: [sluice] measure: 'no' leaves the analyzer no latencies" in err,
      "with the measure line and the reason (%s)" % err)
no_sections = sl_text.split("\n[rollout:")[0] + "\n"
sl.write(no_sections.replace("[sluice]\n", "[sluice]\nmeasure = no\n", 1))
check(reload() == "reload", "measure = no without [rollout:] sections: "
      "reloaded")
r = rollout("err")
check(r["state"] == "aborted" and "measure = no" in r["reason"],
      "and the running rollout is aborted, saying why (%s)" % r["reason"])
w, stable = weights("err")
check(w == {"blue": 100.0, "green": 0.0} and stable == "blue",
      "and its canary is routed no more, as an operator's abort does "
      "(%r, stable %s)" % (w, stable))
with open(sl.state_path) as f:
    saved = f.read().split("[service:err]")[-1].split("\n[")[0]
check("weight = green 0.00" in saved and " aborted " in saved,
      "and the state file says so: green at 0%% (%r)" % saved)
r = sl.ctl("rollout start err green")
check(not r["ok"] and r["error"].startswith("measure = no: without "
                                            "latencies"),
      "rollout start is refused while measure = no (%s)" % r.get("error"))

stop.set()
for t in threads:
    t.join(5)
check(sl.stop() == 0, "sluice exits 0")
done()
