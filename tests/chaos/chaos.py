#!/usr/bin/env python3
"""The chaos suite (SPEC §12, issue 11): requests keep their promises while
things break.

  pg-restart     PostgreSQL (fsync on) restarted every 5-20 s, stopped
                 `-m fast` or `-m immediate` at random, down 0.5-3 s
  two-instances  two `privacyd serve` on one PostgreSQL, each killed with
                 SIGKILL at random instants and started again; the senders
                 spread over both
  partner-503    the partners' notice webhook answers 503 half the time
  calm           no faults at all: the control (run only when named)
  smtp-drops     subject notices by SMTP to a server that drops half of the
                 connections (after the greeting, mid-DATA, after the whole
                 message before its 250, ...)

Each run associates its synthetic subjects, then sends disassociations
(and some deletions, access requests and disassociations of subjects never
associated) spread over CHAOS_SECONDS while its faults go on, then waits
for everything to finish and prints accepted, completed, lost, stuck,
notices delivered with repeats by id, notices under two ids, and a verdict
line. Exit 1 when any scenario fails.

  tests/chaos/chaos.py [--short] [SCENARIO ...]     (default: all of them)

--short (CTest) runs ~200 requests over 40 s. Environment: PRIVACYD_BIN,
CHAOS_REQUESTS, CHAOS_SECONDS, CHAOS_CLIENTS, CHAOS_STALL, CHAOS_SEED,
CHAOS_MIN_FAULTS (2), CHAOS_KEEP=1 (keep the work folder and the logs,
which a failing run keeps anyway), CHAOS_EVIDENCE (requests shown per
problem, 5).
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
    while True:
        until = time.monotonic() + rng.uniform(low, high)
        while time.monotonic() < until:
            if run.sending_done.is_set() and count() >= MIN_FAULTS:
                return
            time.sleep(0.1)
        act()


def pg_restarts(run):
    rng = random.Random(run.sizes.seed + 3)
    modes = collections.Counter()

    def restart():
        mode = rng.choice(["fast", "immediate"])
        run.pg._as_owner([f"{run.pg.bindir}/pg_ctl", "-D", run.pg.data, "-m", mode, "-w", "stop"])
        time.sleep(rng.uniform(0.5, 3.0))
        run.pg.start()
        modes[mode] += 1
    fault_loop(run, rng, 5, 20, restart, lambda: sum(modes.values()))
    run.faults.append(f"{sum(modes.values())} PostgreSQL restarts ({modes['fast']} -m fast,"
                      f" {modes['immediate']} -m immediate)")


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
    run.faults.append(f"{sum(kills.values())} SIGKILLs ({', '.join(f'instance {s}: {kills[s]}' for s in sorted(kills))})")


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
