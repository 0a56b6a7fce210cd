"""HTML reading bench: `ingest.formats.html_sections` on pages of N sibling lines (a chat log or a
long <p>/<br> page in one <body>), timed per line, with the smallest page as the baseline.

    .venv/bin/python bench/html_reading.py [--lines 2000 8000 32000] [--repeats 3]
    .venv/bin/python bench/html_reading.py --file PAGE.html     # parser: lxml vs html.parser (baseline)

Linear reading keeps the per-line time flat as pages grow (ratio ~1). Before 2026-11-29 each block
was marked with `Tag.insert_after`, which looks the tag up among its siblings, and the ratio grew
with the page (quadratic reading); `--old` times that marking in the same run for comparison.

    .venv/bin/python bench/html_reading.py --nested [--lines 5000 10000 20000]

`--nested`: pages of N nested <div>s (a hostile page) instead. Before 2026-11-29 each block was
marked by appending a line break inside it, which walks the subtree below (5k/10k/20k deep: 5.7,
22, 77 s; 300k, a 3.3 MB page: hours); the text is now read in one walk without marking.
"""
from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import formats  # noqa: E402


def page(lines: int) -> str:
    rows = "".join(f"<p>[12:{i % 60:02d}] user{i % 7}: message number {i} about the build</p>"
                   for i in range(lines))
    return f"<html><head><title>log</title></head><body><h1>Chat log</h1>{rows}</body></html>"


def nested(depth: int) -> str:
    return "<html><body>" + "<div>line" * depth + "</div>" * depth + "</body></html>"


def old_marking(soup_blocks) -> None:
    """The marking before the fix (for --old): a newline after each block, by insert_after."""
    for tag in soup_blocks:
        tag.insert_after("\n")


def best_of(fn, repeats: int) -> float:
    """Best wall time of `repeats` runs (seconds)."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[2000, 8000, 32000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old", action="store_true", help="also time the old insert_after marking")
    ap.add_argument("--file", help="time this page with each BeautifulSoup parser instead")
    ap.add_argument("--nested", action="store_true", help="pages of N nested <div>s instead of N siblings")
    args = ap.parse_args()
    from bs4 import BeautifulSoup
    if args.file:
        data = Path(args.file).read_bytes()
        times = {}
        for parser in ("html.parser", "lxml"):
            formats.HTML_PARSER = parser
            times[parser] = best_of(lambda: formats.html_sections(data), args.repeats)
            print(f"{parser:>12} {times[parser]:8.2f} s   {times['html.parser'] / times[parser]:5.2f}x html.parser")
        return
    base = None
    print(f"{'lines':>7} {'html_sections s':>16} {'us/line':>8} {'ratio to first':>15}"
          + ("   old marking only s" if args.old else ""))
    for n in args.lines:
        markup = nested(n) if args.nested else page(n)
        s = best_of(lambda: formats.html_sections(markup), args.repeats)
        per_line = s / n
        base = base or per_line
        row = f"{n:>7} {s:>16.3f} {per_line * 1e6:>8.1f} {per_line / base:>15.2f}"
        if args.old:
            soup = BeautifulSoup(markup, "html.parser")
            t = time.perf_counter()
            old_marking(soup.find_all("p"))
            row += f"   {time.perf_counter() - t:>8.3f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
