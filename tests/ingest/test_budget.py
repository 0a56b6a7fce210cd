"""Token budget: exact or estimated counts, BM25 page choice in reading order, exact omissions."""
from __future__ import annotations

import pytest

from ingest.budget import context_budget, count_pages, estimate_counter, fit_documents, tokenizer_counter
from ingest.prompt import PromptBuilder


def test_everything_fits(read):
    docs = [read("pari-refcard.pdf"), read("sexam-ar.pdf")]
    result = fit_documents(docs, "anything", budget=1_000_000)
    assert result.fits and result.strategy == "all" and result.estimated
    assert [len(d.pages) for d in result.documents] == [4, 8]
    assert result.tokens == result.total_tokens
    assert "fit" in result.summary()


def test_relevant_pages_kept_in_reading_order_and_omissions_exact(read):
    docs = [read("r-intro.pdf"), read("gnuplot.pdf")]
    question = "Which terminal runs on the DomTerm terminal emulator?"
    result = fit_documents(docs, question, budget=8_000)
    assert not result.fits and result.strategy == "bm25" and result.estimated
    assert result.tokens <= 8_000
    kept = {(d, p.number) for d, doc in enumerate(result.documents) for p in doc.pages}
    assert (1, 250) in kept                                   # the page that answers it
    for doc in result.documents:                              # reading order
        assert [p.number for p in doc.pages] == sorted(p.number for p in doc.pages)
    omitted = {(o.doc - 1, n) for o in result.omitted for n in o.pages}
    everything = {(d, p.number) for d, doc in enumerate(docs) for p in doc.pages}
    assert kept | omitted == everything and not kept & omitted
    page_tokens = result.page_tokens
    for o in result.omitted:
        assert o.tokens == sum(page_tokens[o.doc - 1][n - 1] for n in o.pages)
    assert "gnuplot.pdf" in result.summary() and "left out" in result.summary()
    assert f"left out ~{result.omitted_tokens:,} tokens to fit {result.budget:,}:" in result.summary()
    assert result.omitted_tokens >= 1000 and "," in result.summary().split(" tokens")[0]   # 18,475 not 18475


