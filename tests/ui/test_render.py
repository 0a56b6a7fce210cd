"""ui.render and ui.export on citations verified by app.citations against a real corpus document."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from app.citations import parse_and_verify
from app.records import BudgetInfo, ChatInfo, DocumentInfo, MessageInfo
from ingest import read_document
from ui.export import chat_markdown
from ui.render import answer_html, budget_gauge, documents_table, engine_status, ingest_error_text, omitted_text

TRUE_CLAIM = ("If we convert the estimates of the room width in meters into feet by multiplying each by 3.28 "
              "then we would like to test the hypothesis")
FALSE_CLAIM = "The lecture room was measured with a laser by every student <b>twice</b>"


@pytest.fixture(scope="module")
def hsaur(corpus):
    return read_document(corpus / "hsaur-inference.pdf")


@pytest.fixture(scope="module")
def message(hsaur):
    answer = f"{TRUE_CLAIM} [doc 1, p. 3]. {FALSE_CLAIM} [doc 1, p. 4]."
    text, citations = parse_and_verify(answer, [hsaur], doc_ids=[11])
    return MessageInfo(id=7, chat_id=3, role="assistant", text=text, citations=citations,
                       timings={"cached_tokens": 0, "prefilled_tokens": 0, "ttft_s": 0.2})


def test_chips_mark_verified_and_unverified(message):
    assert [c.verified for c in message.citations] == [True, False]
    html = answer_html(message.text, message)
    chips = re.findall(r'<button type="button" class="cite-chip ([^"]+)"[^>]*>(.*?)</button>', html)
    assert len(chips) == 2
    (first_cls, first_label), (second_cls, second_label) = chips
    assert "cite-verified" in first_cls and "jd-cite-7-0" in first_cls and "p.&nbsp;3" in first_label
    assert "cite-unverified" in second_cls and "jd-cite-7-1" in second_cls and "p.&nbsp;4" in second_label
    assert "hsaur-inference.pdf" in first_label
    assert "[doc 1" not in html                                   # markers became chips
    assert "<b>twice</b>" not in html and "&lt;b&gt;twice&lt;/b&gt;" in html   # answer text is escaped


def test_streaming_chips_are_inert(message):
    html = answer_html(message.text, pending=True)
    assert html.count("cite-pending") == 2 and "jd-cite-" not in html


def test_citation_to_a_missing_page_is_flagged(hsaur):
    text, citations = parse_and_verify(f"{TRUE_CLAIM} [doc 1, p. 99].", [hsaur], doc_ids=[11])
    msg = MessageInfo(id=8, chat_id=3, role="assistant", text=text, citations=citations)
    html = answer_html(msg.text, msg)
    assert "cite-missing" in html and "jd-cite-8" not in html


def test_a_missing_unit_is_named_by_its_own_word(tmp_path):
    """A citation to a part of a text file that does not exist said "cites a page"."""
    from ingest import read_document
    notes = tmp_path / "notes.txt"
    notes.write_text("The rent is due on the first day of each month.\n", encoding="utf-8")
    doc = read_document(notes)
    assert doc.unit == "part"
    text, citations = parse_and_verify("The rent is due monthly [doc 1, p. part 9].", [doc], doc_ids=[4])
    html = answer_html(text, MessageInfo(id=9, chat_id=3, role="assistant", text=text, citations=citations))
    assert 'title="cites a part that does not exist"' in html


def test_a_citation_of_a_removed_document_names_it_as_removed(message):
    removed = [c.__class__(**{**c.to_dict(), "doc_id": None}) for c in message.citations]
    msg = MessageInfo(id=9, chat_id=3, role="assistant", text=message.text, citations=removed)
    html = answer_html(msg.text, msg)
    chips = re.findall(r'<span class="cite-chip cite-removed"[^>]*>(.*?)</span>', html)
    assert chips == ["hsaur-inference.pdf, p.&nbsp;3 (removed)", "hsaur-inference.pdf, p.&nbsp;4 (removed)"]
    assert "jd-cite-9" not in html and "does not exist" not in html      # inert, and not "a missing page"


def _doc(i: int, name: str, pages: int, tokens: int, cached: bool) -> DocumentInfo:
    return DocumentInfo(id=i, workspace_id=1, index=i, filename=name, title=name.upper(), kind="pdf", unit="page",
                        pages=pages, tokens=tokens, content_hash="0" * 64, cached=cached,
                        added_at=datetime.now(timezone.utc))


def test_budget_gauge_names_what_is_left_out():
    docs = [_doc(1, "a.pdf", 10, 3000, True), _doc(2, "b.pdf", 5, 2000, False), _doc(3, "c.pdf", 1, 500, False)]
    over = budget_gauge(BudgetInfo(used=5500, max=4096, cached=3000, fits=False, documents=3), docs)
    assert "over the limit" in over and "B.PDF" in over and "C.PDF" in over and "A.PDF" not in over
    assert 'jd-bar-cached" style="width:73.2%' in over                # 3000 of 4096 cached
    fits = budget_gauge(BudgetInfo(used=3500, max=4096, cached=0, fits=True, documents=2), docs[:2])
    assert "Everything fits" in fits
    # what the prompt needs besides the documents is not theirs: 3,500 do not fit in 4,096 - 700
    short = budget_gauge(BudgetInfo(used=3500, max=4096, cached=0, fits=False, documents=2, reserved=700), docs[:2])
    assert "over the limit" in short and "B.PDF" in short and "of 3.4k tokens for documents" in short and "less 700" in short
    assert ">partly<" in documents_table(docs[:2], BudgetInfo(used=3500, max=4096, cached=0, fits=False,
                                                              documents=2, reserved=700))
    table = documents_table(docs, BudgetInfo(used=5500, max=4096, cached=3000, fits=False, documents=3))
    rows = re.findall(r"<tr data-doc-id.*?</tr>", table)
    assert len(rows) == 3 and ">cached<" in rows[0] and "partly" in rows[1] and "retrieval" in rows[2]
    docs[1].cached = True                 # read in part: only the pages the last question read are stored
    table = documents_table(docs, BudgetInfo(used=5500, max=4096, cached=3000, fits=False, documents=3))
    rows = re.findall(r"<tr data-doc-id.*?</tr>", table)
    assert ">pages cached<" in rows[1] and ">cached<" not in rows[1] and ">cached<" in rows[0]
    docs[1].cached = False
    unlimited = documents_table(docs, BudgetInfo(used=5500, max=None, cached=0, fits=True, documents=3))
    assert "cached<" not in unlimited              # an engine with no context reads no prompt: no cache pills
    assert ">OCR<" not in table
    docs[1].notes = ["no text layer on pp. 2-4: text recognised by OCR (RapidOCR, PP-OCR models)"]
    rows = re.findall(r"<tr data-doc-id.*?</tr>", documents_table(docs, None))
    assert ">OCR<" in rows[1] and "pp. 2-4" in rows[1] and ">OCR<" not in rows[0] + rows[2]
    unlimited = [budget_gauge(BudgetInfo(used=500, max=None, cached=0, fits=True, documents=n), docs[:n])
                 for n in (1, 3)]
    assert "in 1 document;" in unlimited[0] and "in 3 documents;" in unlimited[1]


def test_omitted_summary_in_words():
    assert omitted_text({"omitted": [{"doc": 2, "file": "b.pdf", "pages": [3, 4]}]}) == "b.pdf (2 pages)"
    assert omitted_text({"omitted_summary": "left out 10 tokens", "omitted": [{"doc": 1}]}) == "left out 10 tokens"
    assert omitted_text({"omitted": []}) == ""


def test_upload_progress_counts_pages_in_words():
    from ui.render import UploadRow, upload_progress

    rows = [UploadRow("big.pdf", status="reading", done=0, total=1311),
            UploadRow("half.pdf", status="reading", done=655, total=1311)]
    html = upload_progress(rows)
    assert "reading 1,311 pages" in html and "reading page 655 of 1,311" in html and "page 0" not in html


def test_upload_errors_in_plain_words(corpus):
    from ingest import IngestError

    for name, words in [("fake.pdf", "not a PDF"), ("empty.pdf", "empty"), ("encrypted.pdf", "password"),
                        ("truncated.pdf", "damaged or truncated")]:
        with pytest.raises(IngestError) as err:
            read_document(corpus / name)
        assert name in ingest_error_text(err.value)               # alone, the message names the file
        text = ingest_error_text(err.value, name)                 # in its row, the name is not repeated
        assert not text.startswith(name) and words.lower() in text.lower(), text
        assert "PDFium" not in text and "Failed to" not in text, text          # no library's own wording
    with pytest.raises(IngestError) as err:
        read_document(corpus / "encrypted.pdf")
    assert "Password for protected PDFs" in ingest_error_text(err.value, "encrypted.pdf")


def test_export_markdown_keeps_citations_and_sources(hsaur, message):
    user = MessageInfo(id=6, chat_id=3, role="user", text="How was the room width estimated?")
    doc = _doc(1, hsaur.filename, len(hsaur.pages), 9000, False)
    chat = ChatInfo(id=3, workspace_id=1, title="Room width", created_at=datetime.now(timezone.utc))
    md = chat_markdown("Stats", chat, [user, message], [doc], {"engine": "extractive", "model": None})
    assert md.startswith("# Room width\n")
    assert "## Question 1" in md and "> How was the room width estimated?" in md
    assert "[doc 1, p. 3]" in md and "[doc 1, p. 4]" in md               # markers kept in the answer
    assert re.search(r"1\. \[doc 1\] hsaur-inference\.pdf, page 3: verified", md)
    assert re.search(r"2\. \[doc 1\] hsaur-inference\.pdf, page 4: \*\*unverified\*\*", md)
    assert "passage on the page" in md and "3.28" in md
    assert "## Sources" in md and "hsaur-inference.pdf), 15 pages" in md
    assert "tokens from cache" not in md           # the extractive engine reads no prompt: 0 and 0 say nothing
    assert "removed from the workspace" not in md
    # the document removed since: its citations say so, and the Sources list (now empty) is explained
    removed = [c.__class__(**{**c.to_dict(), "doc_id": None}) for c in message.citations]
    gone = MessageInfo(id=7, chat_id=3, role="assistant", text=message.text, citations=removed)
    md = chat_markdown("Stats", chat, [user, gone], [], None)
    assert re.search(r"1\. \[doc 1\] hsaur-inference\.pdf \(removed from the workspace since\), page 3", md)
    other = _doc(1, "other.pdf", 2, 100, False)
    md = chat_markdown("Stats", chat, [user, gone], [other], None)
    assert "the document's place when it was asked" in md and "1. **OTHER.PDF** (other.pdf)" in md


def test_engine_status_says_what_decode_runs_on():
    info = {"engine": "jamba", "model": "/models/jamba-tiny/", "device": "cpu", "dtype": "float32",
            "max_context": 4096, "decode": "C on 2 threads"}
    line = engine_status(info)
    assert "<b>decode</b> C on 2 threads" in line and "jamba-tiny" in line
    assert "decode" not in engine_status({k: v for k, v in info.items() if k != "decode"})


def test_answer_stats_say_how_long_a_reasoning_model_reasoned():
    from ui.render import answer_stats

    plain = answer_stats({"cached_tokens": 10, "prefilled_tokens": 20, "ttft_s": 0.5})
    assert "reasoning" not in plain
    by_model = answer_stats({"ttft_s": 0.5, "thinking_tokens": 1234, "thinking_closed_by": "model"})
    assert re.search(r"reasoning <b>1\.2k</b> tokens", by_model) and "budget" not in by_model
    cut = answer_stats({"ttft_s": 0.5, "thinking_tokens": 4096, "thinking_closed_by": "budget"})
    assert "its budget ran out" in cut


def test_answer_stats_say_how_much_of_the_cache_was_the_conversation():
    from ui.render import answer_stats

    assert "of this chat" not in answer_stats({"cached_tokens": 1500, "prefilled_tokens": 20, "conversation_tokens": 0})
    follow_up = answer_stats({"cached_tokens": 1500, "prefilled_tokens": 20, "conversation_tokens": 300})
    assert "<b>1.5k</b> tokens from cache (300 of this chat), <b>20</b> prefilled" in follow_up


@pytest.mark.parametrize("unit,label,shown,where", [
    ("page", "2", 8, "page 8 of 10 (printed &ldquo;2&rdquo;)"),
    ("page", "2", 9, "page 9 of 10 &middot; <span class=\"jd-warn\">showing page 9, cited page 8</span>"),
    ("page", "8", 8, "page 8 of 10</div>"),
    ("slide", "slide 8", 8, "slide 8 of 10</div>"),
    ("section", "§8 Installation", 8, "section 8 of 10 (&ldquo;§8 Installation&rdquo;)"),
])
def test_source_header_names_the_unit_and_its_label_on_the_cited_unit_only(unit, label, shown, where):
    from app.records import CitationInfo
    from ui.render import source_header

    cite = CitationInfo(doc=1, doc_id=5, filename="f", page=8, page_label=label, quote="q", verified=True,
                        passage="q", start=0, end=1)
    assert where in source_header(cite, 10, shown, unit)


def test_the_verdict_shows_on_the_cited_page_only():
    """The viewer said "verified: the quoted text is on this page" on the page after the cited one."""
    from app.records import CitationInfo
    from ui.render import source_header

    cite = CitationInfo(doc=1, doc_id=5, filename="f", page=8, page_label="8", quote="q", verified=True,
                        passage="q", start=0, end=1)
    assert "jd-verdict" in source_header(cite, 10, 8) and "verified" in source_header(cite, 10, 8)
    for other in (7, 9):
        head = source_header(cite, 10, other)
        assert "jd-verdict" not in head and "cited page 8" in head


def test_answer_stats_name_the_sampling_only_when_sampled():
    from ui.render import answer_stats

    sampled = answer_stats({"ttft_s": 0.1, "sampling": {"temperature": 0.6, "top_p": 0.95, "seed": 1234}})
    assert "sampled at temperature 0.6, top-p 0.95, seed 1234" in sampled
    greedy = answer_stats({"ttft_s": 0.1, "sampling": {"temperature": 0.0, "top_p": 1.0, "seed": None}})
    assert "sampled" not in greedy and "first token" in greedy


def test_the_engine_line_says_how_far_the_checkpoint_has_loaded(monkeypatch):
    """While the checkpoint loads, the page's engine line is refreshed with the loader's progress;
    then it shows the engine."""
    import threading
    import time

    import ui.handlers as handlers
    from ui.render import engine_loading

    assert "reading the weights, 50%" in engine_loading(("weights", 3, 6))
    assert "quantizing to int8, 100%" in engine_loading(("int8", 32, 32))
    assert "loading&hellip;" in engine_loading(None)

    class SlowStart:                      # a Services whose checkpoint takes a while to load
        answerer_loaded = False

        def __init__(self):
            self.progress, self.info, self.lock, self.calls = None, None, threading.Lock(), 0

        def load_progress(self):
            return self.progress

        def engine_info(self):
            self.calls += 1
            with self.lock:
                if self.info is None:
                    for done in range(1, 5):
                        self.progress = ("weights", done, 4)
                        time.sleep(0.15)
                    self.info = {"engine": "jamba", "model": "/m/tiny", "device": "cpu", "dtype": "float32",
                                 "max_context": 4096}
                    self.answerer_loaded = True
                return self.info

    monkeypatch.setattr(handlers, "LOAD_POLL_S", 0.05)
    h = handlers.Handlers(SlowStart())
    h.bind(engine_line="engine", docs_html="docs", budget_html="budget")
    updates = [u["engine"] for u in h.after_load(None)]
    assert any("reading the weights" in u and "%" in u for u in updates[:-1]), updates
    assert "<b>engine</b> jamba" in updates[-1] and "loading" not in updates[-1]
    assert h.svc.calls == 1                  # the start's own answer is shown; it is not asked twice


def test_an_error_toast_shows_a_typed_name_as_text_not_html(tmp_path):
    """Gradio renders a toast's message as HTML: a workspace name like <img src=x onerror=...> came
    out as an image (a request to x) and bold text."""
    import gradio as gr

    from app.config import Settings
    from app.services import Services
    from ui.handlers import Handlers

    with Services(Settings.from_env(data_dir=tmp_path / "d", engine="extractive")) as svc:
        h = Handlers(svc)
        with pytest.warns(UserWarning) as toasts:
            assert h.create_workspace("<img src=x onerror=alert(1)><b>bold</b>/x") == gr.skip()
    (toast,) = [str(w.message) for w in toasts]
    assert "<img" not in toast and "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;" in toast


@pytest.mark.parametrize("mark", ["[doc 1, pp. 2-3]", "[doc 1, p. 3, 5]", "[doc 1, pages 3 and 5]",
                                  "[Doc 1, page 3]", "[doc 1 p. 3]", "[doc 1, p. 3 of the book]"])
def test_every_citation_form_the_parser_reads_gets_its_own_chips(hsaur, mark):
    """A verified "[doc 1, pp. 2-3]" or "[doc 1, p. 3, 5]" was drawn inline as one "cites a page that does
    not exist" chip (the UI read markers with its own narrower pattern); "[Doc 1, page 3]" was no chip."""
    text, citations = parse_and_verify(f"{TRUE_CLAIM} {mark}.", [hsaur], doc_ids=[11])
    msg = MessageInfo(id=10, chat_id=3, role="assistant", text=text, citations=citations)
    html = answer_html(msg.text, msg)
    assert "jd-more-cites" not in html and "cite-missing" not in html and "[doc" not in html.lower()
    chips = re.findall(r'class="cite-chip (cite-\w+) jd-cite-10-(\d)"', html)
    assert chips == [("cite-verified" if c.verified else "cite-unverified", str(i)) for i, c in enumerate(citations)]
    assert any(c.verified and c.page == 3 for c in citations)


