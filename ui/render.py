"""Pure functions turning service records into the HTML / chat messages the UI shows.

Nothing here talks to the services; every function takes records (app.records) or plain dicts
and returns strings, so the layout can be checked without a browser.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from app.citations import CitationRef, parse
from app.records import (BudgetInfo, CitationInfo, DocumentInfo, FailedUploadInfo, MessageInfo, context_fit,
                         omitted_text)


FRIENDLY_REASONS = {     # for errors that come without a message of their own
    "empty": "the file is empty",
    "not_pdf": "this is not a PDF",
    "corrupt": "the file is damaged or truncated and cannot be read",
    "encrypted": "the PDF is password-protected",
    "no_text": "no extractable text, and OCR found none on its pages (blank, or pictures without words?)",
    "too_large": "the file is too large",
    "unsupported": "this file type is not supported",
}
HINTS = {
    "encrypted": "Type its password under \u201cPassword for protected PDFs\u201d (opened for you) and add it again.",
    "no_text": "Check the file opens and shows text; a clearer scan (at least 150 dpi) reads better.",
}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def model_text(text: str) -> str:
    """Text a model wrote (or a document it quotes), for the chat's Markdown: escaped, and an image
    ("![x](url)", "![x][ref]") shown as the text it is, not loaded (the page's CSP would block it)."""
    return esc(text).replace("![", "!\\[")


def fmt_tokens(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 90:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60)} s"


# ---- status -------------------------------------------------------------------------------------

def engine_status(info: dict) -> str:
    """One line: engine, model, device, dtype, context size, what decode runs on (or why the engine
    cannot start)."""
    if info.get("error"):
        return (f'<div class="jd-status jd-bad" id="jd-engine"><b>engine</b> {esc(info.get("engine") or "?")}: '
                f'{esc(info["error"])}</div>')
    parts = [f"<b>engine</b> {esc(info.get('engine') or '?')}"]
    for key in ("model", "device", "dtype"):
        value = info.get(key)
        shown = str(value).rstrip("/").rsplit("/", 1)[-1] if key == "model" and value else value
        title = f' title="{esc(value)}"' if shown != value else ""
        parts.append(f"<b>{key}</b> <span{title}>{esc(shown) if shown else '&mdash;'}</span>")
    ctx = info.get("max_context")
    parts.append(f"<b>context</b> {fmt_tokens(ctx) + ' tokens' if ctx else 'unlimited'}")
    if info.get("decode"):
        parts.append(f"<b>decode</b> {esc(info['decode'])}")
    return f'<div class="jd-status" id="jd-engine">{" &middot; ".join(parts)}</div>'


def engine_loading(progress: tuple[str, int, int] | None = None) -> str:
    """The engine line while the checkpoint loads; with (stage, done, total), how far it is."""
    where = ""
    if progress:
        stage, done, total = progress
        what = "quantizing to int8" if stage == "int8" else "reading the weights"
        where = f": {what}, {100 * min(done, total) // max(1, total)}%"
    return f'<div class="jd-status" id="jd-engine"><b>engine</b> loading{esc(where)}&hellip;</div>'


