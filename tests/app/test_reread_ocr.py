"""A re-read of a stored scan (after READER_VERSION changes) does not OCR its pages again while the
OCR engine is the same: what OCR read is kept with each page. Another engine reads them again, and
a document stored before pages kept it (an older schema) is OCR'd once more, then not again."""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
import threading
from importlib.metadata import version

import pypdfium2 as pdfium
import pytest
from sqlalchemy import select, update

from app import db, documents
from app.config import Settings
from app.services import Services
from ingest import READER_VERSION, ocr
from tests.app.old_code import run_old_code

pytestmark = pytest.mark.skipif(not ocr.ocr_available(), reason="rapidocr / onnxruntime not installed")

# The last commit whose pages do not keep what OCR read on them (schema version 5).
OLD_SCHEMA = "ac49897"


@pytest.fixture(scope="module")
def scan(tmp_path_factory, corpus):
    """A real scan, then a page with a text layer: image-only.pdf's first page (r-intro.pdf's
    preface at 150 dpi) and r-intro.pdf's physical page 10."""
    out = tmp_path_factory.mktemp("scan") / "scan.pdf"
    pdf = pdfium.PdfDocument.new()
    pdf.import_pages(pdfium.PdfDocument(str(corpus / "image-only.pdf")), [0])
    pdf.import_pages(pdfium.PdfDocument(str(corpus / "r-intro.pdf")), [9])
    pdf.save(out)
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory, scan):
    """A data folder holding the scan (OCR'd once, when it was added), and the scan's page texts."""
    data = tmp_path_factory.mktemp("stored") / "data"
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        doc = svc.documents.add(svc.workspaces.create("w").id, scan)
        texts = [svc.documents.page(doc.id, n).text for n in (1, 2)]
    assert "Preface" in texts[0] and texts[1]
    return data, doc.id, texts


@pytest.fixture
def recognised(monkeypatch) -> list:
    """The images OCR recognises from now on."""
    calls, real = [], ocr.recognise
    monkeypatch.setattr(ocr, "recognise", lambda image: calls.append(image.shape) or real(image))
    return calls


def _copy(stored, tmp_path):
    data, doc_id, texts = stored
    shutil.copytree(data, tmp_path / "data")
    return tmp_path / "data", doc_id, texts


def _engines(svc: Services, doc_id: int) -> dict[int, str | None]:
    with db.transaction(svc.sessions) as s:
        rows = s.execute(select(db.Page.number, db.Page.ocr).where(db.Page.document_id == doc_id))
        return {number: ocr and ocr["engine"] for number, ocr in rows}


def test_a_reread_by_a_newer_reader_does_not_ocr_the_scanned_page_again(stored, tmp_path, monkeypatch, recognised):
    data, doc_id, texts = _copy(stored, tmp_path)
    monkeypatch.setattr(documents, "READER_VERSION", READER_VERSION + 1)
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        assert svc.documents.reread_outdated() == {"changed": [], "unchanged": [doc_id], "kept": []}
        assert recognised == []
        assert [svc.documents.page(doc_id, n).text for n in (1, 2)] == texts
        assert _engines(svc, doc_id) == {1: ocr.pdf_ocr_engine(), 2: None}

        # a newer reader that orders OCR'd lines otherwise (here: bottom to top) applies it to the
        # kept lines, without OCR; the page with a text layer is read from it, as before
        monkeypatch.setattr(documents, "READER_VERSION", READER_VERSION + 2)
        monkeypatch.setattr(ocr, "reading_order", lambda lines, width: [[ln] for ln in
                                                                         sorted(lines, key=lambda ln: -ln.y0)])
        assert svc.documents.reread_outdated() == {"changed": [doc_id], "unchanged": [], "kept": []}
        assert recognised == []
        lines = svc.documents.page(doc_id, 1).text.splitlines()
        assert lines == texts[0].splitlines()[::-1]
        assert svc.documents.page(doc_id, 2).text == texts[1]


