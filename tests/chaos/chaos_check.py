"""What a chaos run is judged by, read from PostgreSQL and from what the
peers got: accepted, completed, lost, stuck, notices delivered with their
repeats by id, notices under two ids, and a verdict line. On a failure the
evidence follows: the requests' rows, steps, notices, audit entries and the
daemons' log lines that name them (ids and statuses only)."""
import collections
import os
import subprocess

from chaos_peers import read_mail_dir
from chaos_run import BIN, FINAL

EVIDENCE = int(os.environ.get("CHAOS_EVIDENCE", "5"))


def judge(run):
    """Prints the report; returns the list of reasons to fail (empty: PASS)."""
    items = [it for it in run.items if it.request_id]
    requests = {r[0]: r for r in run.query("SELECT id, webhook_id, type, status, COALESCE(reason, '') FROM requests")}
    notices = run.query("SELECT id, request_id, channel, recipient, template, status, attempts FROM notices")
    two_ids_db = run.query("SELECT request_id, channel, recipient, template, COUNT(DISTINCT id) FROM notices"
                           " GROUP BY 1, 2, 3, 4 HAVING COUNT(DISTINCT id) > 1")
    by_request = collections.defaultdict(list)
    for n in notices:
        by_request[n[1]].append(n)
    bad = collections.defaultdict(list)   # what went wrong -> request ids

    completed = 0
    for it in items:
        row = requests.get(it.request_id)
        status, reason, want = it.expected()
        if row is None:
            bad["no row"].append(it.request_id)
        elif row[3] not in FINAL:
            bad["stuck"].append(it.request_id)
        elif row[3] == "failed":
            bad["failed"].append(it.request_id)
        elif (row[3], row[4]) != (status, reason):
            bad["unexpected status"].append(it.request_id)
        else:
            completed += 1
            got = {(n[2], n[3], n[4]) for n in by_request[it.request_id] if n[5] == "delivered"}
            if want - got:
                bad["notice missing"].append(it.request_id)
            if got - want:
                bad["notice not expected"].append(it.request_id)
    acked = {it.request_id for it in items}
    unacked = [r for r in requests.values() if r[0] not in acked and r[1].startswith("req-")]
    lost = len(bad["no row"]) + len(bad["failed"]) + len(bad["unexpected status"])
    not_delivered = collections.Counter(n[5] for n in notices if n[5] != "delivered")
    for n in notices:
        if n[5] != "delivered":
            bad[f"notice {n[5]}"].append(n[1])
    for r in two_ids_db:
        bad["two ids (outbox)"].append(r[0])

    # Partner notices: what the partner answered 2xx, by webhook-id (= notice id).
    p = run.partner
    p_rows = [n for n in notices if n[2] == "partner"]
    p_ids = {n[0] for n in p_rows}
    for n in p_rows:
        if n[5] == "delivered" and p.received[n[0]] == 0:
            bad["partner notice delivered, never received"].append(n[1])
    p_unknown = [i for i in set(p.received) | set(p.refused) if i not in p_ids]
    for i in p_unknown:
        bad["sent, not in the outbox"].append(p.request_of.get(i, "?"))
    for (rid, partner), ids in p.ids_by_target.items():
        if len(ids) > 1:
            bad["two ids (partner)"].append(rid)
    p_repeats = sum(c - 1 for c in p.received.values() if c > 1)
    p_repeated = [i for i, c in p.received.items() if c > 1]

    # Subject notices: files (named after the notice id) or mail.
    s_rows = [n for n in notices if n[2] == "subject"]
    s_ids = {n[0] for n in s_rows}
    email_of = {it.request_id: it.email for it in items}
    mails = run.mail.mails if run.mail else read_mail_dir(os.path.join(run.work, "var", "notices"))
    by_ids = all(mid for got in mails.values() for (mid, _) in got)
    s_received = sum(len(v) for v in mails.values())
    s_repeats = 0
    if by_ids:
        seen = collections.Counter(mid.strip("<>").split("@")[0] for got in mails.values() for (mid, _) in got)
        s_repeats = sum(c - 1 for c in seen.values() if c > 1)
        for n in s_rows:
            if n[5] == "delivered" and seen[n[0]] == 0:
                bad["subject notice delivered, never received"].append(n[1])
        for i in seen:
            if i not in s_ids:
                bad["sent, not in the outbox"].append(i)
        for rcpt, got in mails.items():
            per_subject = collections.defaultdict(set)
            for mid, subj in got:
                per_subject[subj].add(mid)
            if any(len(v) > 1 for v in per_subject.values()):
                bad["two ids (mail)"].append(rcpt)
    else:   # SMTP mail carries no notice id: per request, one mail per template, any more are repeats
        delivered = collections.Counter(n[1] for n in s_rows if n[5] == "delivered")
        rid_of = {e: r for r, e in email_of.items()}
        for rid, count in delivered.items():
            got = mails.get(email_of.get(rid, ""), [])
            if len({subj for _, subj in got}) < count:
                bad["subject notice delivered, never received"].append(rid)
        for rcpt, got in mails.items():
            s_repeats += len(got) - len({subj for _, subj in got})
            if delivered[rid_of.get(rcpt, "")] == 0:
                bad["sent, not in the outbox"].append(rid_of.get(rcpt, rcpt))

    audit = subprocess.run([BIN, "audit", "verify", "--config", run.config], capture_output=True, text=True,
                           timeout=600)
    audit_line = (audit.stdout.strip() or audit.stderr.strip()).splitlines()[-1:] or [""]

    # The report.
    s = run.sizes
    kinds = collections.Counter(it.kind for it in run.items)
    print(f"chaos {run.name}{' (short)' if s.short else ''}: seed {s.seed}, {len(run.items)} requests"
          f" ({kinds['dis']} disassociation, {kinds['rej']} never associated, {kinds['del']} deletion,"
          f" {kinds['acc']} access), {s.clients} senders, {run.instances} instance(s)")
    print(f"  faults: {', '.join(run.faults) or 'none'}")
    print(f"  took: sending {run.sent_at - run.started:.0f} s, settling {run.settled_at - run.sent_at:.0f} s")
    statuses = collections.Counter(r[3] for r in requests.values())
    print(f"  accepted {len(items)}, stored {len(acked & set(requests))}, completed {completed}, lost {lost}"
          f" (no row {len(bad['no row'])}, failed {len(bad['failed'])},"
          f" unexpected status {len(bad['unexpected status'])}), stuck {len(bad['stuck'])}")
    print(f"  requests by status: {dict(sorted(statuses.items()))}; stored but never acknowledged {len(unacked)}")
    print(f"  partner notices: outbox {len(p_rows)}, delivered {sum(n[5] == 'delivered' for n in p_rows)},"
          f" received {len(p.received)} ids, repeats with the same id {p_repeats} (over {len(p_repeated)} ids),"
          f" answered 503 {sum(p.refused.values())}, delivered but never received"
          f" {len(bad['partner notice delivered, never received'])}")
    how = ("files named by notice id: a repeat rewrites its file, so repeats do not show" if not run.mail
           else "by Message-ID, the notice id" if by_ids
           else "by recipient and subject line: the mail carries no Message-ID")
    extra = (f", connections {run.mail.connections}, dropped {sum(run.mail.drops.values())}"
             f" {dict(sorted(run.mail.drops.items()))}") if run.mail else ""
    print(f"  subject notices: outbox {len(s_rows)}, delivered {sum(n[5] == 'delivered' for n in s_rows)},"
          f" mails received {s_received}, repeats {s_repeats} ({how}), delivered but never received"
          f" {len(bad['subject notice delivered, never received'])}{extra}")
    print(f"  notices not delivered: {dict(not_delivered) or 0}; missing {len(bad['notice missing'])},"
          f" not expected {len(bad['notice not expected'])}, sent but not in the outbox"
          f" {len(bad['sent, not in the outbox'])}")
    print(f"  notices under two ids: outbox {len(two_ids_db)}, seen by the partner"
          f" {len(bad['two ids (partner)'])}, seen in mail {len(bad['two ids (mail)'])}")
    print(f"  daemons: exits nobody asked for {len(run.exits)}, starts that failed {len(run.failed_starts)}, SIGTERM exit codes {run.sigterm_codes},"
          f" webhook answers other than 2xx/503 {run.answers or 0}, deliveries never answered {run.never},"
          f" partner saw bad signatures {p.bad_signatures}, id/body mismatches {p.mismatched},"
          f" one id in flight twice {p.overlaps}")
    print(f"  audit verify: exit {audit.returncode}: {audit_line[0]}")
    warned = collections.Counter()
    for _, d in run.all_logs():
        for line in d.lines:
            words = line.split(" ")
            if len(words) > 2 and words[1] in ("warn", "error"):
                text = []
                for w in words[2:]:
                    if "=" in w:
                        break
                    text.append(w)
                warned[words[1] + " " + " ".join(text)] += 1
    print(f"  daemon warnings and errors: {sum(warned.values())}"
          + "".join(f"; {c}x {m}" for m, c in warned.most_common(6)))

    reasons = []
    check = lambda cond, text: reasons.append(text) if cond else None  # noqa: E731
    check(lost, f"{lost} lost")
    check(bad["stuck"], f"{len(bad['stuck'])} stuck")
    check(len(items) < len(run.items), f"{len(run.items) - len(items)} never accepted")
    check(two_ids_db or bad["two ids (partner)"] or bad["two ids (mail)"], "notices under two ids")
    never_got = sum(len(bad[f"{c} notice delivered, never received"]) for c in ("partner", "subject"))
    check(never_got, f"{never_got} notices delivered but never received")
    check(bad["sent, not in the outbox"], "notices sent that are not in the outbox")
    check(bad["notice missing"] or bad["notice not expected"], "notices missing or not expected")
    check(not_delivered, f"notices not delivered {dict(not_delivered)}")
    check(run.exits, f"{len(run.exits)} daemon exits nobody asked for")
    check(run.failed_starts and not run.database_down, f"{len(run.failed_starts)} daemon starts failed")
    check(any(c != 0 for c in run.sigterm_codes), "a daemon did not exit 0 on SIGTERM")
    check(run.answers, f"webhook answers other than 2xx/503: {run.answers}")
    check(p.bad_signatures or p.mismatched, "partner notices badly signed or with the wrong id")
    check(audit.returncode != 0, "audit chain not intact")
    print(f"  verdict: {'PASS' if not reasons else 'FAIL (' + '; '.join(reasons) + ')'}")
    if reasons:
        evidence(run, bad, requests)
    return reasons