def answer_stats(timings: dict | None) -> str:
    """Per-answer figures: tokens reused from cache vs prefilled, TTFT, tokens/s, omitted."""
    if not timings:
        return '<div class="jd-stats" id="jd-answer-stats"></div>'
    parts = []
    if timings.get("cached_tokens") or timings.get("prefilled_tokens"):
        chat = (f" ({fmt_tokens(timings['conversation_tokens'])} of this chat)"
                if timings.get("conversation_tokens") else "")
        parts.append(f"<b>{fmt_tokens(timings.get('cached_tokens', 0))}</b> tokens from cache{chat}, "
                     f"<b>{fmt_tokens(timings.get('prefilled_tokens', 0))}</b> prefilled")
    if timings.get("ttft_s") is not None:
        parts.append(f"first token <b>{fmt_seconds(timings['ttft_s'])}</b>")
    if timings.get("tokens_per_s") is not None:
        parts.append(f"<b>{timings['tokens_per_s']:.1f}</b> tok/s")
    if timings.get("total_s") is not None:
        parts.append(f"total {fmt_seconds(timings['total_s'])}")
    if timings.get("thinking_tokens"):
        why = " (its budget ran out)" if timings.get("thinking_closed_by") == "budget" else ""
        parts.append(f"reasoning <b>{fmt_tokens(timings['thinking_tokens'])}</b> tokens{why}")
    sampling = timings.get("sampling") or {}
    if sampling.get("seed") is not None:
        parts.append(f"sampled at temperature {sampling['temperature']:g}, top-p {sampling['top_p']:g}, "
                     f"seed {sampling['seed']}")
    if timings.get("error"):
        parts.append(f'<span class="jd-warn">the engine failed before the end: {esc(timings["error"])}</span>')
    elif timings.get("cancelled"):
        why = f": {esc(timings['stopped_by'])}" if timings.get("stopped_by") else ""
        parts.append(f'<span class="jd-warn">stopped before the end{why}</span>')
    line = f'<div class="jd-stats" id="jd-answer-stats">{" &middot; ".join(parts)}'
    left_out = omitted_text(timings)
    if left_out:
        line += f'<div class="jd-warn jd-omitted">Not read for this answer: {esc(left_out)}</div>'
    return line + "</div>"


def progress_bar(stage: str, done: int, total: int, eta_s: float | None) -> str:
    """Prefill (or restore / retrieve) progress with ETA."""
    frac = done / total if total else 0.0
    label = {"prefill": "Reading the documents (prefill)", "restore": "Restoring cached state",
             "retrieve": "Finding relevant passages", "queue": "Waiting for the engine",
             "load": "Loading the model", "quantize": "Quantizing the model to int8"}.get(
        stage, stage.capitalize() or "Working")
    unit = {"prefill": "tokens", "restore": "tokens", "load": "parts", "quantize": "layers"}.get(stage, "steps")
    eta = f" &middot; about {fmt_seconds(eta_s)} left" if eta_s is not None else ""
    return (f'<div class="jd-progress" id="jd-prefill"><div class="jd-progress-label">{esc(label)}: '
            f'{fmt_tokens(done)} / {fmt_tokens(total)} {unit}{eta}</div>'
            f'<div class="jd-bar"><div class="jd-bar-fill" style="width:{frac * 100:.1f}%"></div></div></div>')


# ---- documents ----------------------------------------------------------------------------------

