"""Showing a cited scanned page (the viewer's click on a citation chip: app.page_images.render_page
with the passage to mark), in one run on the same pages:

  OCR again   the page's image is OCR'd at the viewer's scale to find the passage (a page stored
              before pages kept what OCR read; the viewer's cache of OCR lines emptied first)
  kept lines  the lines ingest's OCR kept with the page (ingest.ocr.OcrPage), scaled to the image

Pages: image-only.pdf (a real 150 dpi scan) and its first page as a PNG picture. Passages: a few
lines of each page's OCR text. Per page: median seconds of each, their ratio, and the largest
distance in pixels between the boxes the two mark (the same lines must be marked).

    .venv/bin/python bench/cited_scan.py [--corpus DIR] [--passages 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pypdfium2 as pdfium  # noqa: E402

from app import page_images  # noqa: E402
from bench.ingest import CORPUS  # noqa: E402
from ingest import read_document  # noqa: E402


def show(path: Path, number: int, passage: str, kept) -> tuple[float, list]:
    """Seconds to render page `number` with `passage` marked, and the boxes marked."""
    page_images._OCR_ROWS.clear()
    start = time.perf_counter()
    page = page_images.render_page(path, number, highlight=passage, ocr=kept)
    seconds = time.perf_counter() - start
    assert page.highlighted, (path.name, number, passage)
    return seconds, page.boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--passages", type=int, default=3)
    args = parser.parse_args()
    scan = args.corpus / "image-only.pdf"
    folder = Path(tempfile.mkdtemp())
    picture = folder / "scan.png"
    pdf = pdfium.PdfDocument(str(scan))
    pdf[0].render(scale=150 / 72).to_pil().save(picture)
    pdf.close()
    print(f"{'page':<18} {'OCR again s':>11} {'kept lines s':>12} {'ratio':>7} {'max box diff px':>15}")
    for path in (scan, picture):
        doc = read_document(path)                     # OCR'd once, as when it was added (not timed)
        for page in doc.pages:
            lines = [ln for ln in page.text.splitlines() if len(ln) > 40]
            step = max(1, len(lines) // args.passages)
            again, kept, diff = [], [], 0
            for passage in lines[::step][:args.passages]:
                t_old, old = show(path, page.number, passage, None)
                t_new, new = show(path, page.number, passage, doc.ocr[page.number])
                assert len(old) == len(new), (path.name, page.number, passage, old, new)
                diff = max([diff] + [abs(a - b) for o, n in zip(old, new) for a, b in zip(o, n)])
                again.append(t_old)
                kept.append(t_new)
            a, k = statistics.median(again), statistics.median(kept)
            print(f"{path.name + ':' + str(page.number):<18} {a:>11.2f} {k:>12.3f} {a / k:>7.0f}x {diff:>15}")


if __name__ == "__main__":
    main()
