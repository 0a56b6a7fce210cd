"""OCR bench: corpus pages that have a text layer, rendered to images and read back by RapidOCR, so
the text layer is the ground truth.

    .venv/bin/python bench/ocr.py [--scales 1.0 1.5 2.0] [--pages acm-sigconf.pdf:2 r-intro.pdf:20 ...]

Per page and render scale (x 72 dpi): seconds to recognise, word recall against the text layer,
and reading order: the share of consecutive OCR rows whose text comes in the text layer's order,
for RapidOCR's own line order (the baseline) and for `ingest.ocr.reading_order`. Also
`image-only.pdf` (a real 150 dpi scan of r-intro.pdf pages 7-9) through `read_document`, against
those pages' text layer. Times are printed as ratios to the scale-1.0 run of the same page.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pypdfium2 as pdfium  # noqa: E402
from rapidfuzz import fuzz  # noqa: E402

from ingest import read_document  # noqa: E402
from ingest.ocr import ocr_available, reading_order, recognise  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
PAGES = ["acm-sigconf.pdf:2", "acm-sigconf.pdf:3", "r-intro.pdf:20", "debian-history-fr.pdf:9",
         "hsaur-inference.pdf:5"]


def words(text: str) -> Counter:
    return Counter(re.findall(r"[a-zà-ÿ]{3,}", text.lower()))


def recall(got: str, expected: str) -> float:
    want = words(expected)
    return sum((want & words(got)).values()) / max(1, sum(want.values()))


def in_order(rows: list[str], reference: str) -> tuple[float, int]:
    """Share of consecutive located rows that keep the reference's order, and how many were located."""
    ref = re.sub(r"\s+", " ", reference).lower()
    positions = []
    for row in rows:
        text = re.sub(r"\s+", " ", row).strip().lower()
        if len(text) >= 12:
            hit = fuzz.partial_ratio_alignment(text[:40], ref, score_cutoff=85)
            if hit:
                positions.append(hit.dest_start)
    kept = sum(1 for a, b in zip(positions, positions[1:]) if b >= a)
    return kept / max(1, len(positions) - 1), len(positions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    ap.add_argument("--pages", nargs="+", default=PAGES, help="FILE:PAGE (1-based) from the corpus")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    if not ocr_available():
        sys.exit("rapidocr / onnxruntime are not installed")
    recognise(pdfium.PdfDocument(str(args.corpus / "r-intro.pdf"))[0].render(scale=0.5).to_numpy())   # warm up

    print("| page | scale (dpi) | s to recognise | vs scale 1.0 | word recall | in order: RapidOCR (baseline) | in order: reading_order |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for spec in args.pages:
        name, number = spec.rsplit(":", 1)
        pdf = pdfium.PdfDocument(str(args.corpus / name))
        page = pdf[int(number) - 1]
        truth = page.get_textpage().get_text_range()
        base = None
        for scale in args.scales:
            image = page.render(scale=scale).to_numpy()
            t0 = time.perf_counter()
            lines = recognise(image)
            seconds = time.perf_counter() - t0
            base = base or seconds
            ordered = [" ".join(ln.text for ln in row) for row in reading_order(lines, image.shape[1])]
            raw, _ = in_order([ln.text for ln in lines], truth)
            ours, _ = in_order(ordered, truth)
            print(f"| {name} p. {number} | {scale:.1f} ({72 * scale:.0f}) | {seconds:.2f} | {seconds / base:.2f}x "
                  f"| {recall(' '.join(ordered), truth):.3f} | {raw:.2f} | {ours:.2f} |")
        pdf.close()

    t0 = time.perf_counter()
    doc = read_document(args.corpus / "image-only.pdf")
    seconds = time.perf_counter() - t0
    src = pdfium.PdfDocument(str(args.corpus / "r-intro.pdf"))
    scores = [recall(p.text, src[6 + i].get_textpage().get_text_range()) for i, p in enumerate(doc.pages)]
    print(f"\nimage-only.pdf (a 150 dpi scan of r-intro.pdf pp. 7-9) through read_document: {seconds:.1f} s for "
          f"{len(doc.pages)} pages; word recall per page {', '.join(f'{s:.3f}' for s in scores)}")


if __name__ == "__main__":
    main()
