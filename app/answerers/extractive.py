"""The engine used when no model is configured: BM25 over page passages, answering with the
best passages quoted verbatim and cited. No language model, works offline at once."""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import bm25s
import bm25s.stopwords as sw

from app.answerers.base import AnswerEvent, AnswerRequest
from app.textutil import collapse_ws, norm, passage_spans
from ingest.normalize import CJK, ScriptStemmer, search_form
from ingest.prompt import citation_labels

if TYPE_CHECKING:
    from ingest import Document

TOP_K = 3
INDEX_CACHE = 8                      # document sets whose index is kept in memory
LABEL = "Extractive answer (no language model is configured): the passages that best match " \
        "your question, quoted verbatim."
_WORD = re.compile(r"\w+", re.U)
_TOKEN = re.compile(f"{CJK.pattern}|(?:(?!{CJK.pattern})\\w)+")
_STOP = frozenset(sw.STOPWORDS_EN) | frozenset(sw.STOPWORDS_FRENCH) | frozenset(sw.STOPWORDS_GERMAN) \
    | frozenset(search_form(w) for w in sw.STOPWORDS_RUSSIAN)
_stemmer = ScriptStemmer()


_DOTTED = re.compile(r"\w+(?:\.\w+)+", re.U)     # version numbers, decimals: "1.1", "0.05"


def terms(text: str) -> list[str]:
    """Index terms: normalized words without diacritics, stop words dropped, stemmed (Arabic,
    Russian, Greek by their own Snowball stemmer, the rest English);
    dotted numbers such as "1.1" are also kept whole so a version or value matches as such."""
    text = search_form(norm(text))
    words = [w for w in _WORD.findall(text) if w not in _STOP and (len(w) > 1 or w.isdigit() or CJK.match(w))]
    dotted = [d for d in _DOTTED.findall(text) if any(c.isdigit() for c in d)]
    return _stemmer.stemWords(words) + dotted


@dataclass(frozen=True)
class Passage:
    doc: int            # 1-based document position
    page: int           # physical page number
    label: str | None
    start: int          # offsets in the page text
    end: int
    text: str


class _Index:
    def __init__(self, documents: Sequence["Document"]):
        self.passages: list[Passage] = []
        for d, doc in enumerate(documents, start=1):
            for page in doc.pages:
                for span in passage_spans(page.text):
                    self.passages.append(Passage(d, page.number, page.label, span.start, span.end,
                                                 page.text[span.start:span.end]))
        self.bm25 = bm25s.BM25()
        corpus = [terms(p.text) for p in self.passages]
        self.empty = not any(corpus)
        if not self.empty:
            self.bm25.index(corpus, show_progress=False)

    def search(self, query_terms: list[str], k: int) -> list[tuple[Passage, float]]:
        if self.empty or not query_terms or not self.passages:
            return []
        k = min(k, len(self.passages))
        ids, scores = self.bm25.retrieve([query_terms], k=k, show_progress=False)
        return [(self.passages[int(i)], float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(self, top_k: int = TOP_K):
        self.top_k = top_k
        self._indexes: OrderedDict[tuple, _Index] = OrderedDict()
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {"engine": self.name, "model": None, "device": "cpu", "dtype": None,
                "max_context": None, "fingerprint": "bm25-v2"}

    def count_tokens(self, text: str) -> int:
        """Words; each Chinese, Japanese or Korean letter counts as one (those scripts put no space
        between words, so a sentence was one "token")."""
        return len(_TOKEN.findall(text))

    def _index(self, documents: Sequence["Document"]) -> tuple[_Index, bool]:
        key = tuple((d.content_hash, d.text_hash) for d in documents)
        with self._lock:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key], True
        index = _Index(documents)
        with self._lock:
            self._indexes[key] = index
            while len(self._indexes) > INDEX_CACHE:
                self._indexes.popitem(last=False)
        return index, False

    def answer(self, req: AnswerRequest) -> Iterator[AnswerEvent]:
        t0 = time.monotonic()
        n_pages = sum(len(d.pages) for d in req.documents)
        yield AnswerEvent("progress", done=0, total=n_pages, stage="retrieve")
        index, reused = self._index(req.documents)
        query = terms(req.question)
        if len(query) < 3:      # a terse follow-up: borrow the previous question's words
            prev = [t for role, t in reversed(req.history) if role == "user"][:1]
            query += terms(prev[0]) if prev else []
        hits = index.search(query, self.top_k)
        yield AnswerEvent("progress", done=n_pages, total=n_pages, stage="retrieve")
        if hits:
            parts = [LABEL, ""]
            for i, (p, _score) in enumerate(hits, start=1):
                doc = req.documents[p.doc - 1]
                shown = dict(zip((pg.number for pg in doc.pages), citation_labels(doc.pages)))
                parts.append(f"{i}. \u201c{collapse_ws(p.text)}\u201d [doc {p.doc}, p. {shown[p.page]}]")
            text = "\n".join(parts)
        else:
            text = f"{LABEL}\n\nNo passage in these documents matches the question."
        ttft = None
        sent: list[str] = []
        for piece in re.findall(r"\S+\s*|\s+", text):
            if req.cancel is not None and req.cancel.is_set():
                break
            if ttft is None:
                ttft = time.monotonic() - t0
            sent.append(piece)
            yield AnswerEvent("token", text=piece)
        elapsed = time.monotonic() - t0
        yield AnswerEvent("done", text="".join(sent), timings={
            "cached_tokens": 0, "prefilled_tokens": 0, "ttft_s": round(ttft or elapsed, 4),
            "tokens_per_s": None, "index_reused": reused, "passages": len(index.passages),
            "omitted": []})
