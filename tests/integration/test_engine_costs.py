"""What one request costs the database (issue 15), through the real binary
on a throwaway PostgreSQL cluster: the transactions one disassociation
commits, read from pg_stat_database.xact_commit around it while nothing
else runs (the loops' periods are an hour; autovacuum is off)."""
import os
import tempfile
import time
import unittest

from harness import Daemon, OnPostgres, Receiver, demo_setup, new_secret, run, use_policies, write_config, write_secrets

# A backend reports its statistics at most once a second, and an idle one
# within PGSTAT_IDLE_INTERVAL (10 s): a count unchanged for longer than
# that has everything before it.
FLUSHED_AFTER = 11.0


class TransactionsPerRequest(OnPostgres, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg.psql("ALTER SYSTEM SET autovacuum = off")
        cls.pg.psql("SELECT pg_reload_conf()")

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.partner_secret = new_secret()
        self.partner = Receiver(self.partner_secret)
        self.addCleanup(self.partner.close)

    def committed(self, dbname):
        # From another database: the query's own transaction is not counted.
        return int(self.pg.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{dbname}'",
                                dbname="postgres").strip())

    def backends(self, dbname):
        return int(self.pg.psql(f"SELECT numbackends FROM pg_stat_database WHERE datname = '{dbname}'",
                                dbname="postgres").strip())

    def settled_count(self, dbname):
        """xact_commit once it has stopped moving for FLUSHED_AFTER seconds."""
        last = self.committed(dbname)
        since = time.monotonic()
        deadline = since + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.committed(dbname)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > FLUSHED_AFTER:
                return now
        self.fail("the database never went quiet")

    def test_a_disassociation_commits_at_most_eight_transactions(self):
        policies = demo_setup(self.dir.name, self.partner.url, self.partner_secret)
        # Two database connections, both opened by the warm-up (a new
        # connection's own start-up would be counted); a notice waited for
        # in memory up to 20 s, so that a slow machine does not change the
        # count (a later delivery costs the transactions the wait saves).
        config = write_config(self.dir.name, database=self.database(), log_level="info",
                              extra="database_pool: 2\nengine: { poll: 1h, lease: 60s, await_notices: 20s }\n")
        use_policies(config, policies)
        secret = new_secret()
        write_secrets(self.dir.name, [secret])
        r = run(["demo", "--config", config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        d = Daemon(config)
        self.addCleanup(d.kill)
        d.wait_ready()

        def disassociate(subject):
            partner = "P-1002" if subject == "demo-003" else "P-1001"
            status, resp = d.webhook({"type": "request.disassociation", "subject": {"huawei_id": subject},
                                      "partner": {"id": partner}, "occurred_at": "2026-11-26T05:00:00Z"}, secret)
            self.assertEqual(status, 202, resp)
            rid = resp["request_id"]
            # From its log, not the database: a query would be counted.
            d.wait_log(rf"request completed request_id={rid}")
            return rid

        # First, until both connections are open, so that what a process
        # does once (connecting, its first look at each table) is not counted.
        for warm_up in ("demo-001", "demo-002", "demo-003"):
            disassociate(warm_up)
            if self.backends(self.dbname) == 2:
                break
        self.assertEqual(self.backends(self.dbname), 2, "the warm-up opened both database connections")
        before = self.settled_count(self.dbname)
        rid = disassociate("demo-005")
        after = self.settled_count(self.dbname)
        # It did all it should: completed, the partner told, and the person.
        self.assertEqual(self.pg.psql(f"SELECT status FROM requests WHERE id = '{rid}'", dbname=self.dbname).strip(),
                         "completed")
        self.assertEqual(self.pg.psql(f"SELECT channel, status FROM notices WHERE request_id = '{rid}'"
                                      " ORDER BY channel", dbname=self.dbname).split(),
                         ["partner|delivered", "subject|delivered"])
        self.assertEqual([s for s in self.pg.psql(f"SELECT status FROM request_steps WHERE request_id = '{rid}'"
                                                  " ORDER BY idx", dbname=self.dbname).split()],
                         ["succeeded"] * 4)
        self.assertLessEqual(after - before, 8, f"{after - before} transactions for one disassociation")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
