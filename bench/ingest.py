"""Ingestion speed on the real corpus, in one run:

  ours    ingest.read_document: extraction, normalisation, labels, outline, title, hashing
  pdfium  the raw extractor we use: pypdfium2 open + get_text_range() per page, nothing else
  pypdf   pypdf PdfReader + extract_text() per page (the alternative we measured against)

Targets (issue 3): ours >= 10x pypdf's pages/s; ours / pdfium time <= 1.3x.
Also checks that pypdf and PDFium agree on page labels and outlines (why PDFium does those too).

    .venv/bin/python bench/ingest.py [--corpus DIR] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pypdf  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402

from ingest import read_document  # noqa: E402

REAL_PDFS = ["pari-refcard.pdf", "latexsheet-de.pdf", "acm-sigconf.pdf", "hsaur-inference.pdf",
             "debian-history-fr.pdf", "sexam-ar.pdf", "r-intro.pdf", "gnuplot.pdf"]
CORPUS = Path(os.environ.get("JAMBADOCS_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def raw_pdfium(path: Path) -> int:
    pdf = pdfium.PdfDocument(str(path))
    try:
        n = len(pdf)
        for i in range(n):
            page = pdf[i]
            textpage = page.get_textpage()
            textpage.get_text_range()
            textpage.close()
            page.close()
        return n
    finally:
        pdf.close()


def raw_pypdf(path: Path) -> int:
    reader = pypdf.PdfReader(str(path))
    for page in reader.pages:
        page.extract_text()
    return len(reader.pages)


def ours(path: Path) -> int:
    return len(read_document(path).pages)


def timed(fn, path: Path) -> tuple[float, float, int]:
    """(CPU seconds of this process, wall seconds, pages). CPU time is what we compare: the
    2-core test machines are shared, and wall time there mostly measures the neighbours."""
    c0, t0 = time.process_time(), time.perf_counter()
    pages = fn(path)
    return time.process_time() - c0, time.perf_counter() - t0, pages


def best_times(path: Path, repeat: int) -> dict[str, tuple[float, float, int]]:
    """Best of `repeat` for each method, the methods interleaved so load hits them alike."""
    best: dict[str, tuple[float, float, int]] = {}
    for r in range(repeat):
        for name, fn in (("ours", ours), ("pdfium", raw_pdfium), ("pypdf", raw_pypdf)):
            if name == "pypdf" and r:      # ~15x slower: once is enough
                continue
            cpu, wall, pages = timed(fn, path)
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, wall, pages)
    return best


def agreement(path: Path) -> dict:
    """Do pypdf and PDFium read the same labels and outline? And what does pypdf's part cost?"""
    t0 = time.perf_counter()
    reader = pypdf.PdfReader(str(path))
    has_labels = "/PageLabels" in reader.trailer["/Root"]
    pypdf_labels = reader.page_labels if has_labels else None

    def walk(items, level=0):
        out = []
        for item in items:
            if isinstance(item, list):
                out += walk(item, level + 1)
            else:
                out.append((item.title, level, reader.get_destination_page_number(item) + 1))
        return out

    pypdf_outline = walk(reader.outline)
    pypdf_s = time.perf_counter() - t0
    doc = read_document(path)
    ours_labels = [p.label for p in doc.pages] if has_labels else None
    ours_outline = [(t, lvl, n) for t, lvl, n in doc.outline]
    pypdf_outline = [(" ".join(t.replace("\xa0", " ").split()), lvl, n) for t, lvl, n in pypdf_outline]
    ours_outline = [(" ".join(t.split()), lvl, n) for t, lvl, n in ours_outline]
    return {"labels_equal": pypdf_labels == ours_labels, "outline_equal": pypdf_outline == ours_outline,
            "outline_entries": len(ours_outline), "pypdf_labels_outline_s": round(pypdf_s, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per file and method")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    rows, totals = [], {"ours": 0.0, "pdfium": 0.0, "pypdf": 0.0}
    walls = dict(totals)
    total_pages = 0
    print("pages per CPU second (best of --repeat)")
    print(f"{'file':24} {'pages':>5} {'ours p/s':>9} {'pdfium p/s':>10} {'pypdf p/s':>9} {'ours/pdfium':>11}"
          f" {'labels=':>7} {'outline=':>8}")
    for name in REAL_PDFS:
        path = args.corpus / name
        best = best_times(path, args.repeat)
        (t_ours, w_ours, n), (t_raw, w_raw, _), (t_pypdf, w_pypdf, _) = best["ours"], best["pdfium"], best["pypdf"]
        walls["ours"] += w_ours
        walls["pdfium"] += w_raw
        walls["pypdf"] += w_pypdf
        agree = agreement(path)
        totals["ours"] += t_ours
        totals["pdfium"] += t_raw
        totals["pypdf"] += t_pypdf
        total_pages += n
        row = {"file": name, "pages": n, "ours_s": t_ours, "pdfium_s": t_raw, "pypdf_s": t_pypdf,
               "ours_wall_s": w_ours, "pdfium_wall_s": w_raw, "pypdf_wall_s": w_pypdf, **agree}
        rows.append(row)
        print(f"{name:24} {n:5d} {n / t_ours:9.0f} {n / t_raw:10.0f} {n / t_pypdf:9.1f} {t_ours / t_raw:11.2f}"
              f" {str(agree['labels_equal']):>7} {str(agree['outline_equal']):>8}")
    pps = {k: total_pages / v for k, v in totals.items()}
    summary = {
        "pages": total_pages,
        "pages_per_cpu_s": {k: round(v, 1) for k, v in pps.items()},
        "pages_per_wall_s": {k: round(total_pages / v, 1) for k, v in walls.items()},
        "ours_vs_pypdf_speedup": round(pps["ours"] / pps["pypdf"], 1),
        "ours_over_pdfium_time": round(totals["ours"] / totals["pdfium"], 3),
        "overhead_ratios_median": round(statistics.median(r["ours_s"] / r["pdfium_s"] for r in rows), 3),
        "cpu_count": os.cpu_count(),
        "pypdfium2": pdfium.version.PYPDFIUM_INFO.version if hasattr(pdfium, "version") else "?",
        "pypdf": pypdf.__version__,
    }
    print(f"\nall {total_pages} pages, per CPU second: ours {pps['ours']:.0f} p/s, pdfium {pps['pdfium']:.0f} p/s, "
          f"pypdf {pps['pypdf']:.1f} p/s")
    print("per wall second: " + ", ".join(f"{k} {total_pages / v:.0f} p/s" for k, v in walls.items()))
    print(f"ours vs pypdf: {summary['ours_vs_pypdf_speedup']}x faster (target >= 10x); "
          f"ours / raw pdfium time: {summary['ours_over_pdfium_time']}x (target <= 1.3x)")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "files": rows}, indent=2))


if __name__ == "__main__":
    main()
