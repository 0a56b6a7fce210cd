"""Asking while stored documents are read again in the background, as `jambadocs serve` does at
start: how long a question takes with the machine idle, while a re-read OCRs a scan in an ordinary
thread (as Services.reread_in_background ran it before: normal priority, OCR on every core), and
while Services.reread_in_background does (lowest CPU priority, OCR on one core); in one run.

The scan is image-only.pdf's first page with nothing kept of its OCR (as after an OCR engine
upgrade), read again and again until the questions are done. The questions: the bundled engine on
the CPU with a small random checkpoint (engine.testing.BENCH_CONFIG) over two real pages
(hsaur-inference.pdf pp. 1 and 3), each in a new chat: the documents' cached state restored, the
question prefilled, --new-tokens tokens written. Printed: the median seconds of --asks questions
in each condition and their ratio to idle.

    .venv/bin/python bench/reread_ask.py [--asks 5] [--new-tokens 32] [--corpus DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import db  # noqa: E402
from app.config import Settings  # noqa: E402
from app.services import Services  # noqa: E402
from bench.ingest import CORPUS  # noqa: E402
from engine.testing import BENCH_CONFIG, write_tiny_checkpoint  # noqa: E402


def outdated(svc: Services, doc_id: int) -> None:
    """Stamp the document as read by an older reader, with no OCR kept on its pages."""
    with db.transaction(svc.sessions) as s:
        s.execute(update(db.Document).where(db.Document.id == doc_id).values(reader_version=0))
        s.execute(update(db.Page).where(db.Page.document_id == doc_id).values(ocr=None))


def ask_seconds(svc: Services, ws_id: int, n: int, question: str = "What is a t-test?") -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        svc.qa.answer(ws_id, question)
        times.append(time.perf_counter() - start)
    return times


def during(svc: Services, ws_id: int, scan_id: int, asks: int, background: bool) -> list[float]:
    """Seconds of `asks` questions while the scan is read again and again, by
    `svc.reread_in_background` or (`background` False) by `reread_outdated` in a plain thread."""
    asked = threading.Event()

    def plain() -> None:
        svc.documents.reread_outdated(stop=asked.is_set)

    def loop() -> None:
        while not asked.is_set():
            outdated(svc, scan_id)
            thread = svc.reread_in_background() if background else threading.Thread(target=plain)
            if not background:
                thread.start()
            thread.join()

    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(3.0)                                        # under way: the page is being OCR'd
    try:
        return ask_seconds(svc, ws_id, asks)
    finally:
        asked.set()
        worker.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--asks", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = write_tiny_checkpoint(work / "ckpt", seed=0, **BENCH_CONFIG)
        for source, pages, name in (("hsaur-inference.pdf", (0, 2), "pages.pdf"), ("image-only.pdf", (0,), "scan.pdf")):
            reader, writer = PdfReader(args.corpus / source), PdfWriter()
            for i in pages:
                writer.add_page(reader.pages[i])
            writer.write(work / name)
        settings = Settings.from_env(data_dir=work / "data", model=str(ckpt), engine="jamba", device="cpu",
                                     max_new_tokens=args.new_tokens)
        with Services(settings) as svc:
            ws = svc.workspaces.create("ask")
            svc.documents.add(ws.id, work / "pages.pdf")
            scan = svc.documents.add(svc.workspaces.create("scans").id, work / "scan.pdf")
            ask_seconds(svc, ws.id, 2)                     # the engine loads, the documents are cached
            rows = {"idle": ask_seconds(svc, ws.id, args.asks),
                    "re-read in a plain thread (before)": during(svc, ws.id, scan.id, args.asks, False),
                    "re-read by reread_in_background": during(svc, ws.id, scan.id, args.asks, True)}
        idle = statistics.median(rows["idle"])
        print(f"question over 2 pages, {args.new_tokens} new tokens; median of {args.asks} (min-max), ratio to idle")
        for what, times in rows.items():
            median = statistics.median(times)
            print(f"  {what:36s} {median:6.2f} s  ({min(times):.2f}-{max(times):.2f})  {median / idle:4.1f}x")


if __name__ == "__main__":
    main()