def _as_shown(content: str) -> str:
    """The text a chat message's content shows: the chatbot renders it as Markdown (then HTML)."""
    import html
    from markdown_it import MarkdownIt

    return html.unescape(re.sub(r"<[^>]+>", "", MarkdownIt("commonmark").render(content))).strip()


def test_a_question_shows_as_typed_not_as_markdown_or_html(services_and_handlers, tmp_path):
    """The question was put into the chat as it was typed, and the chatbot renders Markdown and HTML:
    "What does the <table> tag and a*b*c or __init__ mean?" showed as "What does the", an empty
    table, "tag and abc or init mean?" (b in italics, init in bold), saved and while answered."""
    from ui.render import chat_messages

    question = "What does the <table> tag and a*b*c or __init__ mean? # [see](x) `code` 1. \\o/"
    [shown] = chat_messages([MessageInfo(id=1, chat_id=1, role="user", text=question)])
    assert _as_shown(shown["content"]) == question
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w")
    note = tmp_path / "note.txt"
    note.write_text("The table tag makes a table.\n")
    svc.documents.add(ws.id, note)
    first = next(h.ask(question, ws.id, None, []))
    assert _as_shown(first["chatbot"][-2]["content"]) == question


@pytest.mark.parametrize("title, name", [
    ("مَا هِيَ الصِّيَغ؟", "مَا-هِيَ-الصِّيَغ.md"),                       # Arabic with harakat
    ("מָה הַשָּׁעָה", "מָה-הַשָּׁעָה.md"),                                 # Hebrew with niqqud
    ("हिन्दी दस्तावेज़", "हिन्दी-दस्तावेज़.md"),                          # Devanagari vowel signs
    ("Ärger / 東京: résumé", "Ärger-東京-résumé.md"),
])
def test_an_export_file_is_named_with_the_words_of_its_chat(tmp_path, title, name):
    """A combining mark is not \\w: the name was cut at each one ("م-ا-ه-ي-ال-ص-ي-غ.md")."""
    from ui.export import write_export

    path = write_export(tmp_path, title, f"# {title}\n")
    assert path.name == name and path.read_text(encoding="utf-8") == f"# {title}\n"


