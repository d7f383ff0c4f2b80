#!/usr/bin/env python3
"""The chaos suite (SPEC §12, issue 11): requests keep their promises while
things break.

  pg-restart     PostgreSQL (fsync on) restarted every 5-20 s, stopped
                 `-m fast` or `-m immediate` at random, down 0.5-3 s (one
                 time in five 6-10 s, past the daemon's connect_timeout)
  two-instances  two `privacyd serve` on one PostgreSQL, each killed with
                 SIGKILL at random instants and started again; the senders
                 spread over both
  partner-503    the partners' notice webhook answers 503 half the time
  smtp-drops     subject notices by SMTP to a server that drops half of the
                 connections (after the greeting, mid-DATA, after the whole
                 message before its 250, ...)
  calm           no faults at all: the control (run only when named)

Each run associates its synthetic subjects, then sends disassociations
(and some deletions, access requests and disassociations of subjects never
associated) spread over CHAOS_SECONDS while its faults go on, then waits
for everything to finish and prints accepted, completed, lost, stuck,
notices delivered with repeats by id, notices under two ids, and a verdict
line. Exit 1 when any scenario fails.

  tests/chaos/chaos.py [--short] [SCENARIO ...]     (default: all of them)

Without --short (`make chaos`): 5,000 requests over 300 s per scenario;
--short (CTest, `make test`): 200 requests over 40 s. Environment:
PRIVACYD_BIN, CHAOS_REQUESTS, CHAOS_SECONDS, CHAOS_CLIENTS (senders: 16,
short 8), CHAOS_STALL (a request not finished once nothing has moved for
this long is stuck: 120 s, short 60 s), CHAOS_SETTLE_MAX, CHAOS_SEED (the
mix, the waves and the faults' timing), CHAOS_MIN_FAULTS (2),
CHAOS_PEER_DELAY (the partner and the mail server answer after up to 0.3 s),
CHAOS_KEEP=1 (keep the work folder and the logs, which a failing run keeps
anyway), CHAOS_EVIDENCE (requests shown per problem, 5).
"""
import argparse
import collections
import os
import random
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos_check import judge  # noqa: E402
from chaos_run import Run  # noqa: E402

MIN_FAULTS = int(os.environ.get("CHAOS_MIN_FAULTS", "2"))


def fault_loop(run, rng, low, high, act, count):
    """Calls act() at random intervals of low..high seconds while the
    requests are being sent (and until there were MIN_FAULTS of them)."""
    while not run.broken:
        until = time.monotonic() + rng.uniform(low, high)
        while time.monotonic() < until:
            if run.broken or (run.sending_done.is_set() and count() >= MIN_FAULTS):
                return
            time.sleep(0.1)
        try:
            act()
        except Exception as e:  # the fault could not be undone: nothing after it would mean anything
            run.broken = f"a fault could not be undone: {e!r}"


def pg_restarts(run):
    rng = random.Random(run.sizes.seed + 3)
    modes = collections.Counter()
    run.database_down = True

    def restart():
        mode = rng.choice(["fast", "immediate"])
        long = rng.random() < 0.2   # longer than the daemon's connect_timeout (5 s)
        run.pg._as_owner([f"{run.pg.bindir}/pg_ctl", "-D", run.pg.data, "-m", mode, "-w", "stop"])
        time.sleep(rng.uniform(6.0, 10.0) if long else rng.uniform(0.5, 3.0))
        run.pg.start()
        modes[mode] += 1
        modes["long"] += long
    fault_loop(run, rng, 5, 20, restart, lambda: modes["fast"] + modes["immediate"])
    run.faults.append(f"{modes['fast'] + modes['immediate']} PostgreSQL restarts ({modes['fast']} -m fast,"
                      f" {modes['immediate']} -m immediate; {modes['long']} down 6-10 s, the others 0.5-3 s)")


def instance_kills(run):
    kills = collections.Counter()

    def killer(slot):
        rng = random.Random(run.sizes.seed + 10 + slot)

        def kill():
            run.kill_slot(slot, delay=rng.uniform(0.0, 2.0))
            kills[slot] += 1
        fault_loop(run, rng, 3, 12, kill, lambda: kills[slot])
    threads = [threading.Thread(target=killer, args=(slot,)) for slot in range(run.instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    each = ", ".join(f"instance {s}: {kills[s]}" for s in sorted(kills))
    run.faults.append(f"{sum(kills.values())} SIGKILLs ({each})")


SCENARIOS = {
    "calm": (dict(), None, None),   # no faults: the control run, not in the default set
    "pg-restart": (dict(), pg_restarts, None),
    "two-instances": (dict(instances=2), instance_kills, None),
    "partner-503": (dict(partner_fail=0.5), None, "the partners' webhook answers 503 to half of the deliveries"),
    "smtp-drops": (dict(smtp_drop=0.5), None, "the SMTP server drops or refuses (421) half of the connections"),
}


def scenario(name, short):
    options, faults, described = SCENARIOS[name]
    run = None
    failed = True
    try:
        run = Run(name, short, **options)
        if described:
            run.faults.append(described)
        run.execute(faults)
        failed = bool(judge(run))
    except Exception:
        print(f"chaos {name}: the run itself broke:")
        traceback.print_exc(file=sys.stdout)
        print("  verdict: FAIL (the run broke)")
    finally:
        if run is not None:
            keep = failed or os.environ.get("CHAOS_KEEP") == "1"
            run.cleanup(keep)
            if keep:
                print(f"  kept: {run.work} (logs/ holds every instance's log and PostgreSQL's)")
        sys.stdout.flush()
    return not failed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the short version each CTest run does")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=" | ".join(SCENARIOS))
    args = parser.parse_args()
    names = args.scenarios or [n for n in SCENARIOS if n != "calm"]
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    results = {name: scenario(name, args.short) for name in names}
    if len(names) > 1:
        print("chaos: " + ", ".join(f"{n} {'PASS' if ok else 'FAIL'}" for n, ok in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
