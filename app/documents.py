"""Documents of a workspace: add (ingest + one transaction), list, pages, remove."""
from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from sqlalchemy import LargeBinary, cast, delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import db
from app.errors import InvalidInput, NotFound, Stopping, StorageError
from app.filestore import sha256_file
from app.records import DocumentInfo, FailedUploadInfo, PageInfo, _utc
from ingest import READER_VERSION
from ingest.kinds import CONVERT_HINTS, SUPPORTED_SUFFIXES

# What the upload box takes: what is read, and the formats whose refusal says how to convert them.
UPLOAD_SUFFIXES = SUPPORTED_SUFFIXES + tuple(CONVERT_HINTS)

if TYPE_CHECKING:
    import ingest
    from app.page_images import RenderedPage
    from app.services import Services
    from ingest.ocr import OcrPage

log = logging.getLogger(__name__)

MAX_FILENAME = 255
PAGE_MARKER_BYTES = 12    # a page's "[p. 12]\n" marker and separator, for token estimates


def clean_filename(name: str) -> str:
    """The last path component of an uploaded name, without control characters.
    It is only ever shown, never used as a path."""
    name = unicodedata.normalize("NFC", str(name))
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_FILENAME - len(ext) - 1] + dot + ext) if dot and len(ext) < 16 else name[:MAX_FILENAME]
    return name or "document"


def _changes(row: db.Document, numbers: list[int], doc: "ingest.Document") -> str:
    """What of a stored document's prompt (title, page texts and labels: `numbers` are the pages
    that differ) `doc` reads otherwise, in words ("the title and pages 2, 5"); "" when nothing."""
    parts = ["the title"] if (doc.title or row.filename) != row.title else []
    if numbers:
        shown = ", ".join(map(str, numbers[:20])) + (", ..." if len(numbers) > 20 else "")
        parts.append(f"{row.unit}{'s' if len(numbers) > 1 else ''} {shown}")
    return " and ".join(parts)


def _move_citations(s, doc_id: int, numbers: list[int], texts: dict[int, str]) -> None:
    """Citations of pages whose text changed: their passage's offsets (which the viewer marks) are
    moved to where it is in the new text; one no longer there is marked unverified, unplaced."""
    for cite in s.scalars(select(db.Citation).where(db.Citation.document_id == doc_id,
                                                    db.Citation.page.in_(numbers))):
        at = texts.get(cite.page, "").find(cite.passage) if cite.passage else -1
        if at >= 0:
            cite.start, cite.end = at, at + len(cite.passage)
        else:
            cite.start = cite.end = None
            cite.verified = False


def namesakes_note(others: list[DocumentInfo]) -> str:
    """What the CLI and the page say when a file is added beside documents of the same name."""
    which = ", ".join(f"document {d.index} (added {d.added_at.astimezone():%Y-%m-%d %H:%M})" for d in others)
    return (f"{which} has the same name and other content: an earlier version? Both are read for every "
            "question until one is removed")


def _ocr_json(doc: "ingest.Document", number: int) -> dict | None:
    page = doc.ocr.get(number)
    return None if page is None else page.to_json()


def _page_rows(doc_id: int, doc: "ingest.Document") -> Iterator[db.Page]:
    """The rows of a read document's pages, with what OCR read on them."""
    for p in doc.pages:
        yield db.Page(document_id=doc_id, number=p.number, label=p.label, text=p.text,
                      ocr=_ocr_json(doc, p.number))


def to_ingest_document(row: db.Document, pages: Iterable[db.Page]) -> "ingest.Document":
    from ingest import Document, Page
    return Document(
        title=row.title, filename=row.filename, kind=row.kind, unit=row.unit,
        pages=[Page(p.number, p.label, p.text) for p in pages],
        content_hash=row.content_hash, text_hash=row.text_hash,
        outline=[tuple(o) for o in (row.outline or [])], notes=list(row.notes or []),
    )