def test_a_budget_no_page_fits_in_says_so(read):
    """A budget smaller than every page (a long document on a small model) keeps no page: the summary
    said the pages kept were "chosen by relevance" when there were none."""
    docs = [read("pari-refcard.pdf")]
    smallest = min(fit_documents(docs, "x", budget=1_000_000).page_tokens[0])
    result = fit_documents(docs, "arithmetic functions", budget=smallest // 2)
    assert not any(d.pages for d in result.documents)
    summary = result.summary()
    assert f"no page was kept: the smallest alone needs ~{smallest:,} tokens" in summary
    assert "relevance" not in summary


def test_exact_counts_with_a_tokenizer(read, tiny_tokenizer):
    doc = read("sexam-ar.pdf")
    counts = count_pages([doc], tokenizer_counter(tiny_tokenizer))[0]
    page = doc.page(6)
    body = f"[p. 6]\n{page.text}\n\n"
    assert counts[5] == len(tiny_tokenizer.encode(body, add_special_tokens=False))
    est = count_pages([doc])[0]
    assert est[5] == estimate_counter([body])[0]
    result = fit_documents([doc], "ترقيم الصفحات", budget=400, tokenizer=tiny_tokenizer)
    assert not result.estimated and not result.fits
    assert 6 in [p.number for p in result.documents[0].pages]


def test_fitted_documents_build_a_prompt_within_budget(read, tiny_tokenizer):
    docs = [read("gnuplot.pdf"), read("debian-history-fr.pdf")]
    budget = context_budget(16_384)
    result = fit_documents(docs, "voxel grid vgrid", budget, tokenizer=tiny_tokenizer)
    seg = PromptBuilder(tiny_tokenizer).build(result.documents, "voxel grid vgrid")
    assert sum(map(len, seg.documents)) <= budget
    assert "not included" in seg.texts[1]


def test_documents_left_unread_are_counted_in_the_budget(tiny_tokenizer):
    """A document none of whose pages is kept still stands in the prompt (its title and a "pages
    left out" line). Those frames were not counted, so with many documents the prompt came out
    hundreds of tokens over the budget (the answerer had to shrink it and try again, up to 4 times)."""
    from ingest.model import Document, Page

    docs = [Document(title=f"Memo {i} on the quarterly budget review", filename=f"memo-{i}.txt", kind="txt",
                     unit="part", pages=[Page(n, f"part {n}", f"Memo {i}, part {n}: the meeting moved to "
                                                           f"room {i * 10 + n}. " * 12) for n in (1, 2)],
                     content_hash=f"{i:064x}", text_hash=f"{i:064x}") for i in range(80)]
    builder = PromptBuilder(tiny_tokenizer)
    for budget in (12_000, 16_000, 24_000):
        result = fit_documents(docs, "Which room did memo 7's meeting move to?", budget, tokenizer=tiny_tokenizer)
        assert not result.fits and any(d.pages for d in result.documents)
        seg = builder.build(result.documents, "Which room did memo 7's meeting move to?")
        assert sum(map(len, seg.documents)) <= budget
        assert result.tokens <= budget


def test_context_budget():
    assert context_budget(262_144) == 262_144 - 1024 - 1024 - 256
    with pytest.raises(ValueError):
        context_budget(1000)


def _kept(result) -> list[list[int]]:
    return [[p.number for p in d.pages] for d in result.documents]


def test_an_earlier_selection_is_kept_when_it_holds_the_new_questions_best_pages(read):
    docs = [read("r-intro.pdf"), read("gnuplot.pdf")]
    first = fit_documents(docs, "Which terminal runs on the DomTerm terminal emulator?", budget=8_000, reserve=500)
    assert first.strategy == "bm25" and first.tokens <= 8_000 - 500      # the reserve is left free
    earlier = _kept(first)
    # a follow-up whose best pages the earlier selection already holds: the same pages, in full budget
    again = fit_documents(docs, "DomTerm terminal emulator", budget=8_000, prefer=earlier, reserve=500)
    assert again.strategy == "kept" and _kept(again) == earlier
    assert "earlier question" in again.summary()
    assert again.omitted_tokens == first.omitted_tokens
    # a question about something the earlier pages do not hold: chosen afresh
    other = fit_documents(docs, "How do I read data from a file with read.table?", budget=8_000, prefer=earlier)
    assert other.strategy == "bm25" and _kept(other) != earlier
    fresh = fit_documents(docs, "How do I read data from a file with read.table?", budget=8_000)
    assert _kept(other) == _kept(fresh)
    # an earlier selection that no longer fits (a longer conversation) is not kept
    tight = fit_documents(docs, "DomTerm terminal emulator", budget=first.tokens - 200, prefer=earlier)
    assert tight.strategy == "bm25" and tight.tokens <= first.tokens - 200


@pytest.mark.parametrize("prefer", [
    [[1, 2]],                       # another number of documents
    [[1, 2], [9999]],               # a page the document does not have
    [["1"], [2]],                   # not page numbers
])
def test_an_earlier_selection_that_does_not_describe_these_documents_is_ignored(read, prefer):
    docs = [read("r-intro.pdf"), read("gnuplot.pdf")]
    question = "Which terminal runs on the DomTerm terminal emulator?"
    result = fit_documents(docs, question, budget=8_000, prefer=prefer)
    assert result.strategy == "bm25" and _kept(result) == _kept(fit_documents(docs, question, budget=8_000))


def test_token_counts_are_remembered_per_tokenizer(read, tiny_tokenizer):
    """A second question on the same set counts no page again; another tokenizer counts its own."""
    class Counting:
        def __init__(self, tok):
            self.tok, self.calls = tok, 0

        def encode(self, text, add_special_tokens=False):
            self.calls += 1
            return self.tok.encode(text, add_special_tokens=add_special_tokens)

    doc = read("hsaur-inference.pdf")
    a, b = Counting(tiny_tokenizer), Counting(tiny_tokenizer)
    first = count_pages([doc], tokenizer_counter(a))[0]
    assert a.calls == 15 and first == count_pages([doc], tokenizer_counter(tiny_tokenizer))[0]
    assert count_pages([doc], tokenizer_counter(a))[0] == first and a.calls == 15
    assert count_pages([doc], tokenizer_counter(b))[0] == first and b.calls == 15


def test_a_set_is_indexed_once_for_several_questions(read, monkeypatch):
    from llama_index.retrievers.bm25 import BM25Retriever

    import ingest.budget as budget
    docs = [read("r-intro.pdf"), read("hsaur-inference.pdf")]
    built = []
    real = BM25Retriever.from_defaults.__func__

    def counting(cls, *args, **kwargs):
        built.append(1)
        return real(cls, *args, **kwargs)
    monkeypatch.setattr(BM25Retriever, "from_defaults", classmethod(counting))
    monkeypatch.setattr(budget, "_INDEXES", type(budget._INDEXES)())
    questions = ["How do I read a data frame?", "Which test compares two means?"]
    first = [fit_documents(docs, q, budget=6_000) for q in questions]
    assert len(built) == 1                                            # one index, two questions
    budget._INDEXES.clear()
    again = [fit_documents(docs, q, budget=6_000) for q in questions]   # the same choice from a new index
    assert len(built) == 2 and [_kept(r) for r in again] == [_kept(r) for r in first]
    other = [docs[0], read("pari-refcard.pdf")]                       # another set: its own index
    fit_documents(other, questions[0], budget=6_000)
    assert len(built) == 3


def test_preload_retrieval_imports_the_retriever_in_the_background():
    """The server calls it at start-up so the first question on a too-large set does not wait ~2 s
    for llama-index's import; a fresh interpreter shows that it imports exactly that."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            "from ingest.budget import preload_retrieval\n"
            "assert 'llama_index.retrievers.bm25' not in sys.modules\n"
            "t = preload_retrieval()\n"
            "assert t.daemon\n"
            "t.join(120)\n"
            "assert 'llama_index.retrievers.bm25' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


def test_the_summary_stays_one_short_line_with_many_documents():
    """With hundreds of documents over the budget it named every one (2,860 characters for 62)."""
    from ingest.budget import SUMMARY_DOCUMENTS
    from ingest.model import Document, Page

    docs = [Document(title=f"Memo {i}", filename=f"memo-{i}.txt", kind="txt", unit="part",
                     pages=[Page(1, "part 1", f"Memo {i}: the budget meeting moved to room {i}. " * 20)],
                     content_hash=f"{i:064x}", text_hash=f"{i:064x}") for i in range(60)]
    result = fit_documents(docs, "Which room did meeting 7 move to?", budget=2_000)
    assert len(result.omitted) > SUMMARY_DOCUMENTS
    unread = sum(not d.pages for d in result.documents)
    summary = result.summary()
    assert summary.count("doc ") == SUMMARY_DOCUMENTS - 1 and len(summary) < 600, summary
    assert f"and {len(result.omitted) - SUMMARY_DOCUMENTS + 1} more documents ({unread} of the " \
           f"{len(result.omitted)} with pages left out were not read at all)" in summary


@pytest.mark.parametrize("page, question", [
    ("Send your résumé to the hiring committee before Friday.", "resume?"),
    ("The conference takes place in Istanbul next spring.", "İSTANBUL"),
    ("عاصمة مصر هي القاهرة.", "مَا هِيَ عَاصِمَةُ مِصْرَ"),
    ("بدأ الامتحـــان اليوم.", "الامتحان؟"),                               # Arabic tatweel
    ("تأسست عام ١٩٢٨.", "1928"),                                           # Arabic-Indic digits
    ("Библиотека открыта.", "библиотеки"),                                  # Russian inflection
    ("المدرسة مغلقة.", "مدرسة"),                                            # Arabic article
])
def test_pages_are_chosen_with_or_without_diacritics(page, question):
    """A question that writes a word with other diacritics than the page kept the first page instead."""
    from ingest.model import Document, Page

    texts = ["The weather report mentions rain and wind over the bay. " * 3, page * 3,
             "The library opens at nine and closes at six on weekdays. " * 3]
    doc = Document(title="notes", filename="notes.txt", kind="txt", unit="page",
                   pages=[Page(i, None, t) for i, t in enumerate(texts, start=1)],
                   content_hash="0" * 64, text_hash=str(hash(tuple(texts))))
    result = fit_documents([doc], question, budget=90)
    assert [p.number for p in result.documents[0].pages] == [2]


def test_pages_are_chosen_for_a_chinese_question():
    """Chinese has no spaces between words: a whole run of letters was one word, nothing matched and
    the first pages were kept."""
    from ingest.model import Document, Page

    texts = ["天气预报说明天会下雨，风很大。" * 3, "东京是日本的首都，人口约一千四百万。" * 3,
             "图书馆早上九点开门，晚上六点关门。" * 3]
    doc = Document(title="notes", filename="notes.txt", kind="txt", unit="page",
                   pages=[Page(i, None, t) for i, t in enumerate(texts, start=1)],
                   content_hash="0" * 64, text_hash=str(hash(tuple(texts))))
    result = fit_documents([doc], "日本的首都是哪里？", budget=90)
    assert [p.number for p in result.documents[0].pages] == [2]


def test_a_question_fitted_again_is_ranked_once(read, monkeypatch):
    """The answerer fits a question again with a smaller budget when its prompt came out longer than
    the estimate (4 tries for a set of 40 documents): each try retrieved every page of the set again
    (a second each for 4,000 pages). The ranking of the question is kept with the set's index."""
    from llama_index.retrievers.bm25 import BM25Retriever

    import ingest.budget as budget
    docs = [read("r-intro.pdf"), read("hsaur-inference.pdf")]
    retrieved = []
    real = BM25Retriever.retrieve

    def counting(self, query):
        retrieved.append(query)
        return real(self, query)
    monkeypatch.setattr(BM25Retriever, "retrieve", counting)
    monkeypatch.setattr(budget, "_INDEXES", type(budget._INDEXES)())
    question = "How do I read a data frame?"
    tries = [fit_documents(docs, question, budget=b) for b in (6_000, 5_500, 5_000)]
    assert len(retrieved) == 1
    budget._INDEXES.clear()
    fresh = [fit_documents(docs, question, budget=b) for b in (6_000, 5_500, 5_000)]
    assert [_kept(r) for r in fresh] == [_kept(r) for r in tries]      # the same choices as ranked afresh
    assert len({tuple(map(tuple, _kept(r))) for r in tries}) == 3      # (three different budgets)
    fit_documents(docs, "Which test compares two means?", budget=6_000)
    assert len(retrieved) == 3                                         # another question: ranked
