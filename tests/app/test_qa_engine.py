"""The Q&A service on the bundled engine (tiny random checkpoint): timings, the state cache used
on a second question and after a restart, and never across models."""
from __future__ import annotations

import time

import pytest
from pypdf import PdfReader, PdfWriter

from app.config import Settings
from app.services import Services


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from engine.testing import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("ckpt")
    return write_tiny_checkpoint(root / "a", seed=0), write_tiny_checkpoint(root / "b", seed=1)


def _pages_pdf(src, pages, out):
    """Real pages of a corpus PDF as a short PDF, so CPU prefill stays quick."""
    reader, writer = PdfReader(src), PdfWriter()
    for i in pages:
        writer.add_page(reader.pages[i])
    with open(out, "wb") as f:
        writer.write(f)
    return out


@pytest.fixture(scope="module")
def two_pages(corpus, tmp_path_factory):
    return _pages_pdf(corpus / "hsaur-inference.pdf", (0, 2), tmp_path_factory.mktemp("pdf") / "hsaur-p1-3.pdf")


@pytest.fixture(scope="module")
def one_page(corpus, tmp_path_factory):
    return _pages_pdf(corpus / "debian-history-fr.pdf", (7,), tmp_path_factory.mktemp("pdf") / "debian-p8.pdf")


def test_second_question_and_restart_use_the_cache(tmp_path, tiny, two_pages, one_page):
    settings = Settings.from_env(data_dir=tmp_path / "d", model=str(tiny[0]), engine="jamba",
                                 device="cpu", max_new_tokens=4)
    svc = Services(settings)
    ws = svc.workspaces.create("w")
    doc = svc.documents.add(ws.id, two_pages)
    info = svc.engine_info()
    assert info["engine"] == "jamba" and info["max_context"] > 0
    assert [d.cached for d in svc.documents.list(ws.id)] == [False]
    first = svc.qa.answer(ws.id, "What is a t-test?")
    assert [d.cached for d in svc.documents.list(ws.id)] == [True]
    t1 = first.timings
    assert first.engine == "jamba" and t1["cached_tokens"] == 0 and t1["prefilled_tokens"] > 100
    assert t1["ttft_s"] > 0 and t1["omitted"] == []
    second = svc.qa.answer(ws.id, "And a paired one?", chat_id=first.chat_id)
    t2 = second.timings
    assert t2["cached_tokens"] >= t1["prefilled_tokens"] - 64       # the documents were not re-read
    assert t2["prefilled_tokens"] < t1["prefilled_tokens"] // 4
    budget = svc.budget(ws.id)
    assert budget.max == info["max_context"] and budget.used == svc.documents.list(ws.id)[0].tokens > 0
    assert budget.cached == budget.used and budget.fits
    svc.close()

    svc = Services(settings)                                          # a restart: states from SQLite
    again = svc.qa.answer(ws.id, "What is a t-test?")
    assert t2["conversation_tokens"] > 0                              # the first turn's prompt continued
    assert again.timings["cached_tokens"] == t2["cached_tokens"] - t2["conversation_tokens"]
    assert again.timings["prefilled_tokens"] == t1["prefilled_tokens"] - again.timings["cached_tokens"]
    assert svc.cache_stats()["entries"] >= 1
    svc.documents.add(ws.id, one_page)                                # appending prefills only it
    assert [d.cached for d in svc.documents.list(ws.id)] == [True, False]
    grown = svc.qa.answer(ws.id, "What is a t-test?")
    assert grown.timings["cached_tokens"] == again.timings["cached_tokens"]
    assert [d.cached for d in svc.documents.list(ws.id)] == [True, True]
    assert [m.role for m in svc.chats.messages(first.chat_id)] == ["user", "assistant"] * 2
    svc.close()

    other = Services(settings.with_(model=str(tiny[1])))              # another model: nothing reused
    other.engine_info()
    assert [d.cached for d in other.documents.list(ws.id)] == [False, False]
    assert other.qa.answer(ws.id, "What is a t-test?").timings["cached_tokens"] == 0
    other.close()
    assert doc.pages == 2


