"""`read_document` / `read_documents`: any supported file to a `Document`, or a clear `IngestError`."""
from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ingest.errors import IngestError, XmlTooLarge
from ingest.kinds import CONVERT_HINTS, KIND_BY_SUFFIX, SUPPORTED_KINDS
from ingest.isolated import read_pdf_isolated
from ingest.model import Document, Page, page_ranges
from ingest.normalize import normalize_text, unreadable
from ingest.ocr import OCR_NAME, OcrPage, ocr_available, ocr_pages, stamped_scans
from ingest.pdf import Progress, looks_like_pdf, read_pdf

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024 * 1024
MAX_PAGES = 10_000
TIMEOUT_S = 120.0            # per document; PDFium fails fast on damage, this bounds the rest
# What this reader makes of a file (text, labels, title) changes with it: one more whenever a change
# here gives a stored document other text, so documents read before are read again from their
# kept originals (app DocumentService.reread_outdated). 1: text drawn unseen left out, control
# characters out of PDF titles (documents stored before the stamp count as 0). 2: PDF text under a
# box drawn over it left out, text running down a page read upright, stamps and choice fields as
# shown; .tsv cells, declared charsets, Office equations and symbols, .xlsx currencies and units,
# data files titled by their name.
READER_VERSION = 2
MAX_OCR_PAGES = 300          # per document: ~20 minutes on 2 cores; later scanned pages stay empty (noted)
STAMP_CHARS = 200            # a text layer this short over a page-covering image is a stamp on a scan

_JUNK_TITLES = re.compile(r"^(untitled|document\d*|title|microsoft word\s*-.*|\s*)$", re.IGNORECASE)
# A table-of-contents entry: dot leaders ("Introduction . . . . 1", "Intro ....... 1", "Intro …… 1")
_TOC_LINE = re.compile(r"(?:\.\s*){4,}\S*\s*$|…{2,}")


