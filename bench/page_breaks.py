"""Citations of sentences that span a page break: verified rate of the true sentences, and false ✓
on altered ones (two words swapped, a "not" inserted, numbers changed, the longer half taken from
another such sentence) and on page A's last whole sentence cited as page B, on real corpus PDFs.

    .venv/bin/python bench/page_breaks.py [--per-doc 30] [--seed 1] [--show]

Each sample: a sentence that starts at the bottom of page A and ends at the top of page B (after
B's running header), cited as "[doc 1, pp. A-B]", "[doc 1, p. A]" and "[doc 1, p. B]".
"""
from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.citations import parse_and_verify  # noqa: E402
from app.textutil import sentence_spans  # noqa: E402
from ingest import read_document  # noqa: E402
from ingest.prompt import citation_labels  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DOCS = ["r-intro.pdf", "gnuplot.pdf", "hsaur-inference.pdf", "debian-history-fr.pdf", "acm-sigconf.pdf"]
_END = re.compile(r"[.!?]\s")


def _key(line: str) -> str:
    return re.sub(r"[\d\W]+", " ", line).strip().casefold()


def _body_head(doc, i: int) -> str:
    """Page i's text without a first line repeated at the top of a nearby page (or a bare number)."""
    first = doc.pages[i].text.split("\n", 1)
    near = {_key(doc.pages[j].text.split("\n", 1)[0]) for j in (i - 2, i - 1, i + 1, i + 2)
            if 0 <= j < len(doc.pages) and j != i}
    return first[1] if len(first) > 1 and (_key(first[0]) in near or not _key(first[0])) else doc.pages[i].text


def samples(doc) -> list[tuple[int, str, str]]:
    """(page A, tail of A, head of B) for each page whose last sentence runs onto the next page."""
    out = []
    for i in range(len(doc.pages) - 1):
        a = doc.pages[i].text.rstrip()
        if "\n" in a and not _key(a.rsplit("\n", 1)[1]):
            a = a.rsplit("\n", 1)[0].rstrip()       # a page number at the foot
        if not a or a[-1] in ".!?:" or ". ." in a[-80:]:
            continue
        tail = a[max((m.end() for m in _END.finditer(a)), default=0):].strip()
        b = _body_head(doc, i + 1).lstrip()
        m = _END.search(b + " ")
        head = b[: m.start() + 1] if m else ""
        quote = f"{tail} {head}"
        if 8 <= len(tail) <= 300 and 8 <= len(head) <= 300 and len(quote) >= 40 and head[0].islower() \
                and not re.search(r"[{}]|> ", quote):
            out.append((doc.pages[i].number, " ".join(tail.split()), " ".join(head.split())))
    return out


def alter(kind: str, quote: str, rng: random.Random) -> str | None:
    """The quote with two words swapped, a "not" inserted or its numbers changed (None: nothing to change)."""
    words = quote.split()
    if kind == "swap":
        i, j = sorted(rng.sample(range(len(words)), 2))
        words[i], words[j] = words[j], words[i]
        return " ".join(words) if words != quote.split() else None
    if kind == "not":
        k = next((i for i, w in enumerate(words) if w.lower() in {"is", "are", "can", "may", "will", "was",
                                                                    "should", "must", "does", "est"}), 2)
        return " ".join(words[:k + 1] + ["not"] + words[k + 1:])
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 7), quote) if re.search(r"\d", quote) else None


def spliced(tail: str, head: str, found: list, rng: random.Random) -> str | None:
    """The sample with its longer half replaced by that of another sample (at least as long)."""
    keep, pool = (tail, [h for _, _, h in found]) if len(tail) < len(head) else (head, [t for _, t, _ in found])
    pool = [o for o in pool if len(o) >= len(keep) and o not in (tail, head)]
    if not pool:
        return None
    return f"{keep} {rng.choice(pool)}" if keep == tail else f"{rng.choice(pool)} {keep}"


def last_sentence(text: str) -> str | None:
    """The last whole sentence before a page's final (unfinished) one."""
    spans = sentence_spans(text)
    return " ".join(text[spans[-2].start:spans[-2].end].split()) if len(spans) > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-doc", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show", action="store_true", help="print each sample and its verdict cited as pp. A-B")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    ok = {"range": 0, "first": 0, "second": 0}
    false = {k: [0, 0] for k in ("swap", "not", "numbers", "elsewhere", "wrong page")}
    n = 0
    for name in DOCS:
        doc = read_document(CORPUS / name)
        found = samples(doc)
        shown = citation_labels(doc.pages)          # the page markers the prompt shows (r-intro: printed labels)
        print(f"{name}: {len(found)} sentences across a page break")
        for a, tail, head in rng.sample(found, min(args.per_doc, len(found))):
            quote = f"{tail} {head}"
            n += 1
            pa, pb = shown[a - 1].strip(), shown[a].strip()
            for form, cite in (("range", f"pp. {pa}-{pb}"), ("first", f"p. {pa}"), ("second", f"p. {pb}")):
                c = parse_and_verify(f"\u201c{quote}\u201d [doc 1, {cite}]", [doc])[1][0]
                ok[form] += c.verified
                if args.show and form == "range":
                    print(f"{name} p.{a} {c.verified} {c.score} {quote!r}")
            for kind in false:
                cite = f"p. {pb}" if kind == "wrong page" else f"pp. {pa}-{pb}"
                bad = (spliced(tail, head, found, rng) if kind == "elsewhere" else
                       last_sentence(doc.pages[a - 1].text) if kind == "wrong page" else alter(kind, quote, rng))
                if bad is not None:
                    c = parse_and_verify(f"\u201c{bad}\u201d [doc 1, {cite}]", [doc])[1][0]
                    false[kind][0] += c.verified
                    false[kind][1] += 1
    print(f"{n} sentences across a page break in {len(DOCS)} PDFs")
    print("verified: " + ", ".join(f"{k} {v}/{n}" for k, v in ok.items()))
    print("false ✓ (pp. A-B; wrong page: A's last whole sentence as p. B): "
          + ", ".join(f"{k} {v}/{t}" for k, (v, t) in false.items()))


if __name__ == "__main__":
    main()
