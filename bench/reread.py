"""Re-reading a stored scan after a reader change (DocumentService.reread_outdated), with and without
what OCR read kept on its pages, in one run on one data folder:

  OCR again  the pages keep nothing (as every page did before they kept what OCR read, and as a
             document stored by an older schema does once): every scanned page is OCR'd again
  kept OCR   the pages keep what this OCR engine read: the re-read renders and recognises nothing

Each round stamps the document as read by an older reader (reader_version 0) first. The texts of
both must be the same; the seconds of each and their ratio are printed.

    .venv/bin/python bench/reread.py [--pdf image-only.pdf] [--rounds 2] [--corpus DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import db  # noqa: E402
from app.config import Settings  # noqa: E402
from app.services import Services  # noqa: E402
from bench.ingest import CORPUS  # noqa: E402


def reread(svc: Services, doc_id: int, keep_ocr: bool) -> tuple[float, list[str]]:
    """Seconds of one re-read of the document (stamped outdated first), and its page texts after."""
    with db.transaction(svc.sessions) as s:
        s.execute(update(db.Document).where(db.Document.id == doc_id).values(reader_version=0))
        if not keep_ocr:
            s.execute(update(db.Page).where(db.Page.document_id == doc_id).values(ocr=None))
    start = time.perf_counter()
    done = svc.documents.reread_outdated()
    seconds = time.perf_counter() - start
    assert done["unchanged"] == [doc_id], done
    pages = svc.documents.get(doc_id).pages
    return seconds, [svc.documents.page(doc_id, n).text for n in range(1, pages + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pdf", default="image-only.pdf", help="a scanned PDF in the corpus folder")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            Services(Settings.from_env(data_dir=Path(tmp), engine="extractive")) as svc:
        start = time.perf_counter()
        doc = svc.documents.add(svc.workspaces.create("bench").id, args.corpus / args.pdf)
        print(f"{args.pdf}: {doc.pages} pages, added (OCR) in {time.perf_counter() - start:.1f} s")
        best: dict[bool, float] = {}
        texts: dict[bool, list[str]] = {}
        for _ in range(args.rounds):
            for keep in (False, True):
                seconds, texts[keep] = reread(svc, doc.id, keep)
                best[keep] = min(best.get(keep, seconds), seconds)
        assert texts[False] == texts[True], "the kept OCR gave other text"
        print(f"re-read, OCR again: {best[False]:8.2f} s   (best of {args.rounds})")
        print(f"re-read, kept OCR:  {best[True]:8.2f} s")
        print(f"ratio OCR again / kept OCR: {best[False] / best[True]:.0f}x   (same texts)")


if __name__ == "__main__":
    main()