def read_document(path: str | Path, password: str | None = None, progress: Progress | None = None, *,
                  filename: str | None = None, max_bytes: int = MAX_BYTES, max_pages: int = MAX_PAGES,
                  timeout_s: float | None = TIMEOUT_S, ocr: bool = True, isolate: bool = False,
                  max_ocr_pages: int = MAX_OCR_PAGES, known_ocr: Mapping[int, OcrPage] | None = None) -> Document:
    """Read one file. `filename` (default: the path's name) is shown in errors and picks the format
    by extension; `progress(pages_done, pages_total)` is called as pages are read (then as scanned
    pages are recognised). `isolate` parses PDFs in a child process that is killed at `timeout_s`
    (see ingest/isolated.py). `ocr`: read pages without a text layer by OCR, at most `max_ocr_pages`
    of them (the rest stay empty, and the document's notes say so). `known_ocr`: what OCR read on
    pages of this file before (page number -> OcrPage, `Document.ocr` of an earlier read): a page to
    OCR that the same engine read is not read again."""
    path = Path(path)
    name = filename or path.name
    try:
        size = path.stat().st_size
    except OSError as err:
        raise IngestError("unsupported", name, f"cannot be opened ({err.strerror or err})") from None
    if not path.is_file():
        raise IngestError("unsupported", name, "is not a regular file")
    if size == 0:
        raise IngestError("empty", name, "the file is empty (0 bytes)")
    if size > max_bytes:
        raise IngestError("too_large", name, f"{size} bytes, more than the limit of {max_bytes}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise IngestError("unsupported", name, f"cannot be read ({err.strerror or err})") from None
    if len(data) > max_bytes:            # grew since stat()
        raise IngestError("too_large", name, f"{len(data)} bytes, more than the limit of {max_bytes}")
    kind = detect_kind(data, name)
    callback_errors: list[BaseException] = []
    guarded = _guard(progress, callback_errors)
    try:
        if kind == "pdf":
            return _read_pdf_document(path, data, name, password, guarded, max_pages, timeout_s,
                                      max_ocr_pages if ocr else 0, isolate, known_ocr)
        if kind == "image":
            return _read_image_document(data, name, guarded, min(max_pages, max_ocr_pages), ocr, known_ocr)
        return _read_text_document(data, name, kind, guarded, max_pages)
    except IngestError:
        raise
    except XmlTooLarge as err:
        raise IngestError("too_large", name, str(err)) from None
    except RecursionError:          # the readers (e-mail parts, ODF sections, slide groups) recurse
        raise IngestError("unsupported", name, "nested too deeply to be read (parts inside parts, "
                          "more levels deep than jambadocs follows); save or print it as PDF and add that") from None
    except Exception as err:
        if callback_errors and err is callback_errors[-1]:
            raise                       # the caller's own progress callback (e.g. a cancellation)
        log.warning("unexpected error reading %s", name, exc_info=True)
        raise IngestError("corrupt", name, f"could not be read ({type(err).__name__}: {err})") from err


def _guard(progress: Progress | None, errors: list[BaseException]) -> Progress | None:
    """The progress callback, remembering what it raised so that is not reported as a bad file."""
    if progress is None:
        return None

    def call(done: int, total: int) -> None:
        try:
            progress(done, total)
        except BaseException as err:
            errors.append(err)
            raise

    return call


def _read_text_document(data: bytes, name: str, kind: str, progress: Progress | None,
                        max_pages: int) -> Document:
    from ingest import formats, office  # bs4, markdown-it, python-pptx, ...: only when needed

    content = {**formats.READERS, **office.READERS}[kind](data, name)
    if not any(text.strip() for _, text in content.units):
        raise IngestError("no_text", name, "the file contains no text")
    if len(content.units) > max_pages:
        raise IngestError("too_large", name, f"{len(content.units)} {content.unit}s, more than {max_pages}")
    pages = [Page(i, label, text) for i, (label, text) in enumerate(content.units, start=1)]
    if progress:
        progress(len(pages), len(pages))
    return Document(title=content.title or Path(name).stem, filename=name, kind=kind, unit=content.unit,
                    pages=pages, content_hash=sha256_hex(data), text_hash=text_hash(pages),
                    outline=content.outline)


def _read_image_document(data: bytes, name: str, progress: Progress | None, max_frames: int,
                         ocr: bool, known_ocr: Mapping[int, OcrPage] | None) -> Document:
    """A picture of one page per frame, its text recognised by OCR."""
    from ingest.images import ocr_frames

    if not (ocr and ocr_available()):
        hint = "no OCR engine is installed: pip install rapidocr onnxruntime" if ocr else "OCR is turned off"
        raise IngestError("no_text", name, f"an image is read by OCR, and {hint}")
    read = ocr_frames(data, name, max_frames, progress, known_ocr)
    texts = [page.text for page in read]
    if not any(texts):
        raise IngestError("no_text", name, "OCR found no text in the image"
                          + (f"'s {len(texts)} frames" if len(texts) > 1 else ""))
    pages = [Page(i, None, text) for i, text in enumerate(texts, start=1)]
    return Document(title=pdf_title(None, texts, name), filename=name, kind="image", unit="page", pages=pages,
                    content_hash=sha256_hex(data), text_hash=text_hash(pages),
                    notes=[f"an image: text recognised by OCR ({OCR_NAME})"], ocr=dict(enumerate(read, start=1)))


def read_documents(paths: Iterable[str | Path], passwords: Mapping[str, str] | str | None = None,
                   progress: Callable[[int, int, int], None] | None = None,
                   **limits) -> list[Document | IngestError]:
    """Read many files; one result per path, in order: a Document or the IngestError it raised, so
    one bad file never stops the others. `passwords` maps a path (as given) or file name to its
    password, or is one password for all; `progress(file_index, pages_done, pages_total)`."""
    results: list[Document | IngestError] = []
    for index, path in enumerate(paths):
        if isinstance(passwords, Mapping):
            password = passwords.get(str(path), passwords.get(Path(path).name))
        else:
            password = passwords
        per_file = (lambda done, total, i=index: progress(i, done, total)) if progress else None
        try:
            results.append(read_document(path, password=password, progress=per_file, **limits))
        except IngestError as err:
            results.append(err)
    return results


def detect_kind(data: bytes, name: str) -> str:
    """Format from the extension, checked against the content; what the content shows (a PDF
    header, an Office or e-book package, a picture, RTF) wins over any extension."""
    ext = Path(name).suffix.lower()
    kind = KIND_BY_SUFFIX.get(ext)
    if kind == "pdf" and looks_like_pdf(data[:1024]):
        return "pdf"
    if data.lstrip()[:5] == b"%PDF-":          # a PDF under another name (a text about PDFs is not)
        return "pdf"
    if (shown := sniff_kind(data)) is not None:
        return shown
    if kind == "pdf":
        raise IngestError("not_pdf", name, "named .pdf but it is not a PDF (no %PDF header)")
    if kind is None and ext in CONVERT_HINTS:
        raise IngestError("unsupported", name, f"{CONVERT_HINTS[ext]} (not read: {ext})")
    if kind is None:
        raise IngestError("unsupported", name, f"unsupported file type {ext or '(no extension)'}; "
                          f"supported: {SUPPORTED_KINDS}")
    return kind


# The part each ZIP-based format must have; an OpenDocument or EPUB file names itself in "mimetype".
_PACKAGE_PARTS = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx"))
_PACKAGE_MIMETYPES = {b"application/epub+zip": "epub", b"application/vnd.oasis.opendocument.text": "odt"}
_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"hevc")


