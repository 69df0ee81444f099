#!/usr/bin/env python3
"""sluicectl against a fake control socket: a Unix socket served from this
script that answers canned JSON lines (control/PROTOCOL.md shapes) and
records what it was sent. Checks the client's side of the contract without
the daemon: exit codes 0/1/2/3, --json passthrough, the "as OWNER " prefix,
readable tables, watch (plain frames off a tty, redraws on a pty) and
rollout wait, and the messages for a missing or misbehaving daemon."""

import fcntl
import json
import os
import pty
import re
import select
import signal
import socketserver
import struct
import subprocess
import termios
import threading
import time

from harness import BUILD, TMP, check, done, skip, wait_until

SLUICECTL = os.path.join(BUILD, "sluicectl")
if not os.access(SLUICECTL, os.X_OK):
    skip("sluicectl not built at " + SLUICECTL)

SOCK = os.path.join(TMP, "control.sock")

LOCK = {"owner": "deploy-42", "expires": "2026-11-22T17:00:00Z",
        "expires_in": 118}
SERVICE = {
    "name": "shop", "stable": "blue", "previous_stable": None,
    "hosts": ["shop.example"], "path_prefix": "/",
    "sticky": ["header:X-User-Id", "ip"],
    "versions": [
        {"name": "blue", "weight": 90.0, "stable": True,
         "servers": [{"address": "127.0.0.1:8081", "weight": 1,
                      "state": "ready"}]},
        {"name": "green", "weight": 10.0, "stable": False,
         "servers": [{"address": "127.0.0.1:8082", "weight": 1,
                      "state": "ready"},
                     {"address": "127.0.0.1:8083", "weight": 2,
                      "state": "drain"}]}],
    "lock": LOCK, "rollout": None}


def vstats(weight, requests, rps, errors, p50, p99):
    return {"weight": weight, "requests": requests, "rps": rps,
            "responses": {"1xx": 0, "2xx": requests - errors, "3xx": 0,
                          "4xx": 0, "5xx": errors},
            "errors": errors, "error_rate": errors / requests,
            "latency_ms": {"count": requests, "mean": p50, "p50": p50,
                           "p90": p50 * 1.2, "p99": p99, "p999": p99,
                           "max": p99 * 2}}


STATS = {"service": "shop", "window_seconds": 10, "versions": {
    "blue": vstats(90.0, 3600, 360.0, 4, 20.4, 40.2),
    "green": vstats(10.0, 400, 40.0, 2, 21.0, 43.5)}}


def rollout(svc, state, step, reason=None, verdicts=()):
    steps = [1, 5, 25, 50, 100]
    return {"service": svc, "canary": "green", "baseline": "blue",
            "state": state, "step": step, "nsteps": len(steps),
            "steps": steps,
            "weight": 0.0 if state in ("reverted", "aborted")
            else float(steps[step - 1]),
            "step_started": "2026-11-22T16:59:00Z", "step_elapsed": 12,
            "started": "2026-11-22T16:58:00Z", "ended": None,
            "reason": reason, "verdicts": list(verdicts)}


VERDICT = {"time": "2026-11-22T16:59:10Z", "step": 2, "decision": "pass",
           "summary": "pass: 1 check",
           "checks": [{"name": "error_rate", "unit": "fraction",
                       "canary": 0.001,
                       "stable": 0.0012, "threshold": 0.01,
                       "statistic": 0.4, "bound": 0.003,
                       "decision": "pass", "why": "canary within bound"}]}


class Fake:
    """What the fake daemon was sent: (connection number, line)."""
    lines = []
    conns = 0
    calls = {}
    lock = threading.Lock()