def test_another_ocr_engine_reads_the_scanned_page_again(stored, tmp_path, monkeypatch, recognised):
    assert version("rapidocr") in ocr.ocr_engine() and version("onnxruntime") in ocr.ocr_engine()
    data, doc_id, texts = _copy(stored, tmp_path)
    other = ocr.ocr_engine().replace("rapidocr ", "rapidocr 0.")            # as after an upgrade
    monkeypatch.setattr(ocr, "ocr_engine", lambda: other)
    monkeypatch.setattr(documents, "READER_VERSION", READER_VERSION + 1)
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        assert svc.documents.reread_outdated() == {"changed": [], "unchanged": [doc_id], "kept": []}
        assert recognised                                  # the scan only: page 2 has a text layer
        assert [svc.documents.page(doc_id, n).text for n in (1, 2)] == texts
        assert _engines(svc, doc_id) == {1: ocr.pdf_ocr_engine(), 2: None}
        assert other in _engines(svc, doc_id)[1]


def test_the_same_scan_added_to_another_workspace_is_not_ocrd_again(stored, tmp_path, scan, recognised):
    data, doc_id, texts = _copy(stored, tmp_path)
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        doc = svc.documents.add(svc.workspaces.create("other").id, scan)
        assert doc.id != doc_id and recognised == []
        assert [svc.documents.page(doc.id, n).text for n in (1, 2)] == texts
        assert _engines(svc, doc.id) == {1: ocr.pdf_ocr_engine(), 2: None}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own CPU priority is Linux's")
def test_the_background_reread_leaves_the_cores_to_questions(stored, tmp_path, monkeypatch):
    """What `jambadocs serve` re-reads at start is read at the lowest CPU priority, its OCR on one
    core (in that thread alone), and reads the same text."""
    data, doc_id, texts = _copy(stored, tmp_path)
    priorities, threads, real = [], [], ocr.recognise

    def spy(image):
        priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        threads.append(ocr.ocr_threads())
        return real(image)

    monkeypatch.setattr(ocr, "recognise", spy)
    monkeypatch.setattr(documents, "READER_VERSION", READER_VERSION + 1)
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        with db.transaction(svc.sessions) as s:              # nothing kept: OCR'd again
            s.execute(update(db.Page).values(ocr=None))
        svc.reread_in_background().join(600)
        assert priorities and set(priorities) == {19} and set(threads) == {1}, (priorities, threads)
        assert [svc.documents.page(doc_id, n).text for n in (1, 2)] == texts
        assert svc.documents.outdated(svc.workspaces.by_name("w").id) == 0
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19      # this thread's own
    assert ocr.ocr_threads() is None


def test_a_stored_picture_of_a_page_is_not_ocrd_again(tmp_path, corpus, monkeypatch, recognised):
    pdf = pdfium.PdfDocument(str(corpus / "image-only.pdf"))
    pdf[0].render(scale=150 / 72).to_pil().convert("L").save(tmp_path / "scan.png")   # its own dpi
    pdf.close()
    with Services(Settings.from_env(data_dir=tmp_path / "data", engine="extractive")) as svc:
        doc = svc.documents.add(svc.workspaces.create("w").id, tmp_path / "scan.png")
        text = svc.documents.page(doc.id, 1).text
        assert recognised and "Preface" in text
        recognised.clear()
        monkeypatch.setattr(documents, "READER_VERSION", READER_VERSION + 1)
        assert svc.documents.reread_outdated() == {"changed": [], "unchanged": [doc.id], "kept": []}
        assert recognised == [] and svc.documents.page(doc.id, 1).text == text
        assert "frame at most" in _engines(svc, doc.id)[1]


OLD_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from app.config import Settings
    from app.services import Services
    data, scan = Path(sys.argv[1]), Path(sys.argv[2])
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        doc = svc.documents.add(svc.workspaces.create("w").id, scan)
        print(json.dumps({"id": doc.id, "texts": [svc.documents.page(doc.id, n).text for n in (1, 2)]}))
""")


def test_a_scan_stored_by_an_older_schema_is_ocrd_once_more_then_not_again(scan, tmp_path, monkeypatch, recognised):
    data = tmp_path / "data"
    made = run_old_code(OLD_SCHEMA, tmp_path, OLD_CHILD, data, scan)
    doc_id = made["id"]
    for newer in (1, 2):            # nothing tells what OCR read on its pages: OCR'd once more, then kept
        recognised.clear()
        monkeypatch.setattr(documents, "READER_VERSION", READER_VERSION + newer)
        with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
            assert svc.documents.reread_outdated() == {"changed": [], "unchanged": [doc_id], "kept": []}
            assert bool(recognised) == (newer == 1), newer
            assert [svc.documents.page(doc_id, n).text for n in (1, 2)] == made["texts"]
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        assert _engines(svc, doc_id) == {1: ocr.pdf_ocr_engine(), 2: None}