def test_a_reasoning_checkpoint_keeps_its_reasoning_apart_from_the_answer(tmp_path, two_pages):
    """A checkpoint whose chat template is Jamba Reasoning's layout (ChatML, a <think> block opened
    by the generation prompt), loaded from its folder: the reasoning streams as "thinking" events
    and is saved apart from the answer, which alone goes back to the model in the next turn."""
    from engine.testing import REASONING_TEMPLATE, write_tiny_checkpoint
    from ui import render
    from ui.export import chat_markdown

    folder = write_tiny_checkpoint(tmp_path / "reasoning", seed=2, chat_template=REASONING_TEMPLATE)
    svc = Services(Settings.from_env(data_dir=tmp_path / "d", model=str(folder), engine="jamba", device="cpu",
                                     max_new_tokens=3, max_thinking_tokens=5))
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, two_pages)
    events = list(svc.qa.ask(ws.id, "What is a t-test?"))
    kinds = [e.kind for e in events if e.kind in ("thinking", "token")]
    assert kinds[0] == "thinking" and "token" in kinds and kinds == sorted(kinds, key=lambda k: k == "token")
    answer = events[-1].answer
    streamed = "".join(e.text for e in events if e.kind == "thinking").strip()
    assert answer.reasoning == streamed and answer.reasoning
    assert answer.text == "".join(e.text for e in events if e.kind == "token")
    assert answer.timings["thinking_closed_by"] == "budget" and answer.timings["thinking_tokens"] >= 5
    saved = svc.chats.messages(answer.chat_id)[-1]
    assert saved.reasoning == answer.reasoning and saved.text == answer.text
    assert svc.chats.history(answer.chat_id) == [("user", "What is a t-test?"), ("assistant", answer.text)]
    shown = render.chat_messages(svc.chats.messages(answer.chat_id))
    assert [m.get("metadata", {}).get("title") for m in shown] == [None, "Reasoning", None]
    assert "<details><summary>Reasoning</summary>" in chat_markdown("w", None, [saved], [])
    follow = svc.qa.answer(ws.id, "And a paired one?", chat_id=answer.chat_id)
    assert follow.timings["cached_tokens"] > 0 and follow.reasoning
    svc.close()


def test_the_first_ask_reports_how_far_the_checkpoint_has_loaded(tmp_path, tiny, two_pages, monkeypatch):
    """The first ask starts the engine: "load" progress events follow the layers read (then
    "quantize" ones with int8), in order, before the answer; a failed start still says why."""
    import app.qa as qa
    import engine.checkpoint as checkpoint
    import engine.engine as engine_module          # (engine/__init__ imports it on first use only)
    from app.errors import EngineUnavailable

    monkeypatch.setattr(qa, "LOAD_POLL_S", 0.01)
    real_load = checkpoint.load_weights

    def slow_load(folder, cfg, dtype, device, progress=None, cancel=None):      # a checkpoint that takes a while
        def slowly(done, total):
            time.sleep(0.05)
            progress(done, total)
        return real_load(folder, cfg, dtype, device, slowly if progress else None, cancel)

    monkeypatch.setattr(checkpoint, "load_weights", slow_load)
    monkeypatch.setattr(engine_module, "load_weights", slow_load)
    settings = Settings.from_env(data_dir=tmp_path / "d", model=str(tiny[0]), engine="jamba", device="cpu",
                                 max_new_tokens=2, quantize="int8")
    svc = Services(settings)
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, two_pages)
    events = list(svc.qa.ask(ws.id, "What is a t-test?"))
    loads = [(e.stage, e.done, e.total) for e in events if e.kind == "progress" and e.stage in ("load", "quantize")]
    assert loads[0] == ("load", 0, 1)
    assert loads[-1][1] == loads[-1][2] > 1, loads          # ends complete, N / N of the last stage seen
    middle = loads[1:-1]
    assert any(s == "load" and t > 1 for s, _, t in middle), loads          # layers read, as they were
    assert [x for x in middle if x[0] == "load"] == sorted(x for x in middle if x[0] == "load")
    assert events[-1].kind == "done"
    svc.close()

    bad = Services(settings.with_(model=str(tmp_path / "missing"), data_dir=tmp_path / "d2"))
    ws = bad.workspaces.create("w")
    bad.documents.add(ws.id, two_pages)
    with pytest.raises(EngineUnavailable):
        list(bad.qa.ask(ws.id, "What is a t-test?"))
    bad.close()


