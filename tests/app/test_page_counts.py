"""Page token counts taken in the background when documents are added (and, at start, of those
stored before), under the loaded engine's tokenizer: the first question on a set far over the
context finds them instead of tokenising every page."""
from __future__ import annotations

import hashlib
import logging
import threading

import pytest

from app.config import Settings
from app.services import Services
from engine.testing import write_tiny_checkpoint
from ingest.budget import page_bodies, tokenizer_digest

QUESTION = "How do I read a data frame from a file with read.table?"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny checkpoints with a 4K context and different tokenizers (vocabularies)."""
    root = tmp_path_factory.mktemp("ckpt")
    return (write_tiny_checkpoint(root / "a", seed=0, max_position_embeddings=4096),
            write_tiny_checkpoint(root / "b", seed=0, vocab_size=1024, max_position_embeddings=4096))


def _services(data, checkpoint) -> Services:
    return Services(Settings.from_env(data_dir=data, model=str(checkpoint), engine="jamba", device="cpu",
                                      max_new_tokens=4))


def _stored(svc: Services, ws_id: int) -> tuple[int, dict[bytes, int], list[int]]:
    """(pages of the workspace, the counts its pages have in the state store under the engine's
    tokenizer, those pages counted by that tokenizer now)."""
    tok = svc.answerer.engine.tokenizer
    bodies = [b for doc in svc.documents.load(ws_id)[1] for b in page_bodies(doc)]
    digests = [hashlib.sha1(b.encode()).digest() for b in bodies]
    stored = svc.answerer.store.token_counts(tokenizer_digest(tok), digests)
    real = [len(e.ids) for e in tok.backend_tokenizer.encode_batch(bodies, add_special_tokens=False)]
    return len(bodies), {d: stored[d] for d in digests if d in stored}, [
        n for d, n in zip(digests, real) if d in stored]


def test_page_counts_are_stored_when_documents_are_added_and_at_start(corpus, checkpoints, tmp_path):
    """A question on a set larger than the context counted every page first (4,079 pages: most of a
    90 s first token). Now the server counts them in the background: those of the documents stored
    before once its engine has started, those of a document added after the upload returns."""
    svc = _services(tmp_path / "d", checkpoints[0])
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")       # before the engine starts
    svc.count_pages_in_background()                                # as `jambadocs serve` does
    svc.start_engine()
    svc.documents.add(ws.id, corpus / "r-intro.pdf")
    assert svc.wait_for_page_counts(timeout=300)
    pages, stored, real = _stored(svc, ws.id)
    assert pages == 15 + 113 and len(stored) == pages               # every page, before any question
    assert list(stored.values()) == real                            # as the tokenizer counts them
    assert not svc.chats.list(ws.id)
    svc.close()


def test_a_question_during_the_counting_gets_the_prompt_it_gets_after(corpus, checkpoints, tmp_path):
    """A question asked while the pages are being counted does not wait for the counting: it counts
    what is still missing itself, and reads the same pages, the same prompt, as once all are counted."""
    svc = _services(tmp_path / "d", checkpoints[0])
    ws = svc.workspaces.create("w")
    svc.start_engine()
    for name in ("hsaur-inference.pdf", "r-intro.pdf"):
        svc.documents.add(ws.id, corpus / name)
    paused, release = threading.Event(), threading.Event()
    checks = []
    may_count = svc._may_count

    def held(doc_id):                  # the counting stops before its second batch until released
        checks.append(doc_id)
        if len(checks) == 2:
            paused.set()
            release.wait(300)
        return may_count(doc_id)

    svc._may_count = held
    svc.count_pages_in_background()
    assert paused.wait(300)
    pages, stored, _ = _stored(svc, ws.id)
    assert 0 < len(stored) < pages                                  # counting is under way
    during = svc.qa.answer(ws.id, QUESTION)
    assert not release.is_set()                                     # it did not wait for the counting
    release.set()
    assert svc.wait_for_page_counts(timeout=300)
    svc.close()

    after_svc = _services(tmp_path / "d2", checkpoints[0])
    ws2 = after_svc.workspaces.create("w")
    after_svc.start_engine()
    after_svc.count_pages_in_background()
    for name in ("hsaur-inference.pdf", "r-intro.pdf"):
        after_svc.documents.add(ws2.id, corpus / name)
    assert after_svc.wait_for_page_counts(timeout=300)
    assert len(_stored(after_svc, ws2.id)[1]) == pages
    after = after_svc.qa.answer(ws2.id, QUESTION)
    after_svc.close()
    assert during.timings["omitted"] and during.timings["omitted"] == after.timings["omitted"]
    assert during.timings["prompt_tokens"] == after.timings["prompt_tokens"]
    assert during.text == after.text


def test_another_tokenizer_does_not_reuse_the_page_counts(corpus, checkpoints, tmp_path):
    """The counts are kept per tokenizer: a server started on another model (another vocabulary)
    counts the stored documents' pages again, with its own tokenizer."""
    svc = _services(tmp_path / "d", checkpoints[0])
    ws = svc.workspaces.create("w")
    svc.count_pages_in_background()
    svc.start_engine()
    svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    assert svc.wait_for_page_counts(timeout=300)
    first = _stored(svc, ws.id)[1]
    svc.close()

    other = _services(tmp_path / "d", checkpoints[1])
    assert len(_stored(other, ws.id)[1]) == 0                       # none under its tokenizer yet
    other.count_pages_in_background()
    other.start_engine()
    assert other.wait_for_page_counts(timeout=300)
    pages, stored, real = _stored(other, ws.id)
    assert len(stored) == len(first) == pages and list(stored.values()) == real
    assert list(stored.values()) != list(first.values())
    other.close()


