"""`privacyd serve` on a throwaway PostgreSQL: readiness follows the
database down and back up; migrations run once under concurrency."""
import os
import subprocess
import tempfile
import unittest

from harness import BIN, Daemon, PgCluster, wait_for, write_config


class ServeOnPostgres(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def test_readyz_follows_the_database_down_and_back(self):
        self.pg.psql("CREATE DATABASE ready_test")
        path = write_config(self.dir.name, database=self.pg.dsn("ready_test"))
        d = Daemon(path)
        self.addCleanup(d.kill)
        d.wait_ready()
        self.assertEqual(d.get_json("/readyz")[0], 200)
        self.pg.stop()
        try:
            wait_for(lambda: d.get_json("/readyz")[0] == 503, what="/readyz to report the database down")
            self.assertEqual(d.get_json("/healthz")[0], 200, "the process itself is still up")
        finally:
            self.pg.start()
        wait_for(lambda: d.get_json("/readyz")[0] == 200, timeout=30, what="/readyz to recover")
        self.assertEqual(d.stop(), 0, "\n".join(d.lines[-40:]))

    def test_concurrent_migrations_apply_each_version_once(self):
        self.pg.psql("CREATE DATABASE migrate_test")
        path = write_config(self.dir.name, database=self.pg.dsn("migrate_test"))
        procs = [subprocess.Popen([BIN, "migrate", "--config", path], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
        rows = self.pg.psql("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
                            dbname="migrate_test").split()
        self.assertTrue(rows)
        for row in rows:
            version, count = row.split("|")
            self.assertEqual(count, "1", f"version {version} applied {count} times")

    def test_serve_refuses_to_start_without_a_database(self):
        path = write_config(self.dir.name,
                            database="postgresql://host=127.0.0.1 port=1 dbname=none connect_timeout=2")
        d = Daemon(path)
        self.assertEqual(d.wait_exit(), 1)
        self.assertTrue(any("cannot connect to the database" in l for l in d.lines), d.lines)


if __name__ == "__main__":
    unittest.main()