def documents_table(docs: Sequence[DocumentInfo], budget: BudgetInfo | None) -> str:
    if not docs:
        return ('<div class="jd-docs jd-empty" id="jd-docs">No documents yet. '
                'Drop PDFs (or Word, PowerPoint, Excel, EPUB, HTML, Markdown, text files, photos of pages) on the upload box.</div>')
    fit = context_fit(docs, budget.room if budget else None)
    rows = []
    for doc in docs:
        state = fit.get(doc.id, "whole")
        if budget is not None and budget.max is None:   # no context (the extractive engine): nothing to cache
            pills = []
        elif doc.cached and state != "whole":      # read in part: what is stored is the last question's pages
            pills = ['<span class="jd-pill jd-ok" title="the pages the last question read from it are cached; '
                     'they are not counted as cached in the context line">pages cached</span>']
        else:
            pills = ['<span class="jd-pill jd-ok">cached</span>' if doc.cached else
                     '<span class="jd-pill">not cached</span>']
        if state == "partly":
            pills.append('<span class="jd-pill jd-warn" title="does not fit whole: the most relevant pages '
                         'are used">partly</span>')
        elif state == "retrieval":
            pills.append('<span class="jd-pill jd-warn" title="over the context: only its most relevant '
                         'pages are used">retrieval</span>')
        if doc.ocr_notes:
            notes = "; ".join(doc.ocr_notes)
            pills.append(f'<span class="jd-pill" title="{esc(notes)}; a scan may have misread words">OCR</span>')
        if doc.reread_notes:
            pills.append(f'<span class="jd-pill" title="{esc("; ".join(doc.reread_notes))}">re-read</span>')
        rows.append(
            f'<tr data-doc-id="{doc.id}"><td class="jd-n">{doc.index}</td>'
            f'<td><div class="jd-title">{esc(doc.title or doc.filename)}</div>'
            f'<div class="jd-file">{esc(doc.filename)} {" ".join(pills)}</div></td>'
            f'<td class="jd-pages">{esc(doc.extent)}</td>'
            f'<td class="jd-tokens">{"~" if doc.estimated else ""}{fmt_tokens(doc.tokens)}</td></tr>')
    return ('<div class="jd-docs" id="jd-docs"><table><thead><tr><th>#</th><th>document</th>'
            '<th>pages</th><th>tokens</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def documents_error(message: str) -> str:
    return (f'<div class="jd-docs jd-empty" id="jd-docs"><span class="jd-bad">Cannot list the documents: '
            f'{esc(message)}</span></div>')


def budget_gauge(budget: BudgetInfo | None, docs: Sequence[DocumentInfo]) -> str:
    """Tokens used of the model's maximum with the cached part, and what would be left out."""
    if budget is None:
        return '<div class="jd-budget" id="jd-budget"></div>'
    if not budget.max:
        return (f'<div class="jd-budget" id="jd-budget"><div class="jd-progress-label">Context: '
                f'{"~" if budget.estimated else ""}{fmt_tokens(budget.used)} tokens in {budget.documents} document'
                f'{"" if budget.documents == 1 else "s"}; this engine has '
                f'no context limit, nothing is left out.</div></div>')
    room = max(1, budget.room or 0)
    used_pct = min(100.0, budget.used / room * 100)
    cached_pct = min(used_pct, budget.cached / room * 100)
    over = budget.used > room
    fit = context_fit(docs, room)
    left_out = [d for d in docs if fit.get(d.id) != "whole"]
    if not over:
        note = (f"Everything fits: {fmt_tokens(room - budget.used)} tokens to spare for the question and "
                f"the chat.")
        cls = "jd-ok"
    else:
        names = ", ".join(esc(d.title or d.filename) for d in left_out[:4])
        more = f" and {len(left_out) - 4} more" if len(left_out) > 4 else ""
        note = (f"{fmt_tokens(budget.used - room)} tokens over the limit. Not read whole: "
                f"{names}{more}; for each question only their most relevant passages are used.")
        cls = "jd-warn"
    why = (f' &middot; the model\'s {fmt_tokens(budget.max)} less {fmt_tokens(budget.reserved)} for the '
           f'instructions, the question and the answer' if budget.reserved else "")
    if budget.estimated:
        note += " Estimated: the documents' tokens are still being counted."
    return (f'<div class="jd-budget" id="jd-budget"><div class="jd-progress-label">Context: '
            f'<b>{"~" if budget.estimated else ""}{fmt_tokens(budget.used)}</b> of {fmt_tokens(room)} tokens for documents '
            f'({fmt_tokens(budget.cached)} cached){why}</div>'
            f'<div class="jd-bar{" jd-bar-over" if over else ""}">'
            f'<div class="jd-bar-fill" style="width:{used_pct:.1f}%"></div>'
            f'<div class="jd-bar-cached" style="width:{cached_pct:.1f}%"></div></div>'
            f'<div class="jd-note {cls}">{note}</div></div>')


def budget_error(message: str) -> str:
    return (f'<div class="jd-budget" id="jd-budget"><div class="jd-note jd-bad">Cannot count tokens: '
            f'{esc(message)}</div></div>')


def budget_pending() -> str:
    return ('<div class="jd-budget" id="jd-budget"><div class="jd-progress-label">Context: counting tokens '
            'while the engine starts&hellip;</div></div>')


@dataclass
class UploadRow:
    filename: str
    done: int = 0
    total: int = 0
    status: str = "waiting"     # waiting | reading | added | duplicate | error
    message: str = ""


def upload_progress(rows: Iterable[UploadRow]) -> str:
    items = []
    for row in rows:
        frac = row.done / row.total if row.total else (1.0 if row.status in ("added", "duplicate") else 0)
        if row.status == "reading":
            text = (f"reading page {row.done:,} of {row.total:,}" if row.done else
                    f"reading {row.total:,} page{'' if row.total == 1 else 's'}\u2026") if row.total else "reading\u2026"
        elif row.status == "added":
            text = row.message or f"added, {row.total} pages"
        elif row.status == "duplicate":
            text = row.message or "already in this workspace (same content)"
        elif row.status == "error":
            text = row.message
        else:
            text = "waiting"
        items.append(
            f'<li class="jd-up jd-up-{row.status}"><div class="jd-up-name">{esc(row.filename)}</div>'
            f'<div class="jd-up-text">{esc(text)}</div>'
            f'<div class="jd-bar"><div class="jd-bar-fill" style="width:{frac * 100:.0f}%"></div></div></li>')
    return f'<ul class="jd-uploads" id="jd-uploads">{"".join(items)}</ul>' if items else \
        '<ul class="jd-uploads" id="jd-uploads"></ul>'


def failed_uploads(failures: Sequence[FailedUploadInfo]) -> str:
    """The files of an earlier drop that could not be added after their page went away (closed or
    reloaded before they were read): name, why, and when."""
    if not failures:
        return ""
    items = "".join(
        f'<li class="jd-up jd-up-error"><div class="jd-up-name">{esc(f.filename)}</div>'
        f'<div class="jd-up-text">{esc(f.message)} '
        f'<span class="jd-note">({f.failed_at.astimezone():%Y-%m-%d %H:%M})</span></div></li>'
        for f in failures)
    many = len(failures) > 1
    return (f'<div id="jd-failed-list"><b>{len(failures)} file{"s" if many else ""} dropped earlier could not be '
            f'added</b> (the page was closed or reloaded before {"they were" if many else "it was"} read):'
            f'<ul class="jd-uploads">{items}</ul></div>')


def ingest_error_text(err: Exception, filename: str | None = None) -> str:
    """Plain words for an upload failure: the service's own message (already naming the file and
    the reason), without a repeated "filename: " prefix, plus what to do when there is something."""
    reason = getattr(err, "reason", None)
    text = str(err).strip() or FRIENDLY_REASONS.get(reason or "", err.__class__.__name__)
    if filename and text.startswith(f"{filename}: "):
        text = text[len(filename) + 2:]
    hint = HINTS.get(reason or "")
    return f"{text}. {hint}" if hint else text


# ---- chat ---------------------------------------------------------------------------------------

def _chip(cite: CitationInfo | None, label: str, key: str | None) -> str:
    """A citation chip: a button that opens the cited page (`key`), or an inert span saying why not
    (a page that does not exist, a document removed from the workspace since the answer)."""
    name = (cite.filename or f"doc {cite.doc}") if cite is not None else ""
    short = name if len(name) <= 28 else name[:25] + "..."
    if cite is not None and cite.doc_id is None and cite.filename:
        where = "" if cite.page is None else ", " + esc(cite.place).replace(" ", "&nbsp;", 1)
        return (f'<span class="cite-chip cite-removed" title="{esc(cite.filename)} was removed from this '
                f'workspace after this answer">{esc(short)}{where} (removed)</span>')
    if cite is None or key is None:
        unit = (cite.unit if cite is not None and cite.unit else "page")
        return (f'<span class="cite-chip cite-missing" title="cites a {esc(unit)} that does not exist">'
                f'{esc(label)} ?</span>')
    mark, cls, tip = ("&#10003;", "cite-verified", f"verified: the quoted text is on this {cite.unit}") \
        if cite.verified else ("!", "cite-unverified", f"unverified: the quote was not found on this {cite.unit}")
    # Gradio's HTML sanitizer drops data-* attributes but keeps classes: the key rides in one.
    key_class = "jd-cite-" + key.replace(":", "-")
    return (f'<button type="button" class="cite-chip {cls} {key_class}" title="{tip}">'
            f'<span class="cite-mark">{mark}</span> {esc(short)}, {esc(cite.place).replace(" ", "&nbsp;", 1)}</button>')


def _same_page(cite: CitationInfo, doc: int, page: str | tuple[str, str] | None) -> bool:
    """Whether `cite` is the checked citation of page token `page` (a range: one of its pages; None:
    the document as a whole) of document `doc`. A token may name a unit by the start of its label
    (a sheet "Log" cut into "Log (rows 2-90)", ...), a section by number ("§2": "§2 Lease 2024"), or,
    a label of several words that names nothing, by one of its words, as app.citations looks it up."""
    if cite.doc != doc:
        return False
    if page is None:
        return True
    shown = {str(cite.page_label or "").lower(), str(cite.page or "")}
    if isinstance(page, str):
        t = page.lower()
        return (t in shown or any(s.startswith(t + " ") for s in shown) or t == f"§{cite.page}"
                or " " in t and any(w.strip("()[]") in shown for w in t.split()))  # "p. 3 of the book"
    first, last = (p.lower() for p in page)
    if first in shown or last in shown:
        return True
    if first.isdigit() and last.isdigit():
        lo, hi = sorted((int(first), int(last)))
        return any(v.isdigit() and lo <= int(v) <= hi for v in shown)
    return False


def answer_html(text: str, message: MessageInfo | None = None, pending: bool = False) -> str:
    """Answer text with each citation marker ("[doc N, p. M]" and every form app.citations reads, such
    as "[doc 1, pp. 3-4]" or "[doc 1, p. 3, 5]") replaced by its citation chips.

    While streaming (`pending`), chips are drawn inert; once the answer is saved (`message`), each
    chip carries the class "jd-cite-<message_id>-<citation_index>" so a click opens the source viewer.
    """
    citations = list(message.citations) if message else []
    used: set[int] = set()

    def chips_for(refs: list[CitationRef]) -> str:
        out = []
        # one chip per citation the marker gave (app.citations.verify: a page each, one for a range)
        targets = [(ref.doc, page) for ref in refs
                   for page in ([*ref.pages, *([ref.page_range] if ref.page_range else [])] or [None])]
        for doc, page in targets:
            label = f"doc {doc}" if page is None else \
                f"doc {doc}, p. {page}" if isinstance(page, str) else f"doc {doc}, pp. {page[0]}-{page[1]}"
            if pending or message is None:
                out.append(f'<span class="cite-chip cite-pending">{esc(label)}</span>')
                continue
            pick = next((i for i, c in enumerate(citations) if i not in used and _same_page(c, doc, page)), None)
            if pick is None:
                pick = next((i for i, c in enumerate(citations) if _same_page(c, doc, page)), None)
            if pick is None:
                out.append(_chip(None, label, None))
                continue
            used.add(pick)
            cite = citations[pick]
            key = f"{message.id}:{pick}" if cite.doc_id is not None and cite.page else None
            out.append(_chip(cite, label, key))
        return " ".join(out)

    markers: dict[tuple[int, int], list[CitationRef]] = {}
    for ref in parse(text).refs:
        if ref.end > ref.start:                          # inline (not from a <citations> block)
            markers.setdefault((ref.start, ref.end), []).append(ref)
    pieces, last = [], 0
    for (start, end), refs in markers.items():
        pieces.append(model_text(text[last:start]))
        pieces.append(chips_for(refs))
        last = end
    pieces.append(model_text(text[last:]))
    body = "".join(pieces)
    # Citations the text does not mark inline (e.g. listed by the engine): show them at the end.
    if message and not pending:
        extra = [(_chip(c, f"doc {c.doc}, p. {c.page}", f"{message.id}:{i}" if c.doc_id and c.page else None))
                 for i, c in enumerate(citations) if i not in used]
        if extra:
            body += '<div class="jd-more-cites">Sources: ' + " ".join(extra) + "</div>"
    return body


MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def question_text(text: str) -> str:
    """A question as the chatbot (which renders Markdown, then HTML) shows it: as typed, so
    "a*b*c", "__init__" or "<table>" are text, not emphasis or markup."""
    return esc(MARKDOWN_PUNCTUATION.sub(r"\\\1", text))


STOPPED_LABEL = ('<em class="jd-stopped" title="Stop was pressed (or the server stopped) before the '
                 'answer was complete">(stopped)</em>')


def was_stopped(message: MessageInfo) -> bool:
    """The answer was cut short by Stop (app.qa saves it with timings["cancelled"])."""
    return bool((message.timings or {}).get("cancelled"))


def reasoning_message(text: str, pending: bool = False) -> dict:
    """A reasoning model's <think> block as a Gradio "thought": a collapsible message before the
    answer, titled "Thinking…" while it streams."""
    return {"role": "assistant", "content": model_text(text.strip()).replace("\n", "<br>"),
            "metadata": {"title": "Thinking\u2026" if pending else "Reasoning",
                         "status": "pending" if pending else "done"}}


def chat_messages(messages: Sequence[MessageInfo]) -> list[dict]:
    """Saved messages -> Gradio chatbot messages (role/content dicts); a stopped answer keeps its
    partial text followed by a "(stopped)" label, so it never shows as an empty bubble. A
    reasoning model's reasoning comes first, collapsed."""
    out = []
    for msg in messages:
        if msg.role == "user":
            out.append({"role": "user", "content": question_text(msg.text)})
            continue
        if msg.reasoning:
            out.append(reasoning_message(msg.reasoning))
        body = answer_html(msg.text, msg)
        if was_stopped(msg):
            body = f"{body} {STOPPED_LABEL}" if msg.text.strip() else STOPPED_LABEL
        out.append({"role": "assistant", "content": body})
    return out


# ---- source viewer ------------------------------------------------------------------------------

def source_header(cite: CitationInfo, page_count: int | None, shown_page: int, unit: str = "page") -> str:
    """Title, where the viewer is ("page 8 of 113 (printed "2")", "slide 3 of 12", "section 2 of 5
    ("§2 Installation")"), the verdict (on the cited page only: it is about that page) and the quote."""
    if shown_page != cite.page:
        badge = ""
    elif cite.verified:
        badge = f'<span class="jd-pill jd-ok" id="jd-verdict">&#10003; verified: the quoted text is on this {unit}</span>'
    else:
        badge = ('<span class="jd-pill jd-bad" id="jd-verdict">! unverified: the quoted text was not found '
                 f'on the cited {unit}; read it before trusting the answer</span>')
    where = f"{unit} {shown_page}" + (f" of {page_count}" if page_count else "")
    label = ""
    if shown_page == cite.page and cite.page_label not in (None, "", str(cite.page), f"{unit} {cite.page}"):
        printed = "printed " if unit == "page" else ""
        label = f" ({printed}&ldquo;{esc(cite.page_label)}&rdquo;)"
    off = ("" if shown_page == cite.page else
           f' &middot; <span class="jd-warn">showing {unit} {shown_page}, cited {unit} {cite.page}</span>')
    return (f'<div class="jd-source-head" id="jd-source-head"><div class="jd-title">{esc(cite.filename)}</div>'
            f'<div>{where}{label}{off}</div>{badge}'
            f'<blockquote class="jd-quote">{esc(cite.quote)}</blockquote></div>')


def page_text_html(text: str, start: int | None, end: int | None) -> str:
    """Page text with [start, end) marked; the UI scrolls the mark into view."""
    if start is not None and end is not None and 0 <= start < end <= len(text):
        body = (esc(text[:start]) + '<mark id="jd-passage">' + esc(text[start:end]) + "</mark>"
                + esc(text[end:]))
    else:
        body = esc(text)
    return f'<div class="jd-page-text" id="jd-page-text">{body}</div>'