def answer(cmd):
    """The reply to CMD: a dict, raw bytes, or "close" / "hang"."""
    with Fake.lock:
        n = Fake.calls.get(cmd, 0)
        Fake.calls[cmd] = n + 1
    words = cmd.split(" ")
    if cmd == "show services":
        return {"ok": True, "services": [dict(SERVICE), {
            "name": "api", "stable": "v1", "previous_stable": None,
            "versions": [{"name": "v1", "weight": 100.0}],
            "lock": None, "rollout": rollout("api", "running", 3)}]}
    if cmd in ("show service shop", "show service gone"):
        if cmd.endswith("gone") and n >= 1:
            return "close"
        return {"ok": True, "service": SERVICE}
    if cmd in ("show stats shop 10", "show stats gone 10"):
        return {"ok": True, **STATS}
    if cmd == "show rollout shop":
        return {"ok": True, "rollout": rollout("shop", "running", 3,
                                                verdicts=[VERDICT])}
    if cmd == "show rollout gone":
        return {"ok": True, "rollout": None}
    if cmd == "show rollout promo":
        r = (rollout("promo", "running", 1) if n < 2 else
             rollout("promo", "running", 2, verdicts=[VERDICT]) if n < 4
             else rollout("promo", "promoted", 5, verdicts=[VERDICT]))
        return {"ok": True, "rollout": r}
    if cmd == "show rollout rev":
        r = (rollout("rev", "running", 1) if n < 1 else
             rollout("rev", "reverted", 2,
                     reason="error_rate: canary 5.00% > 1.00%"))
        return {"ok": True, "rollout": r}
    if cmd == "show rollout bounce":
        # The daemon goes away in the middle (a restart), then resumes.
        if n == 1:
            return "close"
        r = (rollout("bounce", "running", 1) if n < 3 else
             rollout("bounce", "promoted", 5))
        return {"ok": True, "rollout": r}
    if words[:2] == ["show", "rollout"] and words[2].startswith("vanish"):
        # Answers once; then the daemon closes and is gone for good.
        if n >= 1:
            return "close"
        return {"ok": True, "rollout": rollout(words[2], "running", 2)}
    if cmd == "show rollout slow":
        return {"ok": True, "rollout": rollout("slow", "running", 2)}
    if cmd == "show rollout never":
        return {"ok": True, "rollout": None}
    if words[:2] == ["set", "weights"]:
        return {"ok": True, "service": words[2], "weights": {
            w.split("=")[0]: float(w.split("=")[1]) for w in words[3:]}}
    if cmd == "lock shop deploy-42 600":
        return {"ok": True, "service": "shop", "lock": LOCK}
    if cmd == "show events 2":
        return {"ok": True, "events": [
            {"time": "2026-11-22T16:59:00.123Z",
             "who": {"uid": 1000, "pid": 4242, "owner": "deploy-42"},
             "command": "set weights shop blue=90 green=10",
             "before": {"weights": {"blue": 100.0, "green": 0.0}},
             "after": {"weights": {"blue": 90.0, "green": 10.0}}},
            {"time": "2026-11-22T17:00:00.000Z", "who": {"owner": "sluice"},
             "command": "reload", "before": None, "after": None}]}
    if cmd == "show events 1000":
        return {"ok": True, "events": [
            {"time": "2026-11-22T16:59:00.123Z", "who": {"owner": "x"},
             "command": "set weights shop " + "v%d=1 " % i * 40,
             "before": None, "after": None} for i in range(1000)]}
    if cmd == "help":
        return {"ok": True, "commands": [
            {"usage": "show services", "help": "list services",
             "access": "read"},
            {"usage": "switch SVC VERSION", "help": "blue/green",
             "access": "write"}]}
    if cmd == "help set weights":
        return {"ok": True, "commands": [
            {"usage": "set weights SVC VERSION=PCT [VERSION=PCT ...]",
             "help": "set version weights", "access": "write"}]}
    if cmd == "switch shop green":
        return {"ok": True, "service": "shop", "stable": "green",
                "previous_stable": "blue"}
    if cmd == "set server shop blue 127.0.0.1:8081 drain":
        return {"ok": True, "service": "shop", "version": "blue",
                "server": "127.0.0.1:8081", "state": "drain"}
    if cmd == "rollout pause shop":
        return {"ok": True, "rollout": rollout("shop", "paused", 3)}
    if cmd == "reset shop":
        return {"ok": True, "service": "shop", "service_state": {
            "name": "shop", "stable": "blue", "versions": [
                {"name": "blue", "weight": 100.0},
                {"name": "green", "weight": 0.0}]}}
    if cmd == "unlock shop deploy-42":
        return {"ok": True, "service": "shop", "lock": None}
    if cmd == "frobnicate":
        return {"ok": True, "deep": {"a": {"b": [1, {"c": 2}]}}}
    if cmd == "garbage":
        return b"this is not json\n"
    if cmd == "nook":
        return b'{"services":[]}\n'
    if cmd == "spaced":
        return b'{ "ok" : true ,  "services" : [ ] }\r\n'
    if cmd == "chunked":
        return "chunked"
    if cmd in ("close", "hang"):
        return cmd
    return {"ok": False, "error": "unknown command: " + words[0]}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        with Fake.lock:
            Fake.conns += 1
            me = Fake.conns
        for raw in self.rfile:
            line = raw.decode().rstrip("\n")
            with Fake.lock:
                Fake.lines.append((me, line))
            cmd = re.sub(r"^as \S+ ", "", line)
            a = answer(cmd)
            if a == "close":
                return
            if a == "hang":
                time.sleep(3)
                return
            if a == "chunked":
                for part in (b'{"ok":tr', b'ue,"serv', b'ices":[]}\n'):
                    self.wfile.write(part)
                    self.wfile.flush()
                    time.sleep(0.2)
                continue
            if isinstance(a, dict):
                a = json.dumps(a).encode() + b"\n"
            self.wfile.write(a)
            self.wfile.flush()


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


