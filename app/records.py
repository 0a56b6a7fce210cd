"""Plain records the services return to the CLI, UI and API (no ORM objects leak out)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Sequence


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class _Record:
    def to_dict(self) -> dict:
        """JSON-ready dict (datetimes as ISO 8601 strings)."""
        def conv(v):
            if isinstance(v, datetime):
                return v.isoformat()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v
        return conv(asdict(self))


@dataclass
class WorkspaceInfo(_Record):
    id: int
    name: str
    created_at: datetime
    documents: int = 0      # how many documents it holds
    pages: int = 0


@dataclass
class DocumentInfo(_Record):
    id: int
    workspace_id: int
    index: int              # 1-based position in the workspace (the N of "[doc N, p. M]")
    filename: str           # the uploaded name (data only, never a path)
    title: str
    kind: str               # pdf / txt / md / html / docx
    unit: str               # page / section / part
    pages: int
    tokens: int | None      # under the current engine's tokenizer; None when unknown
    content_hash: str
    cached: bool            # the engine holds this document's state in the state store
    added_at: datetime
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)   # what reading it involved, e.g. pages read by OCR
    estimated: bool = False  # `tokens` is an estimate (UTF-8 bytes / 4) until the document is counted

    @property
    def extent(self) -> str:
        """"1 page", "12 sections", "3 parts"."""
        return f"{self.pages} {self.unit}{'' if self.pages == 1 else 's'}"

    @property
    def ocr_notes(self) -> list[str]:
        """The notes saying which pages were read by OCR ([] for a document with a text layer)."""
        return [note for note in self.notes if "OCR" in note]

    @property
    def reread_notes(self) -> list[str]:
        """The notes saying a newer reader read it again (and what changed), or could not."""
        return [note for note in self.notes if "newer reader" in note]


@dataclass
class FailedUploadInfo(_Record):
    """A file that could not be added while nobody was watching (see DocumentService.failures)."""

    id: int
    workspace_id: int
    filename: str
    reason: str             # ingest.IngestError's reason (not_pdf, encrypted ...) or the app error's kind
    message: str            # why, in plain words, without the file name
    failed_at: datetime


@dataclass
class PageInfo(_Record):
    document_id: int
    number: int             # 1-based physical page
    label: str | None       # printed page label
    text: str


@dataclass
class ChatInfo(_Record):
    id: int
    workspace_id: int
    title: str
    created_at: datetime
    messages: int = 0


@dataclass
class CitationInfo(_Record):
    doc: int                # N of "[doc N, p. M]" (1-based document position when asked)
    doc_id: int | None      # None when the cited document was removed since, or never existed
    filename: str
    page: int | None        # physical page number; None when the page does not exist
    page_label: str | None
    quote: str              # the cited sentence or quoted text
    verified: bool          # the quote was found on the cited page
    passage: str            # best supporting passage on that page ("" if the page is unknown)
    start: int | None       # character offsets of `passage` in the page text
    end: int | None
    score: float = 0.0      # 0..100 fuzzy match score of quote vs passage
    unit: str = "page"      # the document's unit: "page", "slide", "section" or "part"

    @property
    def place(self) -> str:
        """The cited unit as a reader names it: "p. 2" (the printed label of a page), "slide 3",
        "§3 Installation", "part 2"; "page not found" when the cited page does not exist."""
        if self.page is None:
            return f"{self.unit} not found"
        if self.unit == "page":
            return f"p. {self.page_label or self.page}"
        return self.page_label or f"{self.unit} {self.page}"

    def where(self, page_word: str = "p.") -> str:
        """`place` in full, for listings: a page by its physical number, then its printed label when
        that differs ('p. 8 (printed "2")'); other units as `place`."""
        if self.page is None or self.unit != "page":
            return self.place
        printed = f' (printed "{self.page_label}")' if self.page_label and self.page_label != str(self.page) else ""
        return f"{page_word} {self.page}{printed}"


@dataclass
class MessageInfo(_Record):
    id: int
    chat_id: int
    role: str               # "user" | "assistant"
    text: str
    citations: list[CitationInfo] = field(default_factory=list)
    timings: dict | None = None   # cached_tokens, prefilled_tokens, ttft_s, tokens_per_s, total_s, omitted...
    created_at: datetime | None = None
    engine: str | None = None
    reasoning: str | None = None  # a reasoning model's <think> block, apart from `text`


@dataclass
class BudgetInfo(_Record):
    used: int               # tokens of all documents as the prompt shows them (current engine's tokenizer)
    max: int | None         # engine context in tokens; None when unlimited (extractive)
    cached: int             # tokens whose state is in the state store
    fits: bool              # used <= room: asked now with a short question, nothing is left out
    documents: int
    reserved: int = 0       # of `max`, not for documents: instructions, question turn, answer budget
    estimated: bool = False  # `used` holds estimates of documents not counted yet

    @property
    def room(self) -> int | None:
        """Tokens of the context the documents can take (None: unlimited)."""
        return None if self.max is None else max(0, self.max - self.reserved)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "room": self.room}


def context_fit(docs: Sequence[DocumentInfo], max_tokens: int | None) -> dict[int, str]:
    """doc id -> "whole" | "partly" | "retrieval": how each document fits, in workspace order."""
    fit: dict[int, str] = {}
    used = 0
    for doc in docs:
        tokens = doc.tokens or 0
        if max_tokens is None or used + tokens <= max_tokens:
            fit[doc.id] = "whole"
        elif used < max_tokens:
            fit[doc.id] = "partly"
        else:
            fit[doc.id] = "retrieval"
        used += tokens
    return fit


def omitted_text(timings: dict) -> str:
    """What the engine left out to fit its context, in words ("" when everything was read)."""
    if timings.get("omitted_summary"):
        return str(timings["omitted_summary"])
    items = timings.get("omitted") or []
    if not isinstance(items, (list, tuple)):
        return str(items)
    words = []
    for item in items:
        if isinstance(item, dict):
            name = item.get("file") or (f"doc {item['doc']}" if "doc" in item else item.get("detail", ""))
            pages = item.get("pages")
            words.append(f"{name} ({len(pages)} pages)" if isinstance(pages, list) else str(name))
        else:
            words.append(str(item))
    return "; ".join(w for w in words if w)