def sniff_kind(data: bytes) -> str | None:
    """The format the bytes show by their signature, for a file under a wrong or missing extension
    (a deck saved as .docx, a download named .bin): a .docx/.pptx/.xlsx by its main part, an .epub
    or .odt by its mimetype, a picture, RTF. None when they show none of these."""
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
                if found := next((kind for part, kind in _PACKAGE_PARTS if part in names), None):
                    return found
                if "mimetype" in names:
                    with archive.open("mimetype") as f:
                        return _PACKAGE_MIMETYPES.get(f.read(64).strip())
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
            return None
        return None
    if (data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*"))
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or (data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS)):
        return "image"
    if data.startswith(b"{\\rtf"):
        return "rtf"
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_hash(pages: list[Page]) -> str:
    """sha256 of the normalised page texts, one form feed between pages (normalised text has none),
    so the same text on different page breaks hashes differently. Stable across runs and machines
    for the same extractor version."""
    h = hashlib.sha256()
    for i, page in enumerate(pages):
        if i:
            h.update(b"\f")
        h.update(page.text.encode("utf-8"))
    return h.hexdigest()


def _read_pdf_document(path: Path, data: bytes, name: str, password: str | None, progress: Progress | None,
                       max_pages: int, timeout_s: float | None, ocr_pages_max: int, isolate: bool,
                       known_ocr: Mapping[int, OcrPage] | None) -> Document:
    use_ocr = ocr_pages_max > 0 and ocr_available()
    cover_under = STAMP_CHARS if use_ocr else 0     # thin pages' image cover, measured as they are read
    if isolate:
        content = read_pdf_isolated(path, name, password=password, progress=progress, max_pages=max_pages,
                                    timeout_s=timeout_s, cover_under=cover_under)
    else:
        content = read_pdf(data, name, password=password, progress=progress, max_pages=max_pages,
                           timeout_s=timeout_s, cover_under=cover_under)
    texts, notes = list(content.texts), list(content.notes)
    garbled = [i + 1 for i, text in enumerate(texts) if unreadable(text)]
    for n in garbled:                                # its characters are noise: read it like a scan
        texts[n - 1] = ""
    missing = [i + 1 for i, text in enumerate(texts) if not text.strip()]
    stamped: list[int] = []          # a scan that carries a few words of text (a Bates number, "Page 2 of 9")
    read: dict[int, OcrPage] = {}
    if use_ocr and len(missing) < ocr_pages_max:
        thin = {i + 1: text for i, text in enumerate(texts) if text.strip() and len(text) < STAMP_CHARS}
        stamped = stamped_scans(data, thin, password, content.image_covers, known_ocr)[:ocr_pages_max - len(missing)]
    if (missing or stamped) and use_ocr:             # scanned pages: recognise the text on their images
        read = ocr_pages(data, sorted(missing[:ocr_pages_max] + stamped), password, progress=progress,
                         text_pages=set(garbled) | set(stamped), known=known_ocr)
        found = {n: page.text for n, page in read.items()}
        stamped = [n for n in stamped if len(found.get(n, "")) > len(texts[n - 1])]   # kept if OCR read more
        recognised = sorted(n for n, text in found.items() if text and (n in stamped or n in missing))
        for n in recognised:
            texts[n - 1] = found[n]
        scans = [n for n in recognised if n not in garbled and n not in stamped]
        if scans:
            where = "any page" if len(scans) == len(texts) else page_ranges(scans)
            notes.append(f"no text layer on {where}: text recognised by OCR ({OCR_NAME})")
        if stamped:
            notes.append(f"only a few words of text over a scanned image on {page_ranges(stamped)}: "
                         f"text recognised by OCR ({OCR_NAME})")
        if len(missing) > ocr_pages_max:
            notes.append(f"{page_ranges(missing[ocr_pages_max:])} not recognised: OCR stops after "
                         f"{ocr_pages_max} page{'' if ocr_pages_max == 1 else 's'} of one document; "
                         "they stay empty")
    if garbled:
        read = [n for n in garbled if texts[n - 1]]
        lost = [n for n in garbled if not texts[n - 1]]
        why = "its fonts map the letters to private-use or unknown characters"
        if read:
            notes.append(f"unreadable text layer on {page_ranges(read)} ({why}): text recognised by OCR ({OCR_NAME})")
        if lost:
            notes.append(f"unreadable text layer on {page_ranges(lost)} ({why}); "
                         + ("OCR read no text there" if use_ocr else "no OCR, so they are left empty"))
    if not any(texts):
        if use_ocr:
            hint = " and OCR found none on its images"
        elif ocr_pages_max > 0:
            hint = " (no OCR engine is installed: pip install rapidocr onnxruntime)"
        else:
            hint = ""                                # the caller turned OCR off
        raise IngestError("no_text", name, f"no extractable text in {len(texts)} pages: it looks like "
                          f"scanned images without a text layer{hint}")
    pages = [Page(i + 1, label, text) for i, (label, text) in enumerate(zip(content.labels, texts))]
    return Document(title=pdf_title(content.metadata_title, texts, name), filename=name, kind="pdf",
                    unit="page", pages=pages, content_hash=sha256_hex(data), text_hash=text_hash(pages),
                    outline=content.outline, notes=notes, ocr=read)


def pdf_title(metadata_title: str | None, texts: list[str], name: str) -> str:
    """Metadata title (control characters made spaces) unless it is junk, else the first line with
    4+ letters on the first text page that is not a table-of-contents entry, else the file name
    without extension."""
    stem = Path(name).stem
    if metadata_title:
        title = " ".join(normalize_text(metadata_title).split())
        title = re.sub(r"^microsoft word\s*-\s*", "", title, flags=re.IGNORECASE)
        if not _JUNK_TITLES.match(title) and title.lower() != stem.lower():
            return title
    first = next((t for t in texts if t), "")
    for line in first.splitlines()[:15]:
        if len(re.findall(r"[^\W\d_]", line)) >= 4 and not _TOC_LINE.search(line):
            return line.strip()[:150]
    return stem