server = Server(SOCK, Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()


def ctl(*args, env=None, timeout=30):
    """Run sluicectl; returns (exit code, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("SLUICE_SOCKET", None)
    e.update(env or {})
    p = subprocess.run([SLUICECTL] + list(args), capture_output=True,
                       text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def sent():
    with Fake.lock:
        return [line for _, line in Fake.lines]


# --- usage and help, no daemon needed --------------------------------------
code, out, err = ctl("--help")
check(code == 0 and out.startswith("usage: sluicectl"),
      "--help: usage, exit 0")
for cmd in ("help", "show services", "show service SVC", "show stats SVC",
            "set weights SVC", "switch SVC VERSION", "set server SVC",
            "rollout start SVC", "rollout pause|resume|abort|promote SVC",
            "show rollout SVC", "show events", "lock SVC OWNER TTL",
            "unlock SVC OWNER", "reset SVC", "watch SVC",
            "rollout wait SVC"):
    check(("\n  " + cmd) in out, "--help lists " + cmd)
check(out.count("e.g. sluicectl ") >= 15, "--help: an example per command")
check(all(len(line) <= 80 for line in out.splitlines()),
      "--help fits 80 columns")
code2, out2, _ = ctl("-h")
code3, out3, _ = ctl("help")
check(code2 == 0 and code3 == 0 and out2 == out and out3 == out,
      "-h and help print the same help without a daemon")
code, out, _ = ctl("help", "rollout")
check(code == 0 and "rollout wait" in out and "show services" not in out,
      "help rollout: just the rollout commands")
# help COMMAND: COMMAND's words, as separate arguments or quoted as one,
# pick the commands that start with them.
for args, want, unwanted in (
        (("help", "set", "weights"), "set weights SVC", "set server"),
        (("help", "show stats"), "show stats SVC", "show service"),
        (("help", "show", "stats"), "show stats SVC", "show events"),
        (("help", "rollout", "abort"), "rollout pause|resume|abort|promote",
         "rollout wait"),
        (("help", "rollout", "wait", "--daemon"), None, None)):
    code, out, err = ctl("-s", SOCK, *args)
    if want is None:
        check(sent()[-1] == "help rollout wait",
              "help --daemon COMMAND sends help COMMAND (%r)" % sent()[-1:])
        continue
    check(code == 0 and err == "" and ("\n  " + want) in out and
          ("\n  " + unwanted) not in out and "options:" not in out,
          "%s: just that command (%d, %r)" % (" ".join(args), code, err))
code, out, err = ctl("-s", SOCK, "help", "set", "weightz")
check(code == 2 and err == 'sluicectl: help: no command starts with "set '
      'weightz"\n', "help with an unknown prefix: exit 2, names it")
code, out, err = ctl("-s", SOCK, "--json", "help", "set", "weights")
check(code == 0 and sent()[-1] == "help set weights" and
      [c["usage"] for c in json.loads(out)["commands"]] ==
      ["set weights SVC VERSION=PCT [VERSION=PCT ...]"],
      "--json help set weights: the daemon's answer for set weights")
for args, what in (((), "no command"),
                  (("--bogus", "show", "services"), "unknown option"),
                  (("-s",), "-s without a value"),
                  (("--timeout", "soon", "show", "services"), "bad --timeout"),
                  (("--owner", "bad owner!", "show", "services"),
                   "bad --owner"),
                  (("show\nservices",), "newline in a word"),
                  (("watch",), "watch without a service"),
                  (("watch", "shop", "--count", "0"), "watch --count 0"),
                  (("watch", "shop", "--interval"), "--interval no value"),
                  (("rollout", "wait"), "rollout wait without a service"),
                  (("rollout", "wait", "shop", "--timeout", "-1"),
                   "rollout wait bad --timeout"),
                  (("help", "nosuch"), "help for an unknown command"),
                  (("set", "weights", "shop") + ("v=1",) * 30000,
                   "a command longer than the socket takes")):
    code, out, err = ctl("-s", SOCK, *args)
    check(code == 2 and err.startswith("sluicectl: "),
          "usage error (%s): exit 2 with a message" % what)
check(all("\n" not in line for line in sent()) and
      not any("services" == line for line in sent()),
      "a newline in an argument never reaches the socket")

# --- connection errors ------------------------------------------------------
missing = os.path.join(TMP, "missing.sock")
code, out, err = ctl("-s", missing, "show", "services")
check(code == 3 and err == "sluicectl: cannot connect to %s: No such file or "
      "directory (is sluice running? set -s or SLUICE_SOCKET)\n" % missing,
      "missing socket: exit 3, names the socket and the fix")
code, out, err = ctl("show", "services", env={"SLUICE_SOCKET": missing})
check(code == 3 and missing in err, "SLUICE_SOCKET is used when -s is not")
code, out, err = ctl("show", "services",
                     env={"SLUICE_SOCKET": ""})
check(code == 3 and "/run/sluice/control.sock" in err,
      "default socket is /run/sluice/control.sock")
code, out, err = ctl("show", "services", env={"SLUICE_SOCKET": SOCK})
check(code == 0 and "shop" in out, "SLUICE_SOCKET reaches the daemon")
code, out, err = ctl("-s", SOCK, "garbage")
check(code == 3 and "not JSON" in err and out == "",
      "non-JSON reply: exit 3, says so")
code, out, err = ctl("-s", SOCK, "nook")
check(code == 3 and "ok" in err, "reply without \"ok\": exit 3")
code, out, err = ctl("-s", SOCK, "close")
check(code == 3 and "closed" in err, "connection closed without reply: exit 3")
t0 = time.time()
code, out, err = ctl("-s", SOCK, "--timeout", "0.5", "hang")
check(code == 3 and "no reply within 0.5 s" in err and time.time() - t0 < 2.5,
      "no reply within --timeout: exit 3, clear message")

# --- replies ----------------------------------------------------------------
code, out, err = ctl("-s", SOCK, "show", "services")
check(code == 0, "show services: exit 0")
check(re.search(r"^NAME\s+STABLE\s+WEIGHTS\s+LOCK\s+ROLLOUT$", out, re.M),
      "show services: table header")
check(re.search(r"^shop\s+blue\s+blue 90\.00% green 10\.00%\s+deploy-42 "
                r"\(118 s\)\s+-$", out, re.M), "show services: shop row")
check(re.search(r"^api\s+v1\s+v1 100\.00%\s+-\s+green running step 3/5 "
                r"at 25\.00%$", out, re.M), "show services: rollout column")

code, out, err = ctl("-s", SOCK, "show", "service", "shop")
check(code == 0 and re.search(r"^stable:\s+blue$", out, re.M) and
      re.search(r"^sticky:\s+header:X-User-Id ip$", out, re.M) and
      re.search(r"^lock:\s+deploy-42 \(118 s\)$", out, re.M),
      "show service: key: value lines")
check(re.search(r"^green\s+10\.00%\s+127\.0\.0\.1:8082\s+1\s+ready\s+-\s+-$",
                out, re.M) and
      re.search(r"^\s+127\.0\.0\.1:8083\s+2\s+drain\s+-\s+-$", out, re.M),
      "show service: versions and servers table")

code, out, err = ctl("-s", SOCK, "show", "stats", "shop", "10")
lines = out.splitlines()
check(code == 0 and lines[0] == "shop: last 10 s, latency in ms",
      "show stats: title with the window")
check(lines[1].split() == ["VERSION", "WEIGHT", "REQ", "RPS", "ERR%", "P50",
                           "P90", "P99", "MAX"], "show stats: header")
check(lines[2].split() == ["blue", "90.00%", "3600", "360.0", "0.11",
                           "20.4", "24.5", "40.2", "80.4"],
      "show stats: blue row")
check(lines[3].split() == ["green", "10.00%", "400", "40.0", "0.50", "21.0",
                           "25.2", "43.5", "87.0"], "show stats: green row")
check(len(lines[1]) == len(lines[2]) == len(lines[3]),
      "show stats: numbers right-aligned in columns")

code, out, err = ctl("-s", SOCK, "show", "events", "2")
check(code == 0 and out.splitlines()[0] ==
      "2026-11-22T16:59:00.123Z  deploy-42 (uid 1000 pid 4242)  set weights "
      "shop blue=90 green=10  weights blue=100.00 green=0.00 \u2192 weights "
      "blue=90.00 green=10.00",
      "show events: time who command before -> after")
check(out.splitlines()[1] == "2026-11-22T17:00:00.000Z  sluice  reload",
      "show events: event without before/after")
code, out, err = ctl("-s", SOCK, "show", "events", "1000")
check(code == 0 and len(out.splitlines()) == 1000,
      "a reply of ~%d KiB is read whole" % (len(out) // 1024))
code, out, err = ctl("-s", SOCK, "chunked")
check(code == 0 and err == "", "a reply arriving in pieces is read whole")

code, out, err = ctl("-s", SOCK, "show", "rollout", "shop")
check(code == 0 and re.search(r"^state:\s+running$", out, re.M) and
      re.search(r"^step:\s+step 3/5 at 25\.00%, 12 s at this step$", out,
                re.M), "show rollout: state and step")
check(re.search(r"^  2026-11-22T16:59:10Z  step 2  pass: 1 check$", out,
                re.M), "show rollout: verdict time, step and summary")
check(re.search(r"^\s+CHECK\s+DECISION\s+CANARY\s+STABLE\s+THRESHOLD\s+"
                r"STATISTIC\s+BOUND\s+WHY$", out, re.M) and
      re.search(r"^\s+error_rate\s+pass\s+0\.10%\s+0\.12%\s+1\.00%\s+0\.4\s+"
                r"0\.003\s+canary within bound$", out, re.M),
      "show rollout: verdict checks, fractions as percentages")
code, out, err = ctl("-s", SOCK, "show", "rollout", "never")
check(code == 0 and out == "never: no rollout has run\n",
      "show rollout with none: says so")

code, out, err = ctl("-s", SOCK, "set", "weights", "shop", "blue=90",
                     "green=10")
check(code == 0 and out == "shop: weights blue=90.00 green=10.00\n",
      "set weights: one-line confirmation")
code, out, err = ctl("-s", SOCK, "set weights shop blue=50   green=50")
check(code == 0 and sent()[-1] == "set weights shop blue=50 green=50",
      "a quoted command is split and joined with single spaces")
code, out, err = ctl("-s", SOCK, "set\tweights shop\t\tblue=50", "green=50")
check(code == 0 and sent()[-1] == "set weights shop blue=50 green=50",
      "tabs separate words, as the daemon reads them (PROTOCOL.md): "
      "split and joined with single spaces (%d, %r)" % (code, err))
code, out, err = ctl("-s", SOCK, "lock", "shop", "deploy-42", "600")
check(code == 0 and out == "shop: locked by deploy-42 until "
      "2026-11-22T17:00:00Z (118 s)\n", "lock: one-line confirmation")
for args, want in (
        (("switch", "shop", "green"), "shop: stable green at 100% (was blue)"),
        (("set", "server", "shop", "blue", "127.0.0.1:8081", "drain"),
         "shop: blue 127.0.0.1:8081 drain"),
        (("rollout", "pause", "shop"),
         "shop: rollout of green paused, step 3/5 at 25.00%"),
        (("unlock", "shop", "deploy-42"), "shop: unlocked"),
        (("reset", "shop"), "shop: back to the config: stable blue, "
         "weights blue 100.00% green 0.00%")):
    code, out, err = ctl("-s", SOCK, *args)
    check(code == 0 and out == want + "\n",
          "%s: one-line confirmation" % " ".join(args[:2]))
code, out, err = ctl("-s", SOCK, "help", "--daemon")
check(code == 0 and re.search(r"^switch SVC VERSION\s+write\s+blue/green$",
                              out, re.M), "help --daemon: the daemon's list")
check(sent()[-1] == "help", "help --daemon sends help")
code, out, err = ctl("-s", SOCK, "--json", "help")
check(code == 0 and json.loads(out)["commands"][0]["access"] == "read",
      "--json help: the daemon's JSON")
code, out, err = ctl("-s", SOCK, "frobnicate")
check(code == 0 and json.loads(out) == {"ok": True, "deep": {
    "a": {"b": [1, {"c": 2}]}}} and "\n  " in out,
      "unknown reply shape: indented JSON")

code, out, err = ctl("-s", SOCK, "nosuch", "thing")
check(code == 1 and err == "sluicectl: unknown command: nosuch\n" and
      out == "", "ok:false: exit 1, the error on stderr")
check(sent()[-1] == "nosuch thing",
      "commands sluicectl does not know are sent as they are")

code, out, err = ctl("-s", SOCK, "--json", "spaced")
check(code == 0 and out == '{ "ok" : true ,  "services" : [ ] }\n',
      "--json: the raw reply line unchanged")
code, out, err = ctl("-s", SOCK, "--json", "show", "stats", "shop", "10")
check(code == 0 and json.loads(out) == {"ok": True, **STATS},
      "--json show stats: the daemon's JSON")
code, out, err = ctl("-s", SOCK, "--json", "nosuch")
check(code == 1 and json.loads(out)["ok"] is False,
      "--json with ok:false: raw line, exit 1")

code, out, err = ctl("-s", SOCK, "--owner", "deploy-42", "set", "weights",
                     "shop", "blue=80", "green=20")
check(code == 0 and sent()[-1] ==
      "as deploy-42 set weights shop blue=80 green=20",
      "--owner NAME sends \"as NAME \" before the command")

# --- watch ------------------------------------------------------------------
with Fake.lock:
    Fake.lines.clear()
code, out, err = ctl("-s", SOCK, "watch", "shop", "--count", "2",
                     "--interval", "0.2", env={"COLUMNS": "100"})
frames = [f for f in re.split(r"(?m)^(?=shop  stable)", out) if f]
check(code == 0 and len(frames) == 2 and "\033" not in out,
      "watch --count 2 off a tty: two plain frames, exit 0")
check(re.search(r"^blue\s+\[#+-+\]\s+90\.00%\s+360\.0\s+0\.11%\s+20\.4ms\s+"
                r"40\.2ms$", frames[0], re.M),
      "watch: weight bar, rps, error %, p50, p99")
bars = re.findall(r"\[(#*)(-*)\]", frames[0])
check(all(len(a) + len(b) == len(bars[0][0]) + len(bars[0][1])
          for a, b in bars) and len(bars[0][0]) > 8 * len(bars[1][0]),
      "watch: bars of one width, filled by weight")
check(max(len(line) for line in frames[0].splitlines()) < 100,
      "watch: frame fits the width")
check("rollout: green running step 3/5 at 25.00%" in frames[0] and
      "lock: deploy-42" in frames[0], "watch: rollout and lock in header")
conns = {c for c, _ in Fake.lines}
check(len(conns) == 1 and [line for _, line in Fake.lines] ==
      ["show service shop", "show stats shop 10", "show rollout shop"] * 2,
      "watch: service, stats, rollout per frame on one connection")
code, out, err = ctl("-s", SOCK, "watch", "gone", "--interval", "0.2")
check(code == 3 and "closed" in err and out.count("gone  stable") == 1,
      "watch: daemon goes away -> message, exit 3")
code, out, err = ctl("-s", missing, "watch", "shop")
check(code == 3 and "cannot connect" in err, "watch: no daemon -> exit 3")


def read_until(fd, enough, seconds=10):
    """Read FD until enough(text read so far) holds, or to its end (EOF,
    or EIO from a pty whose other side is closed). SECONDS only bounds a
    client that never gets there: the checks then fail on what was read,
    instead of on how fast a loaded machine ran it."""
    data = b""
    end = time.monotonic() + seconds
    while not enough(data.decode("utf-8", "replace")):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


for sig in (signal.SIGINT, signal.SIGTERM):
    p = subprocess.Popen([SLUICECTL, "-s", SOCK, "watch", "shop",
                          "--interval", "0.2"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    # The handlers are in place before the first frame is drawn, and a
    # signal that came sooner would kill sluicectl: signal once two frames
    # are out, however long a loaded machine took to draw them.
    head = read_until(p.stdout.fileno(),
                      lambda s: s.count("shop  stable") >= 2)
    p.send_signal(sig)
    out, err = p.communicate(timeout=10)
    out = head + out.decode("utf-8", "replace")
    check(p.returncode == 0 and out.count("shop  stable") >= 2 and
          err == b"", "watch: %s -> exit 0" % signal.Signals(sig).name)


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def frame_drawn(s):
    """A whole frame is on the terminal: the last thing draw() writes."""
    return "\033[J" in s


# The interval is far beyond read_until()'s bound, so the only redraw
# that can come in time after SIGWINCH is the one SIGWINCH makes. SIGWINCH
# is sent once the first frame is whole: the handler is in place by then,
# and the narrow frame is all that is read after it.
master, slave = pty.openpty()
set_size(slave, 30, 120)
p = subprocess.Popen([SLUICECTL, "-s", SOCK, "watch", "shop", "--interval",
                      "60"], stdin=slave, stdout=slave, stderr=slave,
                     start_new_session=True)
os.close(slave)
wide = read_until(master, frame_drawn)
check("\033[?25l" in wide and "\033[H" in wide and frame_drawn(wide),
      "watch on a tty: hides the cursor, draws from home")
wide_bar = max((len(m) for m in re.findall(r"\[[#-]+\]", wide)), default=0)
set_size(master, 30, 70)
p.send_signal(signal.SIGWINCH)
narrow = read_until(master, frame_drawn)
narrow_bars = re.findall(r"\[[#-]+\]", narrow)
check(narrow_bars and max(len(m) for m in narrow_bars) < wide_bar - 40,
      "watch on a tty: SIGWINCH redraws at once, bars follow the width")
check(all(len(re.sub(r"\033\[[0-9;?]*[A-Za-z]", "", line)) < 70
          for line in narrow.replace("\r", "").split("\n")),
      "watch on a tty: no line wider than the terminal")
p.send_signal(signal.SIGINT)
rest = read_until(master, lambda s: False)  # to the end: sluicectl exited
p.wait(10)
os.close(master)
check(p.returncode == 0 and rest.endswith("\033[?25h\r\n"),
      "watch on a tty: Ctrl-C restores the cursor, newline, exit 0")

# --- rollout wait -----------------------------------------------------------
code, out, err = ctl("-s", SOCK, "rollout", "wait", "promo")
check(code == 0 and out.splitlines() == [
    "promo: step 1/5 at 1.00%: running",
    "promo: step 2/5 at 5.00%: running, last verdict pass: 1 check",
    "promo: at 100.00% after step 5/5: promoted, last verdict pass: 1 "
    "check"],
      "rollout wait: promoted -> exit 0, a line per step")
code, out, err = ctl("-s", SOCK, "rollout", "wait", "rev")
check(code == 1 and "reverted" in out and
      err == "sluicectl: rev: rollout reverted: error_rate: canary 5.00% > "
      "1.00%\n", "rollout wait: reverted -> exit 1 with the reason")
t0 = time.time()
code, out, err = ctl("-s", SOCK, "rollout", "wait", "slow", "--timeout", "1")
check(code == 2 and 0.9 < time.time() - t0 < 3 and "slow" in err and
      len(out.splitlines()) == 1,
      "rollout wait --timeout: exit 2 after the timeout")
for zero in (("--timeout", "0"), ("--timeout=0",)):
    code, out, err = ctl("-s", SOCK, "rollout", "wait", "promo", *zero)
    check(code == 0 and out.endswith("promoted, last verdict pass: 1 "
                                     "check\n") and err == "",
          "rollout wait %s: no limit, like the global --timeout 0 (%d, %r)"
          % (" ".join(zero), code, err))
code, out, err = ctl("-s", SOCK, "rollout", "wait", "never")
check(code == 1 and "no rollout" in err, "rollout wait with none: exit 1")
code, out, err = ctl("-s", SOCK, "rollout", "wait", "nosvc")
check(code == 1 and err.startswith("sluicectl: unknown command"),
      "rollout wait refused: exit 1 with the error")
code, out, err = ctl("-s", missing, "rollout", "wait", "promo")
check(code == 3 and "cannot connect" in err, "rollout wait: no daemon -> 3")
with Fake.lock:
    conns = Fake.conns
code, out, err = ctl("-s", SOCK, "rollout", "wait", "bounce")
check(code == 0 and out.splitlines() == [
    "bounce: step 1/5 at 1.00%: running",
    "bounce: at 100.00% after step 5/5: promoted"] and
      err == "sluicectl: %s: connection closed without a reply; "
      "reconnecting\nsluicectl: reconnected to %s\n" % (SOCK, SOCK) and
      Fake.conns == conns + 2,
      "rollout wait: connection closed -> reconnects, says so, goes on "
      "(%d, %r)" % (code, err))

# A daemon that goes away for good: the wait tries again until its
# --timeout, then exits 3 (a one-shot command exits 3 at once: "close").
SOCK2 = os.path.join(TMP, "control2.sock")
server2 = Server(SOCK2, Handler)
threading.Thread(target=server2.serve_forever, daemon=True).start()
p = subprocess.Popen([SLUICECTL, "-s", SOCK2, "rollout", "wait", "vanish",
                      "--timeout", "3"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
first = p.stdout.readline()
server2.shutdown()
server2.server_close()
os.unlink(SOCK2)
out, err = p.communicate(timeout=30)
check(p.returncode == 3 and "vanish: step 2/5" in first and
      "; reconnecting" in err and "no answer from sluice within the "
      "--timeout of 3 s" in err,
      "rollout wait: daemon gone for good -> exit 3 at the --timeout "
      "(%d, %r)" % (p.returncode, err))

# With --json every outcome of rollout wait is one JSON line on stdout,
# the exit code unchanged: the final rollout, the daemon's refusal, or
# {"ok":false,"error":...} with the last rollout seen.


def json_wait(*args):
    code, out, err = ctl("-s", SOCK, "--json", "rollout", "wait", *args)
    lines = out.splitlines()
    return code, (json.loads(lines[0]) if len(lines) == 1 else lines), err


code, j, err = json_wait("slow", "--timeout", "1")
check(code == 2 and isinstance(j, dict) and j["ok"] is False and
      j["error"].startswith("timeout: slow: still running after 1 s") and
      j["service"] == "slow" and j["rollout"]["state"] == "running" and
      "giving up" in err,
      "--json rollout wait: a timeout is one JSON line with the last "
      "state, exit 2 (%r)" % (j,))
code, j, err = json_wait("promo")
check(code == 0 and isinstance(j, dict) and j["ok"] is True and
      j["rollout"]["state"] == "promoted",
      "--json rollout wait: promoted is one JSON line, exit 0")
code, j, err = json_wait("rev")
check(code == 1 and isinstance(j, dict) and
      j["rollout"]["state"] == "reverted",
      "--json rollout wait: reverted is one JSON line, exit 1")
code, j, err = json_wait("never")
check(code == 1 and isinstance(j, dict) and j["ok"] is False and
      "no rollout has run" in j["error"] and j["rollout"] is None,
      "--json rollout wait: no rollout is one JSON line, exit 1 (%r)" % (j,))
code, j, err = json_wait("nosvc")
check(code == 1 and isinstance(j, dict) and j["ok"] is False and
      j["error"].startswith("unknown command"),
      "--json rollout wait: the daemon's refusal, one line, exit 1")
code, j, err = json_wait("promo", "--timeout", "soon")
check(code == 2 and isinstance(j, dict) and j["ok"] is False and
      "bad --timeout" in j["error"] and j["rollout"] is None,
      "--json rollout wait: a usage error is one JSON line, exit 2")
code, out, err = ctl("-s", missing, "--json", "rollout", "wait", "promo")
check(code == 3 and len(out.splitlines()) == 1 and
      "cannot connect" in json.loads(out)["error"],
      "--json rollout wait: no daemon is one JSON line, exit 3")
server2 = Server(SOCK2, Handler)
threading.Thread(target=server2.serve_forever, daemon=True).start()
p = subprocess.Popen([SLUICECTL, "-s", SOCK2, "--json", "rollout", "wait",
                      "vanish2", "--timeout", "3"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
wait_until(lambda: Fake.calls.get("show rollout vanish2", 0) >= 1, 20)
server2.shutdown()
server2.server_close()
os.unlink(SOCK2)
out, err = p.communicate(timeout=30)
lines = out.splitlines()
j = json.loads(lines[0]) if len(lines) == 1 else {}
check(p.returncode == 3 and j.get("ok") is False and
      "no answer from sluice" in j.get("error", "") and
      j["rollout"]["state"] == "running",
      "--json rollout wait: daemon gone is one JSON line with the last "
      "state, exit 3 (%r)" % (out,))

server.shutdown()
server.server_close()
done()
