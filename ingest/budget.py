"""Token budget: count tokens per document and page, and when a set does not fit the model's
context, keep the pages most relevant to the question (BM25, llama-index) in reading order and
report exactly what was left out. Nothing is ever cut silently.

An earlier selection can be preferred (`prefer`): when it still fits and its best pages match the
new question nearly as well as a fresh choice's would (BM25), it is kept as it was, so the prompt's
documents are the same as last time and their stored states serve the new question (no second
reading of the set).
"""
from __future__ import annotations

import hashlib
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.model import Document, page_ranges
from ingest.normalize import CJK, ScriptStemmer, search_form
from ingest.prompt import DocumentInput, citation_labels, document_title

CHARS_PER_TOKEN_ESTIMATE = 4.0     # UTF-8 bytes per token, used without a tokenizer (an estimate)
RESERVE_QUESTION_TOKENS = 1024     # question + conversation turns
RESERVE_ANSWER_TOKENS = 1024       # the answer
RESERVE_FRAME_TOKENS = 256         # preamble (system prompt) and the documents block's frame
# Counted with the same counter as the pages: a document's frame and a left-out-pages line.
_FRAME = "\n\n## Document ID: {n}\nTitle: {title}\nText: "
_GAP = "[... pages 9999-9999 not included ...]\n\n"
# An earlier selection serves a new question when its COVER_PAGES best pages for that question match
# it (BM25 score, summed) at least KEEP_RELEVANCE times as well as those of a fresh selection.
COVER_PAGES = 5
KEEP_RELEVANCE = 0.75

Counter = Callable[[list[str]], list[int]]


# Token counts of texts already counted, per tokenizer (by sha1 of the text): a question on a set
# larger than the context counts every page again, and a follow-up on the same set needs no new count.
_COUNTS: "weakref.WeakKeyDictionary[Any, OrderedDict[bytes, int]]" = weakref.WeakKeyDictionary()
_COUNTS_KEPT = 500_000          # the last texts counted, per tokenizer (~50 MB at most)
_COUNTS_LOCK = threading.Lock()


# BM25 indexes of the last page sets ranked (keyed by their texts): the next question on the same
# set, the usual case, is ranked without indexing every page again. With each, the scores of its last
# questions: the answerer fits a question again when its estimate was short, and gets the ranking of
# the first try (retrieving every page of a large set takes a second).
_INDEXES: "OrderedDict[bytes, tuple[Any, OrderedDict[str, dict[tuple[int, int], float]]]]" = OrderedDict()
_INDEXES_KEPT = 2
_QUESTIONS_KEPT = 4
# The retriever's words (its default pattern) and a Chinese / Japanese / Korean letter standing alone
# (search_form writes the rest of such text as two-letter words).
_TOKEN_PATTERN = r"(?u)\b\w\w+\b|" + CJK.pattern
_INDEX_LOCK = threading.Lock()


class KnownCounts(Protocol):
    """Token counts kept elsewhere (the state store), by sha1 of the text, for one tokenizer."""

    def get(self, digests: Sequence[bytes]) -> dict[bytes, int]: ...

    def put(self, counts: dict[bytes, int]) -> None: ...