def test_a_document_read_in_part_is_not_counted_as_cached_tokens(tmp_path, two_pages):
    """Over the context, an answer reads the pages it picks for its question; the document is then
    flagged cached as that answer read it, but the gauge's cached tokens count only documents read
    whole (it said all of the document's tokens were cached)."""
    from engine.testing import write_tiny_checkpoint
    # 1,024: page 1 is read, page 2 left out (at 512 neither page was read: not "in part")
    ckpt = write_tiny_checkpoint(tmp_path / "small", seed=0, max_position_embeddings=1024)
    svc = Services(Settings.from_env(data_dir=tmp_path / "d", model=str(ckpt), engine="jamba",
                                     device="cpu", max_new_tokens=4))
    try:
        ws = svc.workspaces.create("w")
        svc.documents.add(ws.id, two_pages)
        answer = svc.qa.answer(ws.id, "What is a t-test?")
        assert answer.timings["omitted"], "the document was meant not to fit"
        (doc,) = svc.documents.list(ws.id)
        budget = svc.budget(ws.id)
        assert [o["pages"] for o in answer.timings["omitted"]] == [[2]]
        assert doc.cached and doc.tokens > budget.max == 1024 and not budget.fits
        assert budget.cached == 0
    finally:
        svc.close()


def test_the_gauge_says_fits_exactly_when_an_answer_leaves_nothing_out(tmp_path, two_pages):
    """The gauge counted the pages' text against the whole context; the prompt also holds the
    instructions, each document's title and page markers, the question turn and the answer's
    budget. A context a little smaller than all that showed "Everything fits" while every
    answer left pages out."""
    from engine.testing import write_tiny_checkpoint

    def services(name: str, context: int) -> Services:
        ckpt = write_tiny_checkpoint(tmp_path / name, seed=0, max_position_embeddings=context)
        return Services(Settings.from_env(data_dir=tmp_path / name / "d", model=str(ckpt), engine="jamba",
                                          device="cpu", max_new_tokens=8))

    probe = services("probe", 65536)
    try:
        ws = probe.workspaces.create("w")
        probe.documents.add(ws.id, two_pages)
        (doc,) = probe.documents.load(ws.id)[1]
        text_tokens = sum(probe.answerer.count_tokens(p.text) for p in doc.pages)
        budget = probe.budget(ws.id)
        needed = budget.used + budget.reserved         # the prompt with an empty question, and the answer
        assert budget.fits and budget.used > text_tokens and budget.reserved > 8
    finally:
        probe.close()
    assert needed - 1 > text_tokens                    # the old gauge's "fits" below needed
    for context, fits in ((needed - 1, False), (needed + 16, True)):
        svc = services(f"ctx{context}", context)
        try:
            ws = svc.workspaces.create("w")
            svc.documents.add(ws.id, two_pages)
            budget = svc.budget(ws.id)
            answer = svc.qa.answer(ws.id, "t-test?")
            assert (budget.fits, budget.used, budget.max) == (fits, needed - budget.reserved, context)
            assert bool(answer.timings.get("omitted")) is not fits, (context, answer.timings.get("omitted"))
        finally:
            svc.close()
