"""Drives `usher up`'s operator page in headless Chromium (Debian's, through
playwright's executable_path; playwright downloads no browser) and prints a
JSON report for host/cli/tests/operator_page.rs:

1. the page loads and shows the workers, queues and workflow executions;
2. a version promoted from another process (`usher promote`) shows as the
   live version within the time measured (promote_seconds);
3. the page's rollback button brings the earlier version back;
4. the dead-letter queue's messages are listed, then replayed from the page
   (the confirm dialog accepted) until the page shows depth 0;
5. every console error and page error on the way is reported.
"""
import argparse
import json
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--chromium", required=True)
    p.add_argument("--screenshot", required=True)
    p.add_argument("--worker", required=True)
    p.add_argument("--new-version", required=True)
    p.add_argument("--promote-cmd", required=True, help="JSON list: the usher promote command")
    p.add_argument("--dlq", required=True)
    p.add_argument("--dlq-depth", type=int, required=True)
    a = p.parse_args()

    report = {"console_errors": [], "steps": []}
    row = f'tr[data-worker="{a.worker}"]'
    dlq_row = f'tr[data-queue="{a.dlq}"]'

    def live_version(page):
        return page.inner_text(f"{row} .live-version").strip()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=a.chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.on("console", lambda m: report["console_errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: report["console_errors"].append(f"pageerror: {e}"))
        page.on("dialog", lambda d: d.accept())

        page.goto(a.url + "/ops/", wait_until="load")
        page.wait_for_selector(f"{row} .live-version", timeout=10_000)
        page.wait_for_selector("#executions tbody tr[data-execution]", timeout=10_000)
        report["workers_shown"] = page.locator("#workers tbody tr").count()
        report["queues_shown"] = page.locator("#queues tbody tr").count()
        report["executions_shown"] = page.locator("#executions tbody tr[data-execution]").count()
        old = live_version(page)
        report["old_version"] = old
        page.wait_for_function(
            "([sel, n]) => { const e = document.querySelector(sel); return e && e.textContent.trim() === String(n); }",
            arg=[f"{dlq_row} .depth", a.dlq_depth],
            timeout=10_000,
        )
        report["steps"].append("loaded")

        # A promotion made elsewhere shows up by itself.
        subprocess.run(json.loads(a.promote_cmd), check=True, capture_output=True)
        promoted_at = time.monotonic()
        page.wait_for_function(
            "([sel, v]) => { const e = document.querySelector(sel); return e && e.textContent.trim() === v; }",
            arg=[f"{row} .live-version", a.new_version],
            timeout=10_000,
        )
        report["promote_seconds"] = round(time.monotonic() - promoted_at, 3)
        report["steps"].append("promoted")

        # The dead letters, listed; the screenshot shows them.
        page.click(f"{dlq_row} button.show")
        page.wait_for_function(
            "n => document.querySelectorAll('#messages tr[data-message]').length === n",
            arg=a.dlq_depth,
            timeout=10_000,
        )
        report["messages_shown"] = page.locator("#messages tr[data-message]").count()
        page.screenshot(path=a.screenshot, full_page=True)

        # Rollback from the page.
        page.click(f"{row} button.rollback")
        page.wait_for_function(
            "([sel, v]) => { const e = document.querySelector(sel); return e && e.textContent.trim() === v; }",
            arg=[f"{row} .live-version", old],
            timeout=10_000,
        )
        report["steps"].append("rolled back")

        # Replay from the page empties the DLQ.
        page.click(f"{dlq_row} button.replay")
        page.wait_for_function(
            "sel => { const e = document.querySelector(sel); return e && e.textContent.trim() === '0'; }",
            arg=f"{dlq_row} .depth",
            timeout=10_000,
        )
        report["notice"] = page.inner_text("#notice")
        report["steps"].append("replayed")
        browser.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