def evidence(run, bad, requests):
    t0 = run.t0
    rel = lambda v: f"+{(int(v) - t0) / 1000:.1f}s" if v and v.lstrip("-").isdigit() else (v or "-")  # noqa: E731
    for what, slot, code, lines in ([("exited", *e) for e in run.exits]
                                    + [("failed to start", *e) for e in run.failed_starts]):
        print(f"  evidence: instance {slot} {what} with {code}; its last log lines:")
        for line in lines:
            print(f"    | {line}")
    logs = [(label, d.lines) for label, d in run.all_logs()]
    shown = set()
    for what, ids in bad.items():
        if not ids:
            continue
        ids = list(dict.fromkeys(ids))
        print(f"  evidence: {what}: {len(ids)}, first: {' '.join(ids[:EVIDENCE])}")
        for rid in ids[:EVIDENCE]:
            if rid in shown or rid not in requests:
                continue
            shown.add(rid)
            q = rid.replace("'", "")
            for r in run.query("SELECT type, status, COALESCE(reason, ''), next_step, COALESCE(lease_owner, ''),"
                               " lease_until, run_at, received_at, updated_at FROM requests WHERE id = '" + q + "'"):
                print(f"    {rid}: {r[0]} {r[1]} reason={r[2] or '-'} next_step={r[3]} lease={r[4] or '-'}"
                      f" until={rel(r[5])} run_at={rel(r[6])} received={rel(r[7])} updated={rel(r[8])}")
            for r in run.query("SELECT idx, step_id, status, attempts, COALESCE(error, ''), started_at, finished_at,"
                               " wake_at, COALESCE(output, '') FROM request_steps WHERE request_id = '" + q + "'"
                               " ORDER BY idx"):
                print(f"      step {r[0]} {r[1]}: {r[2]} attempts={r[3]} error={r[4] or '-'} started={rel(r[5])}"
                      f" finished={rel(r[6])} wake={rel(r[7])} output={r[8][:160] or '-'}")
            nids = []
            for r in run.query("SELECT id, channel, recipient, template, status, attempts, COALESCE(last_error, ''),"
                               " next_attempt_at, lease_until, created_at, delivered_at FROM notices"
                               " WHERE request_id = '" + q + "' ORDER BY created_at"):
                nids.append(r[0])
                got = run.partner.received.get(r[0], 0) if r[1] == "partner" else "?"
                print(f"      notice {r[0]} {r[1]}/{r[2]}/{r[3]}: {r[4]} attempts={r[5]} error={r[6] or '-'}"
                      f" next={rel(r[7])} lease={rel(r[8])} created={rel(r[9])} delivered={rel(r[10])}"
                      f" partner received={got}")
            for r in run.query("SELECT seq, at, event, detail FROM audit_log WHERE request_id = '" + q + "'"
                               " ORDER BY seq LIMIT 40"):
                print(f"      audit {r[0]} {rel(r[1])} {r[2]} {r[3][:160]}")
            n = 0
            for label, lines in logs:
                for line in lines:
                    if rid in line or any(i in line for i in nids):
                        n += 1
                        if n <= 25:
                            print(f"      log {label}: {line[:300]}")
            if n > 25:
                print(f"      log: {n - 25} more lines")