def tokenizer_counter(tokenizer: Any, stored: KnownCounts | None = None) -> Counter:
    """Exact counts with a transformers tokenizer (its fast backend in one batch when it has one:
    `encode_batch_fast`, without character offsets, 1.00-1.15x `encode_batch` in bench/page_counts.py);
    counts of texts this tokenizer has counted before are remembered, not recomputed: in memory, and
    in `stored` (of this tokenizer, see `tokenizer_digest`) for other processes."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch   # (tokenizers < 0.21)

        def count(texts: list[str]) -> list[int]:
            return [len(e.ids) for e in encode(texts, add_special_tokens=False)]
    else:
        def count(texts: list[str]) -> list[int]:
            return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    try:
        with _COUNTS_LOCK:
            known = _COUNTS.setdefault(tokenizer, OrderedDict())
    except TypeError:                               # not weak-referenceable: count every time
        return count

    def remembered(texts: list[str]) -> list[int]:
        keys = [hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        with _COUNTS_LOCK:
            out = [known.get(k) for k in keys]
        missing = todo = [j for j, n in enumerate(out) if n is None]
        if todo and stored is not None:
            found = stored.get(list({keys[j] for j in todo}))
            for j in todo:
                out[j] = found.get(keys[j])
            todo = [j for j in todo if out[j] is None]
        if todo:
            for j, n in zip(todo, count([texts[j] for j in todo])):
                out[j] = n
            if stored is not None:
                stored.put({keys[j]: out[j] for j in todo})
        if missing:
            with _COUNTS_LOCK:
                for j in missing:
                    known[keys[j]] = out[j]
                while len(known) > _COUNTS_KEPT:
                    known.popitem(last=False)
        return out
    return remembered


def tokenizer_digest(tokenizer: Any) -> str | None:
    """Names a tokenizer by what it does (its fast backend's whole definition: vocabulary, merges,
    normalizer, added tokens), for counts kept across processes; None without a fast backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def estimate_counter(texts: list[str]) -> list[int]:
    """Token estimate without a tokenizer: UTF-8 bytes / 4 (BPE vocabularies average 3-5 bytes per
    token on prose; non-Latin scripts use more bytes per letter and also more tokens)."""
    return [math.ceil(len(t.encode("utf-8")) / CHARS_PER_TOKEN_ESTIMATE) for t in texts]


def context_budget(max_context: int, reserve_question: int = RESERVE_QUESTION_TOKENS,
                   reserve_answer: int = RESERVE_ANSWER_TOKENS, reserve_frame: int = RESERVE_FRAME_TOKENS) -> int:
    """Tokens left for the documents: the model's context (config max_position_embeddings) less
    the reserves for the prompt frame, the question and conversation, and the answer."""
    budget = max_context - reserve_question - reserve_answer - reserve_frame
    if budget <= 0:
        raise ValueError(f"context of {max_context} tokens leaves no room for documents after the reserves")
    return budget


@dataclass
class Omission:
    """Pages of one document that were left out."""

    doc: int                 # 1-based position in the document list (as in [doc N])
    filename: str
    pages: list[int]         # 1-based physical page numbers
    tokens: int              # their tokens (estimated when `FitResult.estimated`)


SUMMARY_DOCUMENTS = 8        # a summary names at most this many documents with left-out pages


@dataclass
class FitResult:
    documents: list[DocumentInput]       # every document, with the pages kept in reading order
    budget: int
    tokens: int                          # tokens of the kept pages and frames
    total_tokens: int                    # tokens the whole set would need
    estimated: bool                      # True when counted without a tokenizer
    omitted: list[Omission] = field(default_factory=list)
    page_tokens: list[list[int]] = field(default_factory=list)   # per document, per page
    strategy: str = "all"                # "all" (everything fits), "bm25", or "kept" (the preferred
                                         # earlier selection, which serves this question nearly as well)

    @property
    def fits(self) -> bool:
        return not self.omitted

    @property
    def kept_pages(self) -> list[list[int]]:
        """Per document, the physical page numbers kept: what `fit_documents(prefer=...)` takes."""
        return [[p.number for p in d.pages] for d in self.documents]

    @property
    def omitted_tokens(self) -> int:
        return sum(o.tokens for o in self.omitted)

    def summary(self) -> str:
        """One line for the user: what was left out, or that everything fits."""
        approx = "~" if self.estimated else ""
        if self.fits:
            return f"all {len(self.documents)} documents fit ({approx}{self.tokens:,} of {self.budget:,} tokens)"
        parts = [f"doc {o.doc} ({o.filename}): {page_ranges(o.pages)}" for o in self.omitted]
        if len(parts) > SUMMARY_DOCUMENTS:          # one line, also with hundreds of documents
            unread = sum(not self.documents[o.doc - 1].pages for o in self.omitted)
            rest = len(parts) - SUMMARY_DOCUMENTS + 1
            parts = parts[:SUMMARY_DOCUMENTS - 1] + [
                f"and {rest} more documents ({unread} of the {len(parts)} with pages left out were not read at all)"]
        if not any(d.pages for d in self.documents):        # not one page fits: say so, and why
            smallest = min((t for pages in self.page_tokens for t in pages), default=0)
            why = f"no page was kept: the smallest alone needs {approx}{smallest:,} tokens"
        else:
            why = "the pages kept were " + (
                "chosen for an earlier question; they match this one nearly as well as a fresh choice"
                if self.strategy == "kept" else "chosen by relevance to the question")
        return (f"left out {approx}{self.omitted_tokens:,} tokens to fit {self.budget:,}: " + "; ".join(parts) +
                f" ({why})")