def test_answer_stats_say_why_an_answer_ended_early():
    from ui.render import answer_stats

    assert "stopped before the end" in answer_stats({"ttft_s": 0.1, "cancelled": True})
    failed = answer_stats({"ttft_s": 0.1, "cancelled": True, "error": "CUDA out of memory <2 GiB>"})
    assert "the engine failed before the end: CUDA out of memory &lt;2 GiB&gt;" in failed
    assert "stopped before the end" not in failed


@pytest.mark.parametrize("mark", ["[doc 1, sheet Log]", "[doc 2, \u00a72]", "[doc 2, section 2]"])
def test_a_sheet_or_section_named_by_its_word_gets_its_chip(tmp_path, monkeypatch, mark):
    """A sheet cut into row ranges ("Log (rows 40-80)") or a section cited by number ("§2") was checked,
    but its chip read "cites a page that does not exist" and the citation went to "Sources"."""
    from openpyxl import Workbook

    from ingest import office, read_document
    book = Workbook()
    book.active.title = "Log"
    book.active.append(["id", "event"])
    for i in range(1, 60):
        book.active.append([i, f"event {i} in the warehouse"])
    book.save(tmp_path / "log.xlsx")
    monkeypatch.setattr(office, "SHEET_UNIT_CHARS", 400)
    md = tmp_path / "leases.md"
    md.write_text("# Lease 2023\n\nThe monthly rent is 1,250 euros.\n\n# Lease 2024\n\nThe monthly rent is 1,350 euros.\n")
    docs = [read_document(tmp_path / "log.xlsx"), read_document(md)]
    claim = "event 50 in the warehouse" if "Log" in mark else "The monthly rent is 1,350 euros"
    text, citations = parse_and_verify(f"{claim} {mark}.", docs, doc_ids=[4, 5])
    assert [c.verified for c in citations] == [True]
    html = answer_html(text, MessageInfo(id=12, chat_id=3, role="assistant", text=text, citations=citations))
    assert re.findall(r'class="cite-chip (cite-\w+) jd-cite-12-(\d)"', html) == [("cite-verified", "0")]
    assert "cite-missing" not in html and "jd-more-cites" not in html


def test_the_gauge_marks_an_estimate():
    """Documents the server has not counted yet are estimated: the gauge said nothing of it."""
    docs = [DocumentInfo(id=1, workspace_id=1, index=1, filename="a.pdf", title="A", kind="pdf", unit="page",
                         pages=2000, tokens=900_000, content_hash="h", cached=False, added_at=datetime.now(timezone.utc),
                         estimated=True)]
    limited = budget_gauge(BudgetInfo(used=900_000, max=4096, cached=0, fits=False, documents=1, estimated=True), docs)
    unlimited = budget_gauge(BudgetInfo(used=900_000, max=None, cached=0, fits=True, documents=1, estimated=True), docs)
    assert "still being counted" in limited and "~900" in limited and "~900" in unlimited
    assert "~900" in documents_table(docs, None)
