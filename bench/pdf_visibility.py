"""Cost of reading only what a PDF viewer shows: `read_document` on the real corpus with the two
visibility checks of ingest/pdf.py on, and with each one off (the baseline: both off, as before
2026-11-29):

  layers  `hidden_layers`: pypdf reads the catalog's optional content settings (once per file)
  edges   `_bounded_len` twice a page: is any text outside the page's box?

CPU time of this process, best of --repeat, the four settings interleaved file by file.

    .venv/bin/python bench/pdf_visibility.py [--corpus DIR] [--repeat 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest.pdf as pdf  # noqa: E402
from bench.ingest import CORPUS, REAL_PDFS  # noqa: E402
from ingest import read_document  # noqa: E402

SETTINGS = ["both off", "layers only", "edges only", "both on"]
_LAYERS, _BOUNDED = pdf.hidden_layers, pdf._bounded_len


def use(setting: str) -> None:
    """Turn the checks of `setting` on, the others off (an off edge check: no text found outside)."""
    pdf.hidden_layers = _LAYERS if setting in ("layers only", "both on") else (lambda *a, **k: frozenset())
    pdf._bounded_len = _BOUNDED if setting in ("edges only", "both on") else (lambda textpage, box: 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    best = {(name, s): float("inf") for name in REAL_PDFS for s in SETTINGS}
    read_document(args.corpus / REAL_PDFS[0])                  # imports (pypdf, ...) out of the timing
    for _ in range(args.repeat):
        for name in REAL_PDFS:
            for setting in SETTINGS:
                use(setting)
                start = time.process_time()
                read_document(args.corpus / name)
                best[name, setting] = min(best[name, setting], time.process_time() - start)
    use("both on")
    print(f"{'file':24}" + "".join(f"{s:>14}" for s in SETTINGS) + "   on/off")
    for name in REAL_PDFS:
        row = [best[name, s] * 1000 for s in SETTINGS]
        print(f"{name:24}" + "".join(f"{ms:11.1f} ms" for ms in row) + f"   {row[-1] / row[0]:.3f}x")
    totals = [sum(best[name, s] for name in REAL_PDFS) * 1000 for s in SETTINGS]
    print(f"{'all 8':24}" + "".join(f"{ms:11.1f} ms" for ms in totals) + f"   {totals[-1] / totals[0]:.3f}x")


if __name__ == "__main__":
    main()
