"""Small Playwright helpers for the jambadocs page (selectors live here, not in every test)."""
from __future__ import annotations

import io
import re
from urllib.parse import urlparse

import numpy as np
from PIL import Image

# Records every text #jd-uploads and the last chat message show, to prove progress and streaming.
RECORDER = """
() => {
  window.__jd = {uploads: [], chat: [], prefill: []};
  const seen = {uploads: '', chat: '', prefill: ''};
  const grab = () => {
    const up = document.querySelector('#jd-uploads');
    const t = up ? up.innerText : '';
    if (t !== seen.uploads) { seen.uploads = t; window.__jd.uploads.push(t); }
    const bots = document.querySelectorAll('#jd-chat .message-row, #jd-chat [data-testid="bot"]');
    const last = bots.length ? bots[bots.length - 1].innerText : '';
    if (last !== seen.chat) { seen.chat = last; window.__jd.chat.push(last); }
    const pre = document.querySelector('#jd-prefill');
    const p = pre ? pre.innerText : '';
    if (p !== seen.prefill) { seen.prefill = p; window.__jd.prefill.push(p); }
  };
  new MutationObserver(grab).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def open_app(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#jd-docs", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#jd-ws input') && "
                           "document.querySelector('#jd-ws input').value !== ''", timeout=60_000)
    page.wait_for_function("() => !/loading/.test(document.querySelector('#jd-engine')?.innerText || 'loading')",
                           timeout=120_000)       # the engine starts after the first paint
    page.evaluate(RECORDER)


def text_input(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("input, textarea").first


def workspace(page) -> str:
    return text_input(page, "jd-ws").input_value()


def pick(page, elem_id: str, label: str) -> None:
    """Choose `label` in a Gradio dropdown."""
    text_input(page, elem_id).click()
    page.get_by_role("option", name=label, exact=True).click()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until no Gradio event is running or pending and no file is being uploaded, as a person
    would before the next step (Gradio marks each running event's outputs with a status overlay)."""
    page.wait_for_function("() => !document.querySelector('.wrap.generating, .wrap.pending, .uploading')",
                           timeout=timeout)


def doc_rows(page) -> list[str]:
    return page.locator("#jd-docs tbody tr").all_inner_texts()


def wait_rows(page, n: int, timeout: float = 120_000) -> list[str]:
    """Wait until the documents panel lists `n` documents; return the rows' texts."""
    page.wait_for_function(f"() => document.querySelectorAll('#jd-docs tbody tr').length === {n}",
                           timeout=timeout)
    return doc_rows(page)


def recorded(page, what: str) -> list[str]:
    return page.evaluate(f"() => window.__jd.{what}")


def yellow_pixels(png: bytes) -> int:
    """Pixels of the translucent highlight (app.page_images.HIGHLIGHT_FILL over white paper)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)   # (H, W, 3)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 235) & (g >= 215) & (g <= 250) & (b >= 110) & (b <= 195)).sum())


def ask_and_open_first_chip(page, question: str, source: str):
    """Ask `question`, wait for its answer's verified chips, check the first names `source` and open
    it; returns the viewer's page image, visible."""
    before = page.locator("#jd-chat .cite-chip.cite-verified").count()
    text_input(page, "jd-question").fill(question)
    page.click("#jd-ask")
    # the new answer is saved when its chips become verified ones (earlier answers' are there too)
    page.wait_for_function("() => document.querySelectorAll('#jd-chat .cite-chip.cite-verified').length > "
                           f"{before}", timeout=120_000)
    chip = page.locator("#jd-chat .message-row").last.locator(".cite-chip.cite-verified").first
    assert f"{source}, p." in chip.inner_text().replace("\u00a0", " "), chip.inner_text()
    chip.click()
    page.wait_for_function(f"() => document.querySelector('#jd-source-head')?.innerText.includes({source!r})",
                           timeout=60_000)
    image = page.locator("#jd-page-image img")
    image.wait_for(state="visible", timeout=60_000)
    return image


def hosts(urls: list[str]) -> set[str]:
    return {urlparse(u).netloc for u in urls if not u.startswith(("data:", "blob:", "about:"))}


def count(pattern: str, texts: list[str]) -> int:
    return sum(1 for t in texts if re.search(pattern, t))


def report(page, server, joins: list[str] = ()) -> None:
    """Print what a failed browser test saw: the upload panel's history, the password box, the
    inputs of the last Gradio events, the server's log tail (pytest shows it with the failure)."""
    for body in list(joins)[-4:]:
        print("event sent:", body[:600])
    try:
        print("uploads panel, each text it showed:", *recorded(page, "uploads"), sep="\n---\n")
        print("password box:", repr(page.evaluate(
            "() => document.querySelector('#jd-password input, #jd-password textarea')?.value ?? '(not shown)'")))
    except Exception as err:       # noqa: BLE001 -- the page may be gone; the log still helps
        print("page not readable:", err)
    print("server log tail:", server.log.read_text(errors="replace")[-4000:], sep="\n")