class DocumentService:
    def __init__(self, svc: "Services"):
        self._svc = svc
        # Passwords that opened a PDF here, by content hash: in this process's memory only (never
        # stored), so that its page images can be drawn until the server stops.
        self._passwords: dict[str, str] = {}

    # -- reading ------------------------------------------------------------------------------
    def list(self, ws_id: int, estimate: bool = False) -> list[DocumentInfo]:
        """The workspace's documents; `estimate`: those not counted yet get a cheap estimate of their
        tokens (from their text's stored size, nothing tokenised), marked `estimated`."""
        key = self._svc.tokenizer_key()
        with db.transaction(self._svc.sessions) as s:
            self._svc.workspaces._row(s, ws_id)
            rows = list(s.scalars(select(db.Document).where(db.Document.workspace_id == ws_id)
                                  .order_by(db.Document.id)))
            counts = self._token_counts(s, rows, key)
            guesses = self._estimates(s, [r.id for r in rows if r.id not in counts]) if estimate else {}
        cached = self._svc.cached_flags(ws_id, rows)
        return [replace(self._info(r, i + 1, counts.get(r.id, guesses.get(r.id)), cached[i]),
                        estimated=r.id in guesses) for i, r in enumerate(rows)]

    @staticmethod
    def _estimates(s, doc_ids: list[int]) -> dict[int, int]:
        """doc id -> its tokens estimated as `ingest.budget.estimate_counter` does (UTF-8 bytes of its
        pages' text and markers / CHARS_PER_TOKEN_ESTIMATE), summed by SQLite."""
        if not doc_ids:
            return {}
        from ingest.budget import CHARS_PER_TOKEN_ESTIMATE
        size = func.sum(func.length(cast(db.Page.text, LargeBinary)) + PAGE_MARKER_BYTES)
        q = select(db.Page.document_id, size).where(db.Page.document_id.in_(doc_ids)).group_by(db.Page.document_id)
        found = {d: 0 for d in doc_ids}
        found.update({d: round((n or 0) / CHARS_PER_TOKEN_ESTIMATE) for d, n in s.execute(q)})
        return found

    def get(self, doc_id: int) -> DocumentInfo:
        key = self._svc.tokenizer_key()
        with db.transaction(self._svc.sessions) as s:
            row = self._row(s, doc_id)
            ids = list(s.scalars(select(db.Document.id).where(
                db.Document.workspace_id == row.workspace_id).order_by(db.Document.id)))
            counts = self._token_counts(s, [row], key)
        return self._info(row, ids.index(row.id) + 1, counts.get(row.id), False)

    def page(self, doc_id: int, number: int) -> PageInfo:
        with db.transaction(self._svc.sessions) as s:
            row = self._row(s, doc_id)
            page = s.get(db.Page, (doc_id, number)) if number in db.SQLITE_INTEGERS else None
            if page is None:
                raise NotFound(f"{row.filename} has no page {number} (1..{row.page_count})")
            return PageInfo(doc_id, page.number, page.label, page.text)

    def file_path(self, doc_id: int) -> Path:
        """The stored original of a document (read-only use)."""
        with db.transaction(self._svc.sessions) as s:
            row = self._row(s, doc_id)
        path = self._svc.files.path(row.content_hash)
        if not path.is_file():
            raise NotFound(f"the original of {row.filename} is missing from {path.parent}")
        return path

    def namesakes(self, ws_id: int, doc_id: int) -> list[DocumentInfo]:
        """The workspace's other documents with this one's file name: most likely other versions of
        it, a file changed and added again (the same content is never added twice). Both are read
        for every question until one is removed."""
        with db.transaction(self._svc.sessions) as s:
            name = self._row(s, doc_id).filename
            ids = list(s.scalars(select(db.Document.id).where(db.Document.workspace_id == ws_id)
                                 .order_by(db.Document.id)))
            rows = s.scalars(select(db.Document).where(
                db.Document.workspace_id == ws_id, db.Document.filename == name, db.Document.id != doc_id)
                .order_by(db.Document.id))
            return [self._info(r, ids.index(r.id) + 1, None, False) for r in rows]

    def page_image(self, doc_id: int, number: int, highlight: str | None = None) -> "RenderedPage":
        """Page `number` of a PDF or image document drawn, `highlight` marked on it (app.page_images);
        on a scanned page, on the lines OCR read there when the document was read."""
        from app.page_images import render_page
        from ingest.ocr import OcrPage

        path = self.file_path(doc_id)
        with db.transaction(self._svc.sessions) as s:
            row = self._row(s, doc_id)
            kind, content_hash = row.kind, row.content_hash
            kept = s.scalar(select(db.Page.ocr).where(db.Page.document_id == doc_id, db.Page.number == number)
                            ) if highlight and number in db.SQLITE_INTEGERS else None
        return render_page(path, number, highlight=highlight, kind=kind, password=self.password(content_hash),
                           ocr=OcrPage.from_json(kept) if kept else None)

    def password(self, content_hash: str) -> str | None:
        """The password a file with this content was added with since the server started, if any."""
        return self._passwords.get(content_hash)

    def load(self, ws_id: int) -> tuple[list[int], list["ingest.Document"]]:
        """(document ids, ingest Documents with their page texts) in workspace order."""
        with db.transaction(self._svc.sessions) as s:
            self._svc.workspaces._row(s, ws_id)
            rows = list(s.scalars(select(db.Document).where(db.Document.workspace_id == ws_id)
                                  .order_by(db.Document.id)))
            pages: dict[int, list[db.Page]] = {r.id: [] for r in rows}
            if rows:
                for p in s.scalars(select(db.Page).where(db.Page.document_id.in_(pages))
                                   .order_by(db.Page.document_id, db.Page.number)):
                    pages[p.document_id].append(p)
            return [r.id for r in rows], [to_ingest_document(r, pages[r.id]) for r in rows]

    # -- writing ------------------------------------------------------------------------------
    def add(self, ws_id: int, path: str | Path, filename: str | None = None,
            password: str | None = None,
            progress: Callable[[int, int], None] | None = None) -> DocumentInfo:
        """Read `path` and add it to the workspace (returns the existing document if the same
        content is already there; the same file's pages OCR'd in another workspace are not OCR'd
        again). Raises ingest.IngestError for an unreadable file."""
        from ingest import read_document

        path = Path(path)
        name = clean_filename(filename if filename is not None else path.name)
        self._refuse_if_stopping(name)
        self._svc.workspaces.get(ws_id)                          # NotFound early
        size = self._size(path, name)
        settings = self._svc.settings
        content_hash = sha256_file(path)
        existing = self._find(ws_id, content_hash)
        if existing is not None:
            if password:                   # added again with its password: its page images can be drawn
                self._passwords.setdefault(content_hash, password)
            if not self._svc.files.has(content_hash):      # its original was deleted by hand: this
                self._put_original(path, name, content_hash)   # copy takes its place
            return existing
        def pages_read(done: int, total: int) -> None:       # the process stopping ends the read
            self._refuse_if_stopping(name)
            if progress is not None:
                progress(done, total)

        doc = read_document(path, password=password, progress=pages_read, filename=name,
                            max_bytes=settings.max_upload_bytes, max_pages=settings.max_pages,
                            known_ocr=self._ocr(content_hash))
        if doc.content_hash != content_hash:
            raise InvalidInput(f"{name}: the file changed while it was being added")
        doc.filename = name
        if password:
            self._passwords[content_hash] = password
        return self._insert(ws_id, path, size, doc)

    def _refuse_if_stopping(self, name: str) -> None:
        if getattr(self._svc, "stopping", False):
            raise Stopping(f"{name}: not read: jambadocs is stopping")

    def _size(self, path: Path, name: str) -> int:
        """The size of a file to add; InvalidInput when it is not a readable file, too_large over the limit."""
        from ingest import IngestError
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InvalidInput(f"{name}: cannot read the file ({exc.strerror or exc})") from None
        if not path.is_file():
            raise InvalidInput(f"{name}: not a regular file")
        limit = self._svc.settings.max_upload_bytes
        if size > limit:
            raise IngestError("too_large", name, f"{size:,} bytes is over the upload limit of {limit:,} bytes")
        return size

    # -- uploads kept until read ------------------------------------------------------------
    def keep(self, ws_id: int, path: str | Path, filename: str | None = None) -> int:
        """Keep an upload's original in the data folder until `add_kept` has read it (or refused it),
        so that one a stopped server had not read is read at its next start (`add_kept_uploads`).
        Returns its id; raises as `add` does for a file that cannot be taken (unreadable, over the
        limit, no room)."""
        path = Path(path)
        name = clean_filename(filename if filename is not None else path.name)
        self._svc.workspaces.get(ws_id)
        self._size(path, name)
        content_hash = sha256_file(path)
        with self._svc.files.locked():
            self._put_original(path, name, content_hash)
            try:
                with db.transaction(self._svc.sessions) as s:
                    self._svc.workspaces._row(s, ws_id)
                    row = db.KeptUpload(workspace_id=ws_id, filename=name, content_hash=content_hash,
                                        kept_at=time.time())
                    s.add(row)
                    s.flush()
                    return row.id
            except DBAPIError as exc:
                self.drop_unused_files({content_hash})
                raise StorageError(f"{name}: cannot be saved in {self._svc.settings.db_path}: {exc.orig}") from None
            except BaseException:
                self.drop_unused_files({content_hash})
                raise

    def add_kept(self, kept_id: int, password: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DocumentInfo:
        """`add` for an upload `keep` kept; it is forgotten once added or refused (the caller
        reports why). Stopped midway (the process ends), it stays kept, to be read again."""
        ws_id, name, content_hash = self._kept(kept_id)
        try:
            info = self.add(ws_id, self._svc.files.path(content_hash), filename=name, password=password,
                            progress=progress)
        except Stopping:
            raise                         # kept: read at the next start
        except Exception:
            self._forget_kept(kept_id, content_hash)
            raise
        self._forget_kept(kept_id, content_hash)
        return info

    def add_kept_unwatched(self, kept_id: int, password: str | None = None) -> DocumentInfo | None:
        """`add_kept` for an upload nobody is watching: a failure is recorded (`record_failure`)."""
        try:
            ws_id, name, _ = self._kept(kept_id)
        except NotFound:                  # its workspace was deleted meanwhile
            return None
        try:
            return self.add_kept(kept_id, password=password)
        except Stopping:
            return None                   # kept: read at the next start
        except Exception as err:  # noqa: BLE001 -- every failure is reported, through the workspace
            self.record_failure(ws_id, name, err)
            return None

    def add_kept_uploads(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Read the uploads kept and not read when the last server stopped, oldest first, until
        `stop()`: each is added or its failure recorded with its workspace. Returns how many."""
        with db.transaction(self._svc.sessions) as s:
            ids = list(s.scalars(select(db.KeptUpload.id).order_by(db.KeptUpload.id)))
        done = 0
        for kept_id in ids:
            if stop():
                break
            self.add_kept_unwatched(kept_id)
            done += 1
        return done

    def _kept(self, kept_id: int) -> tuple[int, str, str]:
        with db.transaction(self._svc.sessions) as s:
            row = db.get_row(s, db.KeptUpload, kept_id, "kept upload")
            return row.workspace_id, row.filename, row.content_hash

    def _forget_kept(self, kept_id: int, content_hash: str) -> None:
        try:
            with db.transaction(self._svc.sessions) as s:
                s.execute(delete(db.KeptUpload).where(db.KeptUpload.id == kept_id))
            self.drop_unused_files({content_hash})
        except Exception:  # noqa: BLE001 -- read again at the next start: a no-op once added
            log.exception("forgetting kept upload %s failed", kept_id)

    def _put_original(self, path: Path, name: str, content_hash: str) -> None:
        with self._svc.files.locked():
            try:
                self._svc.files.put(path, content_hash)
            except OSError as exc:                # disk full, read-only folder ...
                raise StorageError(f"{name}: cannot be saved in {self._svc.files.folder}: "
                                   f"{exc.strerror or exc}") from None

    def _insert(self, ws_id: int, path: Path, size: int, doc: "ingest.Document") -> DocumentInfo:
        with self._svc.files.locked():           # add/remove of originals, across processes too
            self._put_original(path, doc.filename, doc.content_hash)
            try:
                with db.transaction(self._svc.sessions) as s:
                    self._svc.workspaces._row(s, ws_id)
                    row = db.Document(
                        workspace_id=ws_id, filename=doc.filename, title=doc.title or doc.filename,
                        kind=doc.kind, unit=doc.unit, content_hash=doc.content_hash,
                        text_hash=doc.text_hash, size_bytes=size, page_count=len(doc.pages),
                        outline=[list(o) for o in doc.outline], notes=list(doc.notes),
                        added_at=time.time(), reader_version=READER_VERSION)
                    s.add(row)
                    s.flush()
                    s.add_all(_page_rows(row.id, doc))
                    index = s.scalar(select(func.count(db.Document.id)).where(
                        db.Document.workspace_id == ws_id, db.Document.id <= row.id))
                    added = self._info(row, int(index or 1), None, False)
            except IntegrityError:            # the same content was added concurrently
                found = self._find(ws_id, doc.content_hash)
                if found is None:
                    raise
                return found
            except DBAPIError as exc:         # disk full, database locked too long, read-only folder ...
                self.drop_unused_files({doc.content_hash})
                raise StorageError(f"{doc.filename}: cannot be saved in {self._svc.settings.db_path}: "
                                   f"{exc.orig}") from None
            except BaseException:
                self.drop_unused_files({doc.content_hash})
                raise
        # Committed: from here on nothing may raise (the document is there; a failure to count
        # its tokens or to re-read it must not look like a failed add).
        try:
            tokens = None if self._svc.counts_in_background else self._svc.count_tokens_later(added.id, doc)
            found = self._find(ws_id, doc.content_hash) or replace(added, tokens=tokens)
            self._svc.count_pages_later(ws_id)            # its pages' tokens, in a thread
            return found
        except Exception:  # noqa: BLE001
            log.exception("reading back document %s after adding it failed", added.id)
            return added

    def add_unwatched(self, ws_id: int, path: str | Path, filename: str | None = None,
                      password: str | None = None) -> DocumentInfo | None:
        """`add` for a file nobody is watching being added (its page went away): a failure is not
        raised but recorded with the workspace (`record_failure`), to be shown until dismissed."""
        name = clean_filename(filename if filename is not None else Path(path).name)
        try:
            return self.add(ws_id, path, filename=name, password=password)
        except Exception as err:  # noqa: BLE001 -- every failure is reported, through the workspace
            self.record_failure(ws_id, name, err)
            return None

    def record_failure(self, ws_id: int, filename: str, err: BaseException) -> None:
        """Keep "`filename` could not be added, because `err`" with the workspace until dismissed
        (logged, not raised, when the workspace is gone meanwhile or the database cannot take it)."""
        name = clean_filename(filename)
        reason = getattr(err, "reason", None)
        if not isinstance(reason, str):
            reason = "".join(f"_{c.lower()}" if c.isupper() else c for c in type(err).__name__).lstrip("_")
        message = " ".join(str(err).split()) or reason.replace("_", " ")
        if message.startswith(f"{name}: "):
            message = message[len(name) + 2:]
        log.warning("%s: not added to workspace %s: %s", name, ws_id, message)
        try:
            with db.transaction(self._svc.sessions) as s:
                self._svc.workspaces._row(s, ws_id)
                s.add(db.FailedUpload(workspace_id=ws_id, filename=name, reason=reason, message=message,
                                      failed_at=time.time()))
        except NotFound:
            log.warning("%s: workspace %s was deleted meanwhile; the failure is not kept", name, ws_id)
        except DBAPIError as exc:     # disk full, locked too long: the log line above is all there is
            log.error("%s: the failure could not be kept in %s: %s", name, self._svc.settings.db_path, exc.orig)

    def failures(self, ws_id: int) -> list[FailedUploadInfo]:
        """Files that could not be added while nobody was watching, oldest first, until dismissed."""
        with db.transaction(self._svc.sessions) as s:
            self._svc.workspaces._row(s, ws_id)
            rows = s.scalars(select(db.FailedUpload).where(db.FailedUpload.workspace_id == ws_id)
                             .order_by(db.FailedUpload.id))
            return [FailedUploadInfo(r.id, r.workspace_id, r.filename, r.reason, r.message, _utc(r.failed_at))
                    for r in rows]

    def dismiss_failures(self, ws_id: int, up_to: int | None = None) -> int:
        """Forget the workspace's failures (those with id <= `up_to`: the ones shown, not one
        recorded since); returns how many."""
        with db.transaction(self._svc.sessions) as s:
            self._svc.workspaces._row(s, ws_id)
            query = delete(db.FailedUpload).where(db.FailedUpload.workspace_id == ws_id)
            if up_to is not None:
                query = query.where(db.FailedUpload.id <= up_to)
            return s.execute(query).rowcount

    def remove(self, ws_id: int, doc_id: int) -> None:
        """Remove a document, its pages, and its original when no other document uses it
        (Conflict while an answer is being written in its workspace: that answer may cite it)."""
        def delete(s) -> str:
            row = self._row(s, doc_id)
            if row.workspace_id != ws_id:
                raise NotFound(f"document {doc_id} is not in workspace {ws_id}")
            s.delete(row)
            return row.content_hash
        with self._svc.qa.deleting(ws_id=ws_id, what=f"document {doc_id}"):
            content_hash = self._svc.delete_rows(f"document {doc_id}", delete)
        self.drop_unused_files({content_hash})
        self._svc.after_delete()
        self._svc.count_pages_later(ws_id)        # the index of the workspace's new set

    def outdated(self, ws_id: int) -> int:
        """How many of the workspace's documents an older reader read (`reread_outdated` reads them again)."""
        with db.transaction(self._svc.sessions) as s:
            return s.scalar(select(func.count()).select_from(db.Document).where(
                db.Document.workspace_id == ws_id, db.Document.reader_version < READER_VERSION)) or 0

    def reread_outdated(self, stop: Callable[[], bool] = lambda: False) -> dict[str, list[int]]:
        """Read again, from its kept original, each document an older reader read (its
        `reader_version` below ingest.READER_VERSION), one content at a time until `stop()`.

        A document whose title, page texts or page labels (what its prompt is made of) come out
        different gets them in one transaction, with its token counts dropped and a note saying
        what changed; the others only get the new stamp. Cached states need no clearing: their keys
        are made of the prompt's tokens, so a changed document's old states are never matched again
        and an unchanged one's stay valid. A document whose original is missing, or that the new
        reader refuses, keeps its text (an encrypted one is tried again once its password is
        given). A page that was OCR'd is not OCR'd again while the OCR engine is the same: what it
        read is kept with the page (documents stored before that are OCR'd again, once). Returns
        the document ids by outcome: changed, unchanged, kept."""
        from ingest import IngestError, read_document

        outcome: dict[str, list[int]] = {"changed": [], "unchanged": [], "kept": []}
        with db.transaction(self._svc.sessions) as s:
            todo = list(s.execute(select(db.Document.content_hash, db.Document.filename,
                                         db.Document.size_bytes, db.Document.page_count)
                                  .where(db.Document.reader_version < READER_VERSION)
                                  .order_by(db.Document.id)))
        first: dict[str, tuple] = {}
        for row in todo:                                      # a content is read once, by its first name
            first.setdefault(row[0], row[1:])
        settings = self._svc.settings
        for content_hash, (filename, size, pages) in first.items():
            if stop():
                break
            path, failure = self._svc.files.path(content_hash), None
            try:                          # (limits lowered since it was added do not refuse it now)
                doc = read_document(path, password=self._passwords.get(content_hash), filename=filename,
                                    max_bytes=max(settings.max_upload_bytes, size),
                                    max_pages=max(settings.max_pages, pages), known_ocr=self._ocr(content_hash))
                if doc.content_hash != content_hash:
                    raise IngestError("corrupt", filename, "its kept original is not the file that was added")
            except IngestError as err:
                if err.reason == "encrypted" or not path.is_file():
                    log.warning("%s: not read again by the newer reader: %s", filename, err)
                    outcome["kept"] += self._ids(content_hash)
                    continue
                doc, failure = None, err
            except Exception:  # noqa: BLE001 -- one document must not stop the others
                log.exception("%s: reading it again failed", filename)
                outcome["kept"] += self._ids(content_hash)
                continue
            for doc_id, changed in self._store_reread(content_hash, doc, failure):
                outcome["changed" if changed else "kept" if failure else "unchanged"].append(doc_id)
        return outcome

    def _store_reread(self, content_hash: str, doc: "ingest.Document | None",
                      failure: Exception | None) -> list[tuple[int, bool]]:
        """Stamp the outdated documents of this content as read by this reader, replacing what
        `doc` changes of their prompt (`doc` None: the reader refused the file, `failure` says
        why; the text stays, with a note). Returns (id, changed) per document."""
        done = []
        day = time.strftime("%Y-%m-%d", time.gmtime())
        with db.transaction(self._svc.sessions) as s:
            rows = list(s.scalars(select(db.Document).where(db.Document.content_hash == content_hash,
                                                            db.Document.reader_version < READER_VERSION)))
            for row in rows:
                row.reader_version = READER_VERSION
                if doc is None:
                    row.notes = list(row.notes or []) + [
                        f"a newer reader could not read it again on {day} ({failure}); its text "
                        "is the one read when it was added"]
                    done.append((row.id, False))
                    continue
                stored = list(s.scalars(select(db.Page).where(db.Page.document_id == row.id)))
                old = {p.number: (p.label, p.text) for p in stored}
                new = {p.number: (p.label, p.text) for p in doc.pages}
                numbers = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
                changes = _changes(row, numbers, doc)
                row.outline = [list(o) for o in doc.outline]
                earlier = [n for n in (row.notes or []) if n.startswith("re-read ")]
                row.notes = list(doc.notes) + earlier
                if changes:
                    row.title, row.text_hash = doc.title or row.filename, doc.text_hash
                    row.page_count = len(doc.pages)
                    row.notes.append(f"re-read {day} by a newer reader: {changes} changed (answers "
                                     "before then quoted the earlier text)")
                    s.execute(delete(db.Page).where(db.Page.document_id == row.id))
                    s.execute(delete(db.TokenCount).where(db.TokenCount.document_id == row.id))
                    s.add_all(_page_rows(row.id, doc))
                    _move_citations(s, row.id, numbers, {n: text for n, (_, text) in new.items()})
                else:
                    for page in stored:
                        page.ocr = _ocr_json(doc, page.number)
                done.append((row.id, bool(changes)))
        return done

    def _ocr(self, content_hash: str) -> dict[int, "OcrPage"]:
        """What OCR read on pages of stored documents with this content (page number -> OcrPage)."""
        from ingest.ocr import OcrPage
        with db.transaction(self._svc.sessions) as s:
            found = s.execute(select(db.Page.number, db.Page.ocr).join(db.Document).where(
                db.Document.content_hash == content_hash, db.Page.ocr.is_not(None)))
            return {number: OcrPage.from_json(ocr) for number, ocr in found}

    def _ids(self, content_hash: str) -> list[int]:
        with db.transaction(self._svc.sessions) as s:
            return list(s.scalars(select(db.Document.id).where(db.Document.content_hash == content_hash)))

    def drop_unused_files(self, hashes: set[str]) -> None:
        if not hashes:
            return
        with self._svc.files.locked():
            with db.transaction(self._svc.sessions) as s:
                used = set(s.scalars(select(db.Document.content_hash)
                                     .where(db.Document.content_hash.in_(hashes))))
                used.update(s.scalars(select(db.KeptUpload.content_hash)
                                      .where(db.KeptUpload.content_hash.in_(hashes))))
            for h in hashes - used:
                self._svc.files.remove(h)

    # -- helpers ------------------------------------------------------------------------------
    def _find(self, ws_id: int, content_hash: str) -> DocumentInfo | None:
        key = self._svc.tokenizer_key()
        with db.transaction(self._svc.sessions) as s:
            ids = list(s.scalars(select(db.Document.id).where(db.Document.workspace_id == ws_id)
                                 .order_by(db.Document.id)))
            row = s.scalar(select(db.Document).where(db.Document.workspace_id == ws_id,
                                                     db.Document.content_hash == content_hash))
            if row is None:
                return None
            counts = self._token_counts(s, [row], key)
        return self._info(row, ids.index(row.id) + 1, counts.get(row.id), False)

    def _token_counts(self, s, rows: list[db.Document], key: str | None) -> dict[int, int]:
        """The rows' token counts under tokenizer `key` (None: any). The caller gets `key` before
        its transaction: `tokenizer_key` may start a cheap engine, which must not run inside one."""
        if not rows:
            return {}
        q = select(db.TokenCount).where(db.TokenCount.document_id.in_([r.id for r in rows]))
        found: dict[int, int] = {}
        for tc in s.scalars(q):
            if key is None or tc.tokenizer == key:
                found[tc.document_id] = tc.tokens
        return found

    @staticmethod
    def _row(s, doc_id: int) -> db.Document:
        return db.get_row(s, db.Document, doc_id, "document")

    @staticmethod
    def _info(row: db.Document, index: int, tokens: int | None, cached: bool) -> DocumentInfo:
        return DocumentInfo(
            id=row.id, workspace_id=row.workspace_id, index=index, filename=row.filename,
            title=row.title, kind=row.kind, unit=row.unit, pages=row.page_count, tokens=tokens,
            content_hash=row.content_hash, cached=cached, added_at=_utc(row.added_at),
            size_bytes=row.size_bytes, notes=list(row.notes or []))