def page_bodies(doc: Document | DocumentInput) -> list[str]:
    """Each page's body as the prompt shows it ("[p. 5]\\n" + text + separator): what `count_pages`
    counts (the marker depends on the whole document's labels)."""
    return [f"[p. {c}]\n{p.text}\n\n" for c, p in zip(citation_labels(doc.pages), doc.pages)]


def count_pages(documents: Sequence[Document | DocumentInput], counter: Counter | None = None) -> list[list[int]]:
    """Tokens of each page's body as the prompt shows it (`page_bodies`)."""
    counter = counter or estimate_counter
    bodies: list[str] = []
    sizes: list[int] = []
    for doc in documents:
        bodies.extend(page_bodies(doc))
        sizes.append(len(doc.pages))
    flat = counter(bodies) if bodies else []
    out, pos = [], 0
    for n in sizes:
        out.append(flat[pos: pos + n])
        pos += n
    return out


def document_tokens(doc: Document | DocumentInput, counter: Counter | None = None) -> int:
    """Tokens `doc` takes in a prompt as `fit_documents` counts it: its frame (as document 1),
    page markers and text."""
    doc = doc if isinstance(doc, DocumentInput) else DocumentInput.from_document(doc)
    counter = counter or estimate_counter
    return counter([_FRAME.format(n=1, title=document_title(doc, 1))])[0] + sum(count_pages([doc], counter)[0])


def reserved_tokens(max_new_tokens: int) -> int:
    """Context tokens `context_budget` keeps from the documents when the answer may take
    `max_new_tokens`."""
    return RESERVE_QUESTION_TOKENS + RESERVE_FRAME_TOKENS + max_new_tokens


