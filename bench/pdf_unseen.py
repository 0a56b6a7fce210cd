"""Cost of leaving out text drawn unseen (ingest/pdf_hidden.py: white on white, under 1 pt) when
reading the real corpus: `read_document` with the check off (as before 2026-11-29), on, and on with
its per-object scan (and the page-edge check's) in Python instead of C (ingest/pdf_native.py, as on a
machine without a C compiler), interleaved file by file in the same run, CPU time of this process,
best of --repeat. Also checks that the check changes no corpus PDF's page text, and counts its
hidden objects and renders.

    .venv/bin/python bench/pdf_unseen.py [--corpus DIR] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest.pdf as pdf  # noqa: E402
import ingest.pdf_hidden as hidden  # noqa: E402
import ingest.pdf_native as native  # noqa: E402
from bench.ingest import CORPUS, REAL_PDFS  # noqa: E402
from ingest import read_document  # noqa: E402

_CHECK = pdf.hide_unseen_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    counts = {"hidden": 0, "renders": 0}
    render = hidden.np.asarray

    def counted(page):
        n = _CHECK(page)
        counts["hidden"] += n
        return n

    def counting_asarray(*a, **k):
        counts["renders"] += 1
        return render(*a, **k)

    hidden.np.asarray = counting_asarray
    total = {"off": 0.0, "on": 0.0, "python": 0.0}
    c_lib = native.lib()
    print(f"{'file':24} {'off s':>8} {'on s':>8} {'ratio':>6} {'python s':>8}  same text"
          + ("" if c_lib else "  (no C library: 'on' runs in Python too)"))
    for name in REAL_PDFS:
        path = args.corpus / name
        best, texts = {}, {}
        for _ in range(args.repeat):
            for setting in ("off", "on", "python"):
                pdf.hide_unseen_text = (lambda page: 0) if setting == "off" else counted
                native._lib = None if setting == "python" else c_lib
                start = time.process_time()
                doc = read_document(path)
                spent = time.process_time() - start
                best[setting] = min(best.get(setting, spent), spent)
                texts[setting] = [page.text for page in doc.pages]
        for setting in total:
            total[setting] += best[setting]
        same = texts["on"] == texts["off"] == texts["python"]
        print(f"{name:24} {best['off']:8.3f} {best['on']:8.3f} {best['on'] / best['off']:6.2f} {best['python']:8.3f}"
              f"  {same}")
    hidden.np.asarray = render
    native._lib = c_lib
    print(f"{'all':24} {total['off']:8.3f} {total['on']:8.3f} {total['on'] / total['off']:6.2f} {total['python']:8.3f}")
    print(f"over {args.repeat} runs with the check on (C and Python): {counts['hidden']} text objects left out, "
          f"{counts['renders']} page renders")


if __name__ == "__main__":
    main()
