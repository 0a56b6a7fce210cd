"""What ingestion produces: a Document of numbered Pages (or sections / parts for page-less formats)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.ocr import OcrPage


@dataclass(frozen=True)
class Page:
    """One citable unit. For PDFs a physical page; for other formats a section or a fixed-size part."""

    number: int              # 1-based physical page (or section / part index)
    label: str | None        # printed page label ("iv", "12"), "§2 Installation", "part 3"; None if none
    text: str                # normalised text; "" for a blank page


@dataclass
class Document:
    """A read document. `pages` keeps every unit, blank ones included, so numbering stays right."""

    title: str
    filename: str
    kind: str                                # "pdf", "txt", "md", "html", "docx"
    unit: str                                # "page", "section" or "part"
    pages: list[Page]
    content_hash: str                        # sha256 hex of the file bytes
    text_hash: str                           # sha256 hex of the normalised page texts (see hashing.py)
    outline: list[tuple[str, int, int]] = field(default_factory=list)   # (title, level, page_number)
    notes: list[str] = field(default_factory=list)   # deliberate choices worth showing, e.g. ignored copy restrictions
    # What OCR read on pages it was run on (page number -> ingest.ocr.OcrPage), whether or not their
    # text is its: kept with the stored pages so that reading the file again does not OCR them again
    ocr: dict[int, "OcrPage"] = field(default_factory=dict)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def char_count(self) -> int:
        return sum(len(p.text) for p in self.pages)

    def page(self, number: int) -> Page:
        """The page with 1-based physical `number` (IndexError if out of range)."""
        if not 1 <= number <= len(self.pages):
            raise IndexError(f"{self.filename} has no page {number} (1..{len(self.pages)})")
        return self.pages[number - 1]


def page_ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> 'pp. 1-3, 7, 9-10'."""
    runs: list[str] = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            runs.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = n
    if start is not None:
        runs.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ("p. " if len(numbers) == 1 else "pp. ") + ", ".join(runs)