def fit_documents(documents: Sequence[Document | DocumentInput], question: str, budget: int,
                  counter: Counter | None = None, tokenizer: Any = None,
                  prefer: Sequence[Sequence[int]] | None = None, reserve: int = 0) -> FitResult:
    """Fit `documents` into `budget` tokens. Give `tokenizer` (or an exact `counter`) for real
    counts; without one, tokens are estimated and the result says so. `prefer`: per document, the
    physical page numbers an earlier question kept; kept again (strategy "kept") when they fit and
    match this question at least KEEP_RELEVANCE times as well as a fresh selection (the BM25 scores
    of each one's COVER_PAGES best pages, summed).
    `reserve`: tokens a fresh selection leaves unused, at most a quarter of the budget (so that
    follow-up turns can keep it)."""
    if counter is None and tokenizer is not None:
        counter = tokenizer_counter(tokenizer)
    estimated = counter is None
    counter = counter or estimate_counter
    docs = [d if isinstance(d, DocumentInput) else DocumentInput.from_document(d) for d in documents]
    page_tokens = count_pages(docs, counter)
    frames = [_FRAME.format(n=i, title=document_title(d, i)) for i, d in enumerate(docs, start=1)]
    overheads = counter(frames) if docs else []
    gap_tokens = counter([_GAP])[0]
    total = sum(map(sum, page_tokens)) + sum(overheads)
    if total <= budget:
        return FitResult(docs, budget, total, total, estimated, [], page_tokens, "all")

    # every document stays in the prompt, a page of it kept or not: its frame and one "not included" line
    fixed = sum(overheads) + gap_tokens * len(docs)
    ranked, scores = _rank_pages(docs, question)
    keep = _select(ranked, page_tokens, gap_tokens, budget - fixed - max(0, min(reserve, budget // 4)))
    strategy = "bm25"
    earlier = _pages_by_number(docs, prefer) if prefer is not None else None
    if earlier and fixed + _cost(earlier, page_tokens, gap_tokens) <= budget and \
            _relevance(earlier, scores) >= KEEP_RELEVANCE * _relevance(keep, scores):
        keep, strategy = earlier, "kept"
    kept_docs, omitted, used = [], [], 0
    for d_index, (doc, tokens) in enumerate(zip(docs, page_tokens)):
        chosen = sorted(keep.get(d_index, ()))
        kept_docs.append(DocumentInput(doc.title, [doc.pages[i] for i in chosen], doc.filename,
                                       doc.page_count or len(doc.pages)))
        gaps = _gaps(chosen, len(tokens)) if chosen else int(bool(tokens))
        used += overheads[d_index] + sum(tokens[i] for i in chosen) + gap_tokens * gaps
        dropped = [i for i in range(len(doc.pages)) if i not in keep.get(d_index, set())]
        if dropped:
            omitted.append(Omission(d_index + 1, doc.filename or doc.title, [doc.pages[i].number for i in dropped],
                                    sum(tokens[i] for i in dropped)))
    return FitResult(kept_docs, budget, used, total, estimated, omitted, page_tokens, strategy)


def _select(order: list[tuple[int, int]], page_tokens: list[list[int]], gap_tokens: int,
            budget: int) -> dict[int, set[int]]:
    """Greedy by relevance: pages in `order` (BM25, then reading order for pages without a match),
    each taken if it still fits with one more gap marker (`budget`: what the documents' frames and
    their first gap markers leave)."""
    keep: dict[int, set[int]] = {}
    used = 0
    for d, i in order:
        cost = page_tokens[d][i] + gap_tokens      # each kept page may open one more gap line
        if used + cost <= budget:
            keep.setdefault(d, set()).add(i)
            used += cost
    return keep


def document_set_key(documents: Sequence[Any], salt: str) -> str:
    """Names one document set, in order, for one model (`salt`): the key of its page selection."""
    h = hashlib.sha256(f"selection:{salt}".encode())
    for d in documents:
        text_hash = getattr(d, "text_hash", "") or hashlib.sha256(
            "\f".join(p.text for p in d.pages).encode("utf-8", "surrogatepass")).hexdigest()
        h.update(f"\0{d.title}\0{d.filename}\0{len(d.pages)}\0{text_hash}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _relevance(keep: dict[int, set[int]], scores: dict[tuple[int, int], float]) -> float:
    """How well `keep` serves the question: the sum of its COVER_PAGES best BM25 scores."""
    kept = sorted((scores.get((d, i), 0.0) for d, pages in keep.items() for i in pages), reverse=True)
    return sum(kept[:COVER_PAGES])


def _cost(keep: dict[int, set[int]], page_tokens: list[list[int]], gap_tokens: int) -> int:
    """Tokens the pages of `keep` add to the frames, counted as `_select` counts them."""
    return sum(page_tokens[d][i] + gap_tokens for d, pages in keep.items() for i in pages)


def _pages_by_number(docs: list[DocumentInput], numbers: Sequence[Sequence[int]]) -> dict[int, set[int]] | None:
    """Physical page numbers per document -> {doc index: page indexes}; None when they do not
    describe these documents (another count, or a page number a document does not have)."""
    if len(numbers) != len(docs):
        return None
    keep: dict[int, set[int]] = {}
    for d, (doc, wanted) in enumerate(zip(docs, numbers)):
        index = {p.number: i for i, p in enumerate(doc.pages)}
        try:
            chosen = {index[n] for n in wanted}
        except (KeyError, TypeError):
            return None
        if chosen:
            keep[d] = chosen
    return keep


def preload_retrieval() -> threading.Thread:
    """Import the page retriever (llama-index: ~2 s on this machine) in a background thread, so the
    first question on a set larger than the context does not wait for it. For long-running
    processes (the server); a one-shot `ask` imports it only when it needs it."""
    def load() -> None:
        try:
            from llama_index.core.schema import TextNode  # noqa: F401
            from llama_index.retrievers.bm25 import BM25Retriever  # noqa: F401
        except Exception:  # noqa: BLE001 -- the question that needs it reports the failure
            pass

    thread = threading.Thread(target=load, name="preload-retrieval", daemon=True)
    thread.start()
    return thread


def _rank_pages(docs: list[DocumentInput], question: str) -> tuple[list[tuple[int, int]], dict[tuple[int, int], float]]:
    """(doc index, page index) of every page, most relevant to `question` first, and the BM25 score
    of each page that matches the question (score > 0); pages without a match follow in reading order."""
    reading = [(d, i) for d, doc in enumerate(docs) for i in range(len(doc.pages))]
    if not question.strip():
        return reading, {}
    with _INDEX_LOCK:
        index = _page_index(docs)
        if index is None:
            return reading, {}
        retriever, asked = index
        scores = asked.pop(question, None)
        if scores is None:
            scores = {}
            for hit in retriever.retrieve(search_form(question)):
                if hit.score and hit.score > 0:
                    d, i = map(int, hit.node.node_id.split(":"))
                    scores[(d, i)] = float(hit.score)
        asked[question] = scores
        while len(asked) > _QUESTIONS_KEPT:
            asked.popitem(last=False)
    return list(scores) + [key for key in reading if key not in scores], dict(scores)


def index_pages(documents: Sequence[Document | DocumentInput]) -> None:
    """Build the BM25 index `fit_documents` ranks the pages of `documents` with (kept in memory with
    the last _INDEXES_KEPT), so that the first question on a set larger than the context does not
    index every page (4,079 pages: seconds). For the server, in the background."""
    docs = [d if isinstance(d, DocumentInput) else DocumentInput.from_document(d) for d in documents]
    with _INDEX_LOCK:
        _page_index(docs)


def _page_index(docs: list[DocumentInput]) -> tuple[Any, OrderedDict[str, dict[tuple[int, int], float]]] | None:
    """(the BM25 retriever of the pages with text of `docs`, the scores of its last questions),
    from _INDEXES or built and kept there; None when no page has text. Call with _INDEX_LOCK held."""
    texted = [(d, i) for d, doc in enumerate(docs) for i, page in enumerate(doc.pages) if page.text.strip()]
    if not texted:
        return None
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    key = hashlib.sha1()
    for d, i in texted:
        key.update(f"{d}:{i}:".encode())
        key.update(hashlib.sha1(docs[d].pages[i].text.encode("utf-8", "surrogatepass")).digest())
    retriever, asked = _INDEXES.pop(key.digest(), (None, OrderedDict()))
    if retriever is None:
        nodes = [TextNode(text=search_form(docs[d].pages[i].text), id_=f"{d}:{i}") for d, i in texted]
        retriever = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=len(nodes), language="en",
                                                token_pattern=_TOKEN_PATTERN, stemmer=ScriptStemmer())
    _INDEXES[key.digest()] = retriever, asked           # most recently used last
    while len(_INDEXES) > _INDEXES_KEPT:
        _INDEXES.popitem(last=False)
    return retriever, asked


def _gaps(chosen: list[int], n_pages: int) -> int:
    """Number of "[... not included ...]" markers the kept pages produce."""
    gaps, expected = 0, 0
    for i in chosen:
        if i > expected:
            gaps += 1
        expected = i + 1
    return gaps + (1 if chosen and expected < n_pages else 0)
