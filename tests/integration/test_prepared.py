"""Statements prepared once per PostgreSQL connection (store/prepared.hpp),
against a real server: the unit tests tagged [.pg] (tests/unit/
prepared_test.cpp) run here on a throwaway cluster, which they reach
through PRIVACYD_TEST_PG. They cover a statement run again with fresh
bindings, one outliving a rolled-back transaction and a failed run, one the
server lost (SQLSTATE 26000: all forgotten, the work run again once),
one whose table changed (dropped, and deallocated after its transaction),
one that failed in SOCI itself (dropped), a new connection, a statement in
use, a session that is not the Database's, the cache's bound, and the
switch that turns them off."""
import os
import subprocess
import unittest

from harness import BIN, OnPostgres

UNIT_TESTS = os.path.join(os.path.dirname(os.path.abspath(BIN)), "tests", "unit", "unit_tests")


class PreparedOnPostgres(OnPostgres, unittest.TestCase):
    def test_prepared_statements_on_a_real_server(self):
        url = self.database()
        out = subprocess.run([UNIT_TESTS, "[pg]"], env={**os.environ, "PRIVACYD_TEST_PG": url},
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout[-4000:] + out.stderr[-2000:])
        # Catch2 prints the totals; none may be skipped or filtered away.
        self.assertRegex(out.stdout, r"All tests passed \(\d+ assertions in 8 test cases\)")


if __name__ == "__main__":
    unittest.main()