def test_deleting_a_document_stops_its_counting_cleanly(corpus, checkpoints, tmp_path, caplog):
    """A document deleted while its pages are being counted: the counting stops at the next batch,
    without an error, and goes on with the workspace's other documents."""
    svc = _services(tmp_path / "d", checkpoints[0])
    ws = svc.workspaces.create("w")
    svc.start_engine()
    big = svc.documents.add(ws.id, corpus / "r-intro.pdf")
    small = svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    paused, release = threading.Event(), threading.Event()
    checks = []
    may_count = svc._may_count

    def held(doc_id):
        checks.append(doc_id)
        if len(checks) == 2:
            paused.set()
            release.wait(300)
        return may_count(doc_id)

    svc._may_count = held
    svc.count_pages_in_background()
    assert paused.wait(300)
    bodies = page_bodies(svc.documents.load(ws.id)[1][0])
    svc.documents.remove(ws.id, big.id)
    release.set()
    with caplog.at_level(logging.WARNING):
        assert svc.wait_for_page_counts(timeout=300)
    assert checks[:3] == [big.id, big.id, small.id] and big.id not in checks[2:]   # stopped, then the next
    store, digest = svc.answerer.store, tokenizer_digest(svc.answerer.engine.tokenizer)
    counted = store.token_counts(digest, [hashlib.sha1(b.encode()).digest() for b in bodies])
    assert 0 < len(counted) < len(bodies)                          # the first batch only
    pages, stored, _ = _stored(svc, ws.id)
    assert pages == 15 and len(stored) == 15
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    svc.close()


