"""The operator console (SPEC §15), end to end in a real browser: Debian's
chromium, driven through chromium-driver by python3-selenium, against the
real binary with real requests. A screenshot of each page is saved under
$PRIVACYD_TEST_OUTPUT/console (the build's test-output folder under ctest).
The browser's console must stay free of errors: every test ends by reading
its log."""
import glob
import os
import sqlite3
import tempfile
import time
import unittest

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from harness import wait_for
from test_admin import AdminSetup

OUTPUT = os.path.join(os.environ.get("PRIVACYD_TEST_OUTPUT", tempfile.gettempdir()), "console")
DAY_MS = 24 * 3600 * 1000


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # This machine's network is closed: no background connections at all.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,800",
                f"--user-data-dir={tempfile.mkdtemp(prefix='privacyd-chromium-')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


class Console(AdminSetup, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(OUTPUT, exist_ok=True)
        cls.browser = browser()

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()

    def setUp(self):
        AdminSetup.setUp(self)  # the demo, deletion awaiting approval, tokens "watcher" and "ops", privacyd serving
        self.base = f"http://127.0.0.1:{self.d.port('admin')}"
        b = self.browser
        b.set_window_size(1280, 800)
        b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme",
                                                                         "value": "light"}]})
        b.get(self.base + "/ui/")
        b.execute_script("sessionStorage.clear()")
        b.get_log("browser")  # start each test with an empty log
        self.allowed = set()  # statuses a test provokes on purpose (a wrong token's 401, say)

    def tearDown(self):
        # Nothing the page shows is a placeholder a bug left behind.
        shown = self.browser.find_element(By.TAG_NAME, "main").text
        self.assertNotRegex(shown, r"\b(null|undefined|NaN|\[object Object\])\b")
        errors = [e["message"] for e in self.browser.get_log("browser") if e["level"] == "SEVERE"
                  and not any(f"status of {s} " in e["message"] for s in self.allowed)]
        self.assertEqual(errors, [], "the browser's console has errors")

    # --- helpers -------------------------------------------------------------

    def wait(self, condition, timeout=15):
        return WebDriverWait(self.browser, timeout).until(condition)

    def shot(self, name):
        self.shots = getattr(self, "shots", 0) + 1
        self.browser.save_screenshot(os.path.join(OUTPUT, f"{self._testMethodName}-{self.shots:02d}-{name}.png"))

    def narrow(self, width=420):
        """A phone's width: nothing may run off the side of the page."""
        b = self.browser
        b.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        try:
            self.assertEqual(b.execute_script("return window.innerWidth"), width)
            self.assertLessEqual(b.execute_script("return document.documentElement.scrollWidth"), width)
            self.shot("narrow")
        finally:
            b.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def tab_to(self, text, limit=40):
        """Presses Tab until the focused element reads `text`."""
        for _ in range(limit):
            ActionChains(self.browser).send_keys(Keys.TAB).perform()
            if self.browser.switch_to.active_element.text == text:
                return self.browser.switch_to.active_element
        self.fail(f"Tab never reached {text!r}")

    def sign_in(self, name):
        b = self.browser
        b.get(self.base + "/ui/")
        field = self.wait(EC.element_to_be_clickable((By.ID, "token")))
        field.clear()
        field.send_keys(self.tokens[name])
        b.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]").click()
        self.wait(EC.visibility_of_element_located((By.ID, "nav")))
        self.wait(EC.text_to_be_present_in_element((By.ID, "who"), name))

    def db(self, sql, *args):
        con = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def status_of(self, rid):
        return self.db("SELECT status FROM requests WHERE id = ?", rid)[0][0]

    def open_request(self, rid):
        self.browser.get(f"{self.base}/ui/#/requests/{rid}")
        self.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), rid))

    def confirm(self, fields=None):
        dialog = self.wait(EC.visibility_of_element_located((By.ID, "confirm")))
        for name, value in (fields or {}).items():
            field = dialog.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        self.shot("dialog")
        dialog.find_element(By.ID, "confirm-ok").click()
        self.wait(EC.invisibility_of_element_located((By.ID, "confirm")))

    # --- tests ---------------------------------------------------------------

    def test_every_page_carries_the_csp_and_no_external_asset(self):
        for path in ("/ui/", "/ui/console.js", "/ui/console.css", "/ui/favicon.svg", "/ui/nothing-here"):
            status, headers, body = self.d.request("GET", path, listener="admin")
            self.assertEqual(status, 404 if path.endswith("nothing-here") else 200, path)
            self.assertIn("default-src 'self'", headers.get("Content-Security-Policy", ""), path)
            self.assertEqual(headers.get("X-Content-Type-Options"), "nosniff", path)
            self.assertNotIn(b"http://", body.replace(b"http://www.w3.org/2000/svg", b""), path)
            self.assertNotIn(b"https://", body, path)
        status, headers, _ = self.d.request("GET", "/ui", listener="admin")
        self.assertEqual((status, headers.get("Location")), (308, "/ui/"))
        # No inline scripts or styles for the CSP to have to allow.
        _, _, page = self.d.request("GET", "/ui/", listener="admin")
        self.assertNotIn(b"<script>", page)
        self.assertNotIn(b"style=", page)

    def test_a_wrong_token_stays_out_and_the_overview_counts_match_the_database(self):
        self.allowed.add(401)
        # Requests of each kind in each state the overview tells apart.
        self.submit("request.deletion", "demo-001")  # awaits an approval: open
        self.submit("request.deletion", "demo-002")  # the same
        access = self.submit("request.access", "demo-002")  # completes: not open
        gone = self.submit("request.disassociation", "demo-003", partner="P-1002")  # completes; P-1002 is told
        wait_for(lambda: self.db("SELECT COUNT(*) FROM requests WHERE status = 'awaiting_approval'")[0][0] == 2
                 and self.status_of(access) == "completed" and self.status_of(gone) == "completed",
                 what="the requests to settle")
        due_soon, overdue = self.db("SELECT id FROM requests WHERE type = 'deletion' ORDER BY id")
        now = int(time.time() * 1000)
        awaited = self.db("SELECT id FROM notices WHERE request_id = ? AND channel = 'partner'", gone)
        self.assertEqual(len(awaited), 1, "the partner's notice awaits its acknowledgement")
        mails = self.db("SELECT id FROM notices WHERE request_id = ? AND channel = 'subject'", access)
        con = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        with con:
            con.execute("UPDATE requests SET deadline_at = ? WHERE id = ?", (now + 3 * DAY_MS, due_soon[0]))
            con.execute("UPDATE requests SET deadline_at = ? WHERE id = ?", (now - DAY_MS, overdue[0]))
            con.execute("UPDATE notices SET ack_due_at = ? WHERE id = ?", (now - DAY_MS, awaited[0][0]))
            con.execute("UPDATE notices SET status = 'dead' WHERE id = ?", (mails[0][0],))
        con.close()

        b = self.browser
        b.get(self.base + "/ui/")
        field = self.wait(EC.element_to_be_clickable((By.ID, "token")))
        field.send_keys("not-a-token")
        b.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]").click()
        self.wait(EC.text_to_be_present_in_element((By.ID, "signin-error"), "not accepted"))
        self.assertFalse(b.find_element(By.ID, "nav").is_displayed(), "a wrong token stays out")
        self.assertIsNone(b.execute_script("return sessionStorage.getItem('privacyd.token')"))
        self.shot("sign-in-refused")

        self.sign_in("ops")
        self.wait(EC.presence_of_element_located((By.ID, "audit-state")))
        count = lambda name: b.find_element(By.CSS_SELECTOR, f"[data-count={name}]").text
        expected = {"deletion-open": "2", "deletion-due": "1", "deletion-overdue": "1", "access-open": "0",
                    "access-due": "0", "access-overdue": "0", "disassociation-open": "0",
                    "notices-dead": "1", "notices-unacknowledged": "1", "notices-ack-overdue": "1"}
        self.assertEqual({name: count(name) for name in expected}, expected)
        # And as the database has them, counted here in SQL of the test's own.
        for kind in ("access", "deletion", "disassociation"):
            open_, due, late = self.db(
                "SELECT COUNT(*), COALESCE(SUM(deadline_at BETWEEN ? AND ?), 0), COALESCE(SUM(deadline_at < ?), 0)"
                " FROM requests WHERE type = ? AND status NOT IN ('completed', 'rejected')",
                now, now + 7 * DAY_MS, now, kind)[0]
            self.assertEqual((count(f"{kind}-open"), count(f"{kind}-due"), count(f"{kind}-overdue")),
                             (str(open_), str(due), str(late)), kind)
        self.assertIn("Intact", b.find_element(By.ID, "audit-state").text)
        self.shot("overview")
        b.find_element(By.ID, "verify-audit").click()
        self.wait(EC.text_to_be_present_in_element((By.ID, "audit-state"), "Intact"))

        # Narrow, and dark: nothing runs off the side, and the colours follow.
        self.narrow()
        b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme",
                                                                         "value": "dark"}]})
        self.assertEqual(b.execute_script("return getComputedStyle(document.body).backgroundColor"),
                         "rgb(13, 17, 23)")
        self.shot("overview-dark")

    def test_notices_are_listed_and_an_operator_records_an_acknowledgement_and_extends_a_deadline(self):
        gone = self.submit("request.disassociation", "demo-003", partner="P-1002")
        wait_for(lambda: self.status_of(gone) == "completed", what="the disassociation")
        notice = self.db("SELECT id FROM notices WHERE request_id = ? AND channel = 'partner'", gone)[0][0]
        self.sign_in("ops")
        # The request's timeline shows its notices, delivered and awaiting the partner.
        self.open_request(gone)
        row = self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-notice='{notice}']")))
        self.assertIn("delivered", row.text)
        self.assertIn("due by", row.text)
        self.narrow()
        timeline_row = self.browser.find_element(By.CSS_SELECTOR, f"tr[data-notice='{notice}']")
        self.browser.get(self.base + "/ui/#/notices?acknowledged=false")
        # The same page, another view: the timeline's row (which the same
        # selector finds) must be gone before the list's row is looked for.
        self.wait(EC.staleness_of(timeline_row))
        row = self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-notice='{notice}']")))
        self.shot("notices")
        row.find_element(By.XPATH, ".//button[text()='Acknowledge']").click()
        dialog = self.wait(EC.visibility_of_element_located((By.ID, "confirm")))
        Select(dialog.find_element(By.NAME, "outcome")).select_by_value("no_data")
        self.confirm({"note": "Confirmed by phone with their DPO"})
        self.wait(EC.text_to_be_present_in_element((By.ID, "flash"), "recorded"))
        self.assertEqual(self.db("SELECT ack_outcome, ack_by FROM notices WHERE id = ?", notice)[0], ("no_data", "ops"))
        self.open_request(gone)
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"tr[data-notice='{notice}']"), "no data by ops"))
        self.assertIn("Confirmed by phone", self.browser.find_element(By.CSS_SELECTOR, f"tr[data-notice='{notice}']").text)

        rid = self.submit("request.deletion", "demo-001")
        wait_for(lambda: self.status_of(rid) == "awaiting_approval", what="an approval to wait for")
        before = self.db("SELECT deadline_at FROM requests WHERE id = ?", rid)[0][0]
        self.open_request(rid)
        self.browser.find_element(By.XPATH, "//div[@id='request-actions']/button[text()='Extend deadline']").click()
        self.confirm({"days": "10", "reason": "Waiting for the institute's archive"})
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "dl.facts"), "Waiting for the institute"))
        self.assertEqual(self.db("SELECT deadline_at FROM requests WHERE id = ?", rid)[0][0], before + 10 * DAY_MS)
        self.assertEqual(self.browser.find_elements(By.XPATH, "//button[text()='Extend deadline']"), [], "once only")

    def test_an_operator_approves_one_request_and_rejects_another_with_a_reason_the_person_reads(self):
        approve = self.submit("request.deletion", "demo-001")
        reject = self.submit("request.deletion", "demo-002")
        wait_for(lambda: {self.status_of(approve), self.status_of(reject)} == {"awaiting_approval"},
                 what="both to await approval")
        self.sign_in("ops")

        # The list, filtered to what waits for an operator.
        self.browser.get(self.base + "/ui/#/requests?status=awaiting_approval")
        self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-request='{approve}']")))
        rows = self.browser.find_elements(By.CSS_SELECTOR, "tr[data-request]")
        self.assertEqual({r.get_attribute("data-request") for r in rows}, {approve, reject})
        self.shot("requests")

        # A request's timeline: its steps, its deadline, its audit entries.
        self.open_request(approve)
        review = self.browser.find_element(By.CSS_SELECTOR, "tr[data-step=review]")
        self.assertIn("approval waiting", review.text)
        self.assertIn("Status\nawaiting approval", self.browser.find_element(By.CSS_SELECTOR, "dl.facts").text)
        self.assertIn("day(s) left", self.browser.find_element(By.TAG_NAME, "main").text)
        self.assertIn("request.received", self.browser.find_element(By.TAG_NAME, "main").text)
        self.shot("request")
        # By keyboard from the top of the page: the skip link, then Approve, then Enter to confirm.
        self.browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        skip = self.tab_to("Skip to content")
        skip.send_keys(Keys.ENTER)
        self.assertEqual(self.browser.switch_to.active_element.get_attribute("id"), "main")
        self.assertIn(approve, self.browser.find_element(By.TAG_NAME, "h1").text, "the skip link keeps the page")
        self.tab_to("Approve").send_keys(Keys.ENTER)
        self.wait(EC.visibility_of_element_located((By.ID, "confirm")))
        self.shot("approve-dialog")
        ActionChains(self.browser).send_keys(Keys.ENTER).perform()
        self.wait(EC.invisibility_of_element_located((By.ID, "confirm")))
        wait_for(lambda: self.status_of(approve) != "awaiting_approval", what="the approval to take")
        self.wait(EC.text_to_be_present_in_element((By.ID, "flash"), "approved"))

        reason = "Identity not confirmed: please apply again from your account"
        self.open_request(reject)
        self.browser.find_element(By.XPATH, "//div[@id='request-actions']/button[text()='Reject']").click()
        field = self.wait(EC.visibility_of_element_located((By.NAME, "reason")))
        field.send_keys(reason)
        self.shot("reject-dialog")
        field.send_keys(Keys.ENTER)  # Enter in the field confirms
        self.wait(EC.invisibility_of_element_located((By.ID, "confirm")))
        self.wait(EC.text_to_be_present_in_element((By.ID, "flash"), "rejected"))
        self.assertEqual(self.status_of(reject), "rejected")
        self.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "request.rejected"))
        self.shot("request-rejected")

        # The reason reaches the person's mail.
        def mailed():
            for path in glob.glob(os.path.join(self.dir.name, "var", "notices", "*.eml")):
                with open(path, encoding="utf-8", errors="replace") as f:
                    if "Identity not confirmed" in f.read():
                        return path
            return None
        wait_for(mailed, timeout=30, what="the rejection mail with the reason")

    def test_a_failed_request_offers_retry_and_reject_and_a_refused_rejection_says_why(self):
        self.allowed.add(409)
        self.partners.script["notice.disassociation"] = [(400, {})]  # the partner refuses its notice: dead
        rid = self.submit("request.disassociation", "demo-001", partner="P-1001")
        wait_for(lambda: self.status_of(rid) == "failed", timeout=30, what="the request to fail")
        self.sign_in("ops")
        self.open_request(rid)
        buttons = [b.text for b in self.browser.find_elements(By.CSS_SELECTOR, "#request-actions button")]
        self.assertIn("Retry", buttons)
        self.assertIn("Reject", buttons)
        self.assertNotIn("Approve", buttons)
        # It unlinked before its notice died: a rejection would tell the
        # person it was not carried out, so the API refuses, and says why.
        self.browser.find_element(By.XPATH, "//div[@id='request-actions']/button[text()='Reject']").click()
        dialog = self.wait(EC.visibility_of_element_located((By.ID, "confirm")))
        dialog.find_element(By.NAME, "reason").send_keys("The partner is gone")
        dialog.find_element(By.ID, "confirm-ok").click()
        self.wait(EC.text_to_be_present_in_element((By.ID, "confirm-error"), "already acted outside privacyd"))
        self.shot("reject-refused")
        dialog.find_element(By.ID, "confirm-cancel").click()
        self.assertEqual(self.status_of(rid), "failed")

    def test_a_refused_action_shows_the_api_s_error_in_the_dialog(self):
        self.allowed.add(409)
        rid = self.submit("request.deletion", "demo-001")
        wait_for(lambda: self.status_of(rid) == "awaiting_approval", what="an approval to wait for")
        self.sign_in("ops")
        self.open_request(rid)
        # Meanwhile another operator approves it through the API.
        status, _, _ = self.d.request("POST", f"/v1/requests/{rid}/approve", listener="admin",
                                      headers={"Authorization": "Bearer " + self.tokens["ops"]})
        self.assertEqual(status, 200)
        self.browser.find_element(By.XPATH, "//div[@id='request-actions']/button[text()='Approve']").click()
        dialog = self.wait(EC.visibility_of_element_located((By.ID, "confirm")))
        dialog.find_element(By.ID, "confirm-ok").click()
        self.wait(EC.text_to_be_present_in_element((By.ID, "confirm-error"), "awaiting_approval"))
        self.shot("refused")
        dialog.find_element(By.ID, "confirm-cancel").click()

    def test_a_viewer_sees_no_action_buttons(self):
        rid = self.submit("request.deletion", "demo-001")
        wait_for(lambda: self.status_of(rid) == "awaiting_approval", what="an approval to wait for")
        self.sign_in("watcher")
        self.open_request(rid)
        self.assertEqual(self.browser.find_elements(By.ID, "request-actions"), [])
        self.assertEqual(self.browser.find_elements(By.CSS_SELECTOR, "main button"), [])
        self.shot("request-as-viewer")
        self.browser.get(self.base + "/ui/#/reload")
        self.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "needs the operator role"))
        self.assertEqual(self.browser.find_elements(By.CSS_SELECTOR, "main button"), [])

    def test_reload_shows_each_problem_at_its_position(self):
        self.allowed.add(422)
        path = os.path.join(self.workflows, "deletion.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("action: approval", "action: aproval", 1))
        self.sign_in("ops")
        self.browser.get(self.base + "/ui/#/reload")
        self.wait(EC.element_to_be_clickable((By.XPATH, "//main//button[text()='Reload the YAML']"))).click()
        self.confirm()
        problem = self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#reload-result ol.problems li")))
        self.assertRegex(problem.text, r"deletion\.yaml:\d+:\d+: .*aproval")
        self.shot("reload-problems")


if __name__ == "__main__":
    unittest.main()
