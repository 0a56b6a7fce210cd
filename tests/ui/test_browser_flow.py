"""The whole flow a new user goes through, in a real browser against the real server.

Extractive engine (no model). One long test on purpose: each step builds on the previous one
(workspace -> uploads -> answer -> source viewer -> reload -> restart -> bad file -> password ->
duplicate -> export -> remove -> a drop during an upload -> rename -> delete), and starting chromium and the server once keeps the suite fast on 2 cores.
"""
from __future__ import annotations

import json
import re
import time

import httpx

from tests.ui.live_server import start_server
from tests.ui.pages import (count, doc_rows, hosts, open_app, pick, recorded, report, text_input, wait_idle,
                            wait_rows, workspace, yellow_pixels)

QUESTION = "How did the students estimate the width of the lecture room in feet and in metres?"


def test_whole_flow_extractive(chromium, corpus, tmp_path, screenshots):
    server = start_server(tmp_path / "data", "--engine", "extractive")
    local = {f"127.0.0.1:{server.port}"}
    context = chromium.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    joins: list[str] = []        # what each Gradio event sent (its inputs), for the failure report
    page.on("request", lambda r: joins.append(r.post_data or "") if "queue/join" in r.url else None)
    try:
        open_app(page, server.url)
        assert workspace(page) == "My documents"          # first start: a default workspace
        assert "engine extractive" in page.inner_text("#jd-engine")

        # -- create a workspace ------------------------------------------------------------------
        text_input(page, "jd-ws-name").fill("Statistics papers")
        page.click("#jd-ws-create")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value === 'Statistics papers'")
        assert "No documents yet" in page.inner_text("#jd-docs")

        # -- upload two PDFs: per-file progress, then pages in the documents panel -------------
        page.set_input_files("#jd-upload input[type=file]",
                             [str(corpus / "hsaur-inference.pdf"), str(corpus / "acm-sigconf.pdf")])
        page.wait_for_function("() => (document.querySelector('#jd-uploads')?.innerText.match(/added/g) "
                               "|| []).length === 2", timeout=120_000)
        uploads = recorded(page, "uploads")
        assert count(r"hsaur-inference\.pdf\s+reading (page \d+ of )?15", uploads) >= 1, uploads
        assert count(r"acm-sigconf\.pdf\s+reading (page \d+ of )?6", uploads) >= 1, uploads
        assert re.search(r"hsaur-inference\.pdf\s+added: 15 pages", uploads[-1])
        rows = wait_rows(page, 2)
        assert len(rows) == 2
        assert "hsaur-inference.pdf" in rows[0] and "15 pages" in rows[0]
        assert "acm-sigconf.pdf" in rows[1] and "6 pages" in rows[1]
        assert "tokens" in page.inner_text("#jd-budget")
        page.screenshot(path=str(screenshots / "main.png"))

        # -- ask: the answer streams in, then carries citation chips ---------------------------
        text_input(page, "jd-question").fill(QUESTION)
        page.click("#jd-ask")
        page.wait_for_selector("#jd-chat .cite-chip.cite-verified", timeout=120_000)
        final = page.locator("#jd-chat .message-row").last.inner_text()
        states = [s for s in recorded(page, "chat") if s.strip()]
        partial = [s for s in states[:-1] if s.strip() not in ("", "\u2026") and len(s) < len(final)]
        assert partial, f"no partial answer was shown before the final one: {states}"
        chips = page.locator("#jd-chat .cite-chip.cite-verified")
        assert chips.count() >= 1
        assert re.search(r"(hsaur-inference|acm-sigconf)\.pdf, p\.\s*\S+", chips.first.inner_text())
        assert "first token" in page.inner_text("#jd-answer-stats")
        page.wait_for_timeout(500)
        page.evaluate("() => document.querySelectorAll('#jd-chat *').forEach(e => {"
                      " if (e.scrollTop > 0) e.scrollTop = 0; })")            # show the question and first chips
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(screenshots / "answer.png"))

        # -- a chip opens the source viewer: page image with the passage highlighted -----------
        cited_file = re.search(r"[\w-]+\.pdf", chips.first.inner_text()).group(0)
        chips.first.click()
        page.wait_for_selector("#jd-verdict", timeout=60_000)
        head = page.inner_text("#jd-source-head")
        assert cited_file in head and re.search(r"page \d+ of (15|6)", head), head
        assert "verified" in page.inner_text("#jd-verdict")
        mark = page.locator("#jd-passage")
        assert len(mark.inner_text().strip()) > 20
        image = page.locator("#jd-page-image img")
        image.wait_for(state="visible", timeout=30_000)
        assert yellow_pixels(image.screenshot()) > 300, "the passage is not highlighted on the page image"
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshots / "source-viewer.png"))
        shown = int(re.search(r"page (\d+) of", head).group(1))
        page.click("#jd-next" if shown == 1 else "#jd-prev")                # the verdict is about the cited page
        page.wait_for_function("() => /showing page/.test(document.querySelector('#jd-source-head').innerText)")
        assert page.locator("#jd-verdict").count() == 0
        # Gradio's trash button would empty the chat on the page only (the saved chat stays): hidden
        assert page.locator("#jd-chat button[aria-label='Clear']").count() == 1
        assert not page.locator("#jd-chat button[aria-label='Clear']").is_visible()

        # -- reload the browser: everything is still there -------------------------------------
        page.reload()
        open_app(page, server.url)
        assert workspace(page) == "Statistics papers"
        assert len(doc_rows(page)) == 2
        page.wait_for_selector("#jd-chat .cite-chip.cite-verified", timeout=30_000)
        assert QUESTION in page.inner_text("#jd-chat")

        # -- restart the server on the same data: still there ----------------------------------
        server.stop()
        server = start_server(tmp_path / "data", "--engine", "extractive")
        local.add(f"127.0.0.1:{server.port}")
        page.goto(server.url)
        open_app(page, server.url)
        pick(page, "jd-ws", "Statistics papers")
        page.wait_for_function("() => document.querySelectorAll('#jd-docs tbody tr').length === 2")
        page.wait_for_selector("#jd-chat .cite-chip.cite-verified", timeout=30_000)

        # -- a bad file: its own error in plain words, the good files stay ---------------------
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "fake.pdf")])
        page.wait_for_selector("#jd-uploads .jd-up-error", timeout=60_000)
        error = page.inner_text("#jd-uploads .jd-up-error")
        assert "fake.pdf" in error and "not a PDF" in error, error
        assert len(doc_rows(page)) == 2

        # -- a password-protected PDF: asked for, then added with its password ----------------
        wait_idle(page)
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "encrypted.pdf")])
        page.wait_for_function("() => /encrypted\\.pdf\\s+.*password/.test("
                               "document.querySelector('#jd-uploads .jd-up-error')?.innerText || '')", timeout=60_000)
        wait_idle(page)      # that upload's event has ended, as it has when a person types the password
        box = text_input(page, "jd-password")
        box.wait_for(state="visible")  # the password box opened itself for the file that needs one
        box.fill("secret123")
        box.press("Tab")               # and on to the upload box, as a person does (the box commits its value)
        wait_idle(page)
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "encrypted.pdf")])
        page.wait_for_selector("#jd-uploads .jd-up-added", timeout=60_000)
        rows = wait_rows(page, 3)
        assert "encrypted.pdf" in rows[2] and "26 pages" in rows[2]
        assert text_input(page, "jd-password").input_value() == ""      # used for that upload only

        # -- the same file again: found as a duplicate by content ------------------------------
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "acm-sigconf.pdf")])
        page.wait_for_selector("#jd-uploads .jd-up-duplicate", timeout=60_000)
        assert "already in this workspace" in page.inner_text("#jd-uploads")
        assert len(doc_rows(page)) == 3

        # -- export the chat as Markdown -------------------------------------------------------
        with page.expect_download() as download:
            page.click("#jd-export")
        markdown = open(download.value.path(), encoding="utf-8").read()
        assert QUESTION in markdown
        assert re.search(r"\[doc [12], p\. \S+\]", markdown)
        assert "## Sources" in markdown and "hsaur-inference.pdf" in markdown and "acm-sigconf.pdf" in markdown
        assert "verified" in markdown

        # -- delete the chat, with confirmation ---------------------------------------------------
        page.click("#jd-chat-delete")
        page.wait_for_selector("#jd-chat-confirm", state="visible")
        assert "question" in page.inner_text("#jd-chat-confirm")
        page.click("#jd-chat-confirm-yes")
        page.wait_for_selector("#jd-chat-confirm", state="hidden")
        page.wait_for_function("() => !document.querySelector('#jd-chat').innerText.includes("
                               + json.dumps(QUESTION) + ")", timeout=30_000)

        # -- remove a document ------------------------------------------------------------------
        title = page.locator("#jd-docs tbody tr .jd-title").nth(1).inner_text()
        pick(page, "jd-doc-pick", f"2. {title}")
        page.click("#jd-doc-remove")
        page.wait_for_selector("#jd-doc-confirm", state="visible")      # one click removes nothing
        assert "acm-sigconf.pdf" in page.inner_text("#jd-doc-confirm") and len(doc_rows(page)) == 3
        page.click("#jd-doc-confirm-yes")
        page.wait_for_selector("#jd-doc-confirm", state="hidden")
        rows = wait_rows(page, 2)
        assert "acm-sigconf.pdf" not in " ".join(rows) and "encrypted.pdf" in rows[1]

        # -- rename, then delete with confirmation ----------------------------------------------
        text_input(page, "jd-ws-name").fill("Scratch")
        page.click("#jd-ws-create")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value === 'Scratch'")
        # -- files dropped while an upload is still being read: queued behind it, not lost -----
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "gnuplot.pdf")])
        page.wait_for_function("() => /gnuplot\\.pdf\\s+reading/.test("
                               "document.querySelector('#jd-uploads')?.innerText || '')", timeout=60_000)
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "pari-refcard.pdf")])
        rows = wait_rows(page, 2)
        assert "gnuplot.pdf" in rows[0] and "311 pages" in rows[0] and "pari-refcard.pdf" in rows[1], rows

        # -- the page reloaded mid-upload: a file that then fails is shown when the workspace opens again --
        wait_idle(page)
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "r-intro.pdf"), str(corpus / "fake.pdf")])
        page.wait_for_function("() => /r-intro\\.pdf\\s+reading/.test("
                               "document.querySelector('#jd-uploads')?.innerText || '')", timeout=60_000)
        open_app(page, server.url)                                    # reload: the rest is read without it
        failures = f"{server.url}api/workspaces/Scratch/failures"
        deadline = time.monotonic() + 120
        while not httpx.get(failures).json() and time.monotonic() < deadline:
            time.sleep(0.5)
        open_app(page, server.url)                                    # the workspace opened again
        page.wait_for_selector("#jd-failed-list", timeout=30_000)
        assert "fake.pdf" in page.inner_text("#jd-failed") and "not a PDF" in page.inner_text("#jd-failed")
        assert "r-intro.pdf" in wait_rows(page, 3)[2]
        page.click("#jd-failed-dismiss")
        page.wait_for_selector("#jd-failed", state="hidden", timeout=30_000)
        assert httpx.get(failures).json() == []

        text_input(page, "jd-ws-name").fill("Scratch 2")
        page.click("#jd-ws-rename")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value === 'Scratch 2'")
        page.click("#jd-ws-delete")
        page.wait_for_selector("#jd-confirm", state="visible")
        assert "Scratch 2" in page.inner_text("#jd-confirm")
        page.click("#jd-confirm-no")
        page.wait_for_selector("#jd-confirm", state="hidden")
        assert workspace(page) == "Scratch 2"
        page.click("#jd-ws-delete")
        page.click("#jd-confirm-yes")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value !== 'Scratch 2'")
        text_input(page, "jd-ws").click()
        names = page.get_by_role("option").all_inner_texts()
        assert "Scratch 2" not in names and "Statistics papers" in names

        # -- nothing left this machine: every request went to the local server -----------------
        assert hosts(requests) == local, hosts(requests)
    except Exception:
        report(page, server, joins)  # what the page, the events and the server showed (a failure seen in CI)
        raise
    finally:
        context.close()
        server.stop()