def test_the_first_question_after_the_counting_neither_counts_nor_indexes_pages(corpus, checkpoints, tmp_path,
                                                                                monkeypatch):
    """Once counted, a workspace whose pages take more than the context gets its BM25 index built in
    the background too (indexing 4,079 pages took seconds of the first question): the first question
    tokenises no page and builds no index."""
    from llama_index.retrievers.bm25 import BM25Retriever
    from transformers import PreTrainedTokenizerFast

    counted, built, watching = [], [], threading.Event()

    class Recording:
        """A fast tokenizer's backend recording the texts counted once `watching` is set."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def encode_batch_fast(self, texts, **kw):
            if watching.is_set():
                counted.extend(texts)
            return self.real.encode_batch_fast(texts, **kw)

        def encode_batch(self, texts, **kw):
            if watching.is_set():
                counted.extend(texts)
            return self.real.encode_batch(texts, **kw)

    monkeypatch.setattr(PreTrainedTokenizerFast, "backend_tokenizer", property(lambda self: Recording(self._tokenizer)))
    from_defaults = BM25Retriever.from_defaults.__func__
    monkeypatch.setattr(BM25Retriever, "from_defaults", classmethod(
        lambda cls, *a, **kw: (built.append(1) if watching.is_set() else None) or from_defaults(cls, *a, **kw)))
    svc = _services(tmp_path / "d", checkpoints[0])
    ws = svc.workspaces.create("w")
    svc.count_pages_in_background()
    svc.start_engine()
    for name in ("hsaur-inference.pdf", "r-intro.pdf"):
        svc.documents.add(ws.id, corpus / name)
    assert svc.wait_for_page_counts(timeout=300)
    watching.set()
    answer = svc.qa.answer(ws.id, QUESTION)
    assert answer.timings["omitted"]                                # pages were chosen
    bodies = {b for doc in svc.documents.load(ws.id)[1] for b in page_bodies(doc)}
    assert counted and not bodies & set(counted) and not built      # (counted: frames, a gap line)
    svc.close()


def test_an_upload_and_the_gauge_tokenise_no_uncounted_document_on_the_request_thread(corpus, checkpoints, tmp_path,
                                                                                     monkeypatch):
    """An upload, and the context gauge of a page load, a workspace switch or /budget, counted each
    uncounted document whole on the request's thread (a 2,000-page document: seconds of a frozen
    page). Now the counting thread counts it; until then the gauge shows an estimate and says so,
    and once counted the exact count."""
    from transformers import PreTrainedTokenizerFast

    from ui import render

    encoded: list[tuple[threading.Thread, str]] = []

    class Recording:
        """A fast tokenizer's backend recording each text it encodes, with the thread encoding it."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def encode(self, text, *a, **kw):
            encoded.append((threading.current_thread(), text))
            return self.real.encode(text, *a, **kw)

        def encode_batch(self, texts, *a, **kw):
            encoded.extend((threading.current_thread(), t) for t in texts)
            return self.real.encode_batch(texts, *a, **kw)

        def encode_batch_fast(self, texts, *a, **kw):
            encoded.extend((threading.current_thread(), t) for t in texts)
            return self.real.encode_batch_fast(texts, *a, **kw)

    monkeypatch.setattr(PreTrainedTokenizerFast, "backend_tokenizer", property(lambda self: Recording(self._tokenizer)))
    svc = _services(tmp_path / "d", checkpoints[0])
    ws = svc.workspaces.create("w")
    svc.count_pages_in_background()                                # as `jambadocs serve` does
    svc.start_engine()
    release = threading.Event()
    may_count = svc._may_count
    svc._may_count = lambda doc_id: release.wait(300) and may_count(doc_id)   # counting held back
    try:
        svc.documents.add(ws.id, corpus / "r-intro.pdf")           # the upload request
        budget = svc.budget(ws.id)                                 # the gauge's request
        (doc,) = svc.documents.load(ws.id)[1]
        here = [t for thread, t in encoded if thread is threading.current_thread()]
        assert not [p.number for p in doc.pages if p.text.strip() and any(p.text in t for t in here)]
        (row,) = svc.documents.list(ws.id, estimate=True)
        assert budget.estimated and row.estimated and budget.used == row.tokens > 113
        assert "still being counted" in render.budget_gauge(budget, [row])
        assert f"~{render.fmt_tokens(row.tokens)}" in render.documents_table([row], budget)
    finally:
        release.set()
    assert svc.wait_for_page_counts(timeout=300)
    exact = svc.budget(ws.id)
    (row,) = svc.documents.list(ws.id)
    assert not exact.estimated and not row.estimated
    assert exact.used == row.tokens == svc.answerer.document_tokens(doc)
    assert "still being counted" not in render.budget_gauge(exact, [row])
    svc.qa.answer(ws.id, QUESTION)
    encoded.clear()
    (row,) = svc.documents.list(ws.id)                             # its cached flag: looked up, not tokenised
    assert not [t for thread, t in encoded if thread is threading.current_thread() and doc.pages[20].text in t]
    assert row.cached and svc.answerer.cached_documents([doc]) == [True]   # as computing the keys finds
    svc.close()


def test_a_listing_that_starts_the_engine_does_not_wait_on_its_own_transaction(corpus, tmp_path, caplog,
                                                                               monkeypatch):
    """A listing reads the documents in a transaction and asks for the tokenizer key, which starts a
    cheap engine (extractive) there; starting queued every workspace for counting with a query of
    its own, which waited on the listing's transaction for the whole busy timeout (30 s: a page
    load, `GET .../documents` timed out) and then gave up counting. The counting thread now lists
    the workspaces itself."""
    from app import db

    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 2000)       # the old wait, shortened
    svc = Services(Settings.from_env(data_dir=tmp_path / "d", engine="extractive"))
    svc.count_pages_in_background()                        # as `jambadocs serve` does
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")   # counted once the engine has started
    with caplog.at_level(logging.WARNING, logger="app.services"):
        [doc] = svc.documents.list(ws.id, estimate=True)   # starts the extractive engine
        assert svc.wait_for_page_counts(timeout=120)
    assert not [r for r in caplog.records if "not queued" in r.getMessage()]
    [counted] = svc.documents.list(ws.id, estimate=True)
    assert doc.estimated and not counted.estimated and counted.tokens > 0
    svc.close()
