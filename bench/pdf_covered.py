"""Cost of leaving out text hidden under a box drawn over it or in its box's colour
(ingest/pdf_covered.py) when reading the real corpus: `read_document` with the check on and off (as
before it), the two interleaved file by file in the same run, CPU time of this process, best of
--repeat. Also checks that the check changes no corpus PDF's page text, and counts its renders and
hidden objects.

    .venv/bin/python bench/pdf_covered.py [--corpus DIR] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest.pdf as pdf  # noqa: E402
import ingest.pdf_covered as covered  # noqa: E402
from bench.ingest import CORPUS, REAL_PDFS  # noqa: E402
from ingest import read_document  # noqa: E402

_CHECK, _RENDER = pdf.hide_covered_text, covered._render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    counts = {"hidden": 0, "renders": 0}

    def counted(page, *shown):
        found = _CHECK(page, *shown)
        counts["hidden"] += found.hidden
        return found

    def counted_render(page):
        counts["renders"] += 1
        return _RENDER(page)

    covered._render = counted_render
    total = {"off": 0.0, "on": 0.0}
    print(f"{'file':24} {'off s':>8} {'on s':>8} {'ratio':>6}  same text")
    for name in REAL_PDFS:
        best, texts = {}, {}
        for _ in range(args.repeat):
            for setting in ("off", "on"):
                pdf.hide_covered_text = counted if setting == "on" else (lambda page, *shown: covered.Covered())
                start = time.process_time()
                doc = read_document(args.corpus / name)
                spent = time.process_time() - start
                best[setting] = min(best.get(setting, spent), spent)
                texts[setting] = [page.text for page in doc.pages]
        for setting in total:
            total[setting] += best[setting]
        same = texts["on"] == texts["off"]
        print(f"{name:24} {best['off']:8.3f} {best['on']:8.3f} {best['on'] / best['off']:6.2f}  {same}")
    pdf.hide_covered_text, covered._render = _CHECK, _RENDER
    print(f"{'all':24} {total['off']:8.3f} {total['on']:8.3f} {total['on'] / total['off']:6.2f}")
    print(f"over {args.repeat} runs with the check on: {counts['hidden']} text objects left out, "
          f"{counts['renders']} page renders")


if __name__ == "__main__":
    main()
