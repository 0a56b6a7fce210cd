"""Cost of leaving out text drawn unseen (ingest/pdf_hidden.py: white on white, under 1 pt) when
reading the real corpus: `read_document` with the check on and off (as before 2026-11-29), the two
interleaved file by file in the same run, CPU time of this process, best of --repeat. Also checks
that the check changes no corpus PDF's page text, and counts its candidates and hidden objects.

    .venv/bin/python bench/pdf_unseen.py [--corpus DIR] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest.pdf as pdf  # noqa: E402
import ingest.pdf_hidden as hidden  # noqa: E402
from ingest import read_document  # noqa: E402

REAL_PDFS = ["pari-refcard.pdf", "latexsheet-de.pdf", "acm-sigconf.pdf", "hsaur-inference.pdf",
             "debian-history-fr.pdf", "sexam-ar.pdf", "r-intro.pdf", "gnuplot.pdf"]
_CHECK = pdf.hide_unseen_text


def main() -> None:
    default_corpus = Path(__file__).resolve().parents[2] / "shared" / "corpus"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("JAMBADOCS_CORPUS", default_corpus)))
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
    total = {"off": 0.0, "on": 0.0}
    print(f"{'file':24} {'off s':>8} {'on s':>8} {'ratio':>6}  same text")
    for name in REAL_PDFS:
        path = args.corpus / name
        best, texts = {}, {}
        for _ in range(args.repeat):
            for setting in ("off", "on"):
                pdf.hide_unseen_text = counted if setting == "on" else (lambda page: 0)
                start = time.process_time()
                doc = read_document(path)
                spent = time.process_time() - start
                best[setting] = min(best.get(setting, spent), spent)
                texts[setting] = [page.text for page in doc.pages]
        for setting in total:
            total[setting] += best[setting]
        same = texts["on"] == texts["off"]
        print(f"{name:24} {best['off']:8.3f} {best['on']:8.3f} {best['on'] / best['off']:6.2f}  {same}")
    hidden.np.asarray = render
    print(f"{'all':24} {total['off']:8.3f} {total['on']:8.3f} {total['on'] / total['off']:6.2f}")
    print(f"over {args.repeat} runs with the check on: {counts['hidden']} text objects left out, "
          f"{counts['renders']} page renders")


if __name__ == "__main__":
    main()
