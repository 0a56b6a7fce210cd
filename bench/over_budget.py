"""Follow-ups on a document set larger than the context: the earlier page choice kept vs chosen afresh.

    python bench/over_budget.py [--context 16384] [--threads 1] [--repeats 2]

Tiny random checkpoint (bench/engine.py's shape, fp32) with a `--context`-token context and real
corpus documents many times that long. A first question (its pages chosen by BM25), then a follow-up in
the same chat, answered two ways on fresh data folders:

* **baseline, fresh choice**: the follow-up chooses its pages anew, as every question did before
  2026-11-28 (the store's earlier selection hidden from the answerer);
* **kept**: the answerer keeps the earlier pages when they match the follow-up nearly as well as a
  fresh choice (app/answerers/jamba.py, ingest/budget.py `prefer`), so their stored states serve it.

Prints each one's TTFT (wall and CPU), tokens from the cache and prefilled, how its pages were
chosen, and the ratio baseline / kept. Then a question on another topic, which chooses afresh.

    python bench/over_budget.py --pages 4000 [--context 16384] [--baseline ac49897] [--repeats 1]

**A set far larger than the context**: the corpus PDFs repeated to `--pages` pages (each copy's pages
end with "(copy k)", so that no page text repeats and no cache keyed by text is hit), a first question
and a second on another topic, each way in a fresh process, then a third question in a new process
on the same data folder (a restarted server):

* **baseline**: the code of `--baseline` (git archive of that commit); at ac49897 the first question
  counted the tokens of every page (kept in the state store for the next process) and built the
  BM25 index of the pages;
* **now**: this working tree. Before its first question, each process does what `jambadocs serve`
  does in the background when the documents are added, and at start for those stored before
  (`JambaAnswerer.count_pages`, then `index_pages`); when the baseline's answerer has no
  `count_pages`, it does nothing there. That work is timed apart ("background").

Prints per way the first-token time (wall, CPU), the background work's time, the peak RSS of the
process (engine and documents included), and checks that both built the same prompt (the chain key
of its documents and the pages left out) and gave the same answer.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cache import CORPUS, ask, answerer_for  # noqa: E402
from engine.testing import BENCH_CONFIG  # noqa: E402

DOCUMENTS = ["gnuplot.pdf", "r-intro.pdf"]
Q1 = "Which command sets the title of a plot?"
Q2 = "How do I set the title of a plot, and where does the title go?"
Q3 = "How do I read a data frame from a file with read.table?"


def how(result: dict) -> str:
    summary = result["omitted_summary"]
    return "kept from the earlier question" if "earlier question" in summary else (
        "chosen by BM25" if summary else "all fit")


def run(ckpt: Path, docs: list, keep: bool, work: Path) -> dict:
    a = answerer_for(ckpt, work)
    if not keep:                                   # the baseline: no earlier selection is ever found
        a.store.selection = lambda key: None
    first = ask(a, docs, Q1)
    follow = ask(a, docs, Q2, history=[("user", Q1), ("assistant", first["text"])])
    other = ask(a, docs, Q3, history=[("user", Q1), ("assistant", first["text"]), ("user", Q2),
                                      ("assistant", follow["text"])])
    return {"first": first, "follow": follow, "other": other}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each way; the fastest follow-up counts")
    ap.add_argument("--pages", type=int, default=0, help="a set of this many pages: baseline vs now (see above)")
    ap.add_argument("--baseline", default="ac49897", help="with --pages: the commit of the baseline")
    ap.add_argument("--child", nargs=3, metavar=("ROOT", "CKPT", "DATA"), help=argparse.SUPPRESS)
    ap.add_argument("--restart", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child and args.memory:
        return plan_memory_child(*map(Path, args.child), pages=args.pages)
    if args.child:
        return big_set_child(*map(Path, args.child), pages=args.pages, threads=args.threads,
                             questions=[BIG_RESTART] if args.restart else BIG_QUESTIONS)
    if args.pages:
        return big_set(args)
    import torch
    torch.set_num_threads(args.threads)
    from engine import load_engine
    from engine.testing import write_tiny_checkpoint
    from ingest import read_document

    docs = [read_document(CORPUS / name) for name in DOCUMENTS]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "ckpt", **dict(BENCH_CONFIG, max_position_embeddings=args.context))
        load_engine(ckpt)                          # compile the CPU kernels before any timing
        best: dict[bool, dict] = {}
        for r in range(args.repeats):              # the two ways alternate (the machine is shared)
            for keep in (False, True):
                res = run(ckpt, docs, keep, Path(tmp) / f"data-{keep}-{r}")
                if keep not in best or res["follow"]["ttft_s"] < best[keep]["follow"]["ttft_s"]:
                    best[keep] = res
    print(f"context {args.context} tokens, {args.threads} thread(s), documents {', '.join(DOCUMENTS)} "
          f"(pages chosen by BM25 when the set does not fit); fastest follow-up of {args.repeats} per way")
    print(f"{'':34} {'TTFT s':>8} {'CPU s':>8} {'cached':>8} {'prefilled':>9}  pages")
    for keep, label in ((False, "baseline (fresh choice)"), (True, "kept earlier choice")):
        for name in ("first", "follow", "other"):
            t = best[keep][name]
            print(f"{label + ' / ' + name:34} {t['ttft_s']:8.2f} {t['ttft_cpu_s']:8.2f} {t['cached_tokens']:8d} "
                  f"{t['prefilled_tokens']:9d}  {how(t)}")
    base, kept = best[False]["follow"], best[True]["follow"]
    print(f"follow-up TTFT, baseline / kept: {base['ttft_s'] / kept['ttft_s']:.1f}x wall, "
          f"{base['ttft_cpu_s'] / kept['ttft_cpu_s']:.1f}x CPU")


BIG_SOURCES = ["gnuplot.pdf", "r-intro.pdf", "debian-history-fr.pdf", "hsaur-inference.pdf", "acm-sigconf.pdf"]
BIG_QUESTIONS = [Q1, Q3]
BIG_RESTART = "How do I fit a linear model and print its coefficients?"
BIG_NEW_TOKENS = 8


def big_documents(pages: int) -> list:
    """The corpus PDFs repeated until `pages` pages; each copy's pages end with "(copy k)"."""
    from ingest import Page, read_document

    base = [read_document(CORPUS / name) for name in BIG_SOURCES]
    docs, total, k = [], 0, 0
    while total < pages:
        d = base[k % len(base)]
        docs.append(dataclasses.replace(d, filename=f"{k // len(base)}-{d.filename}", pages=[
            Page(p.number, p.label, f"{p.text}\n(copy {k})") for p in d.pages]))
        total += len(d.pages)
        k += 1
    return docs


def big_set_child(root: Path, ckpt: Path, data: Path, pages: int, threads: int, questions: list[str]) -> None:
    """One way, in this process: the code under `root` answers `questions` on the big set; prints JSON."""
    sys.path.insert(0, str(root))
    import torch
    torch.set_num_threads(threads)
    from app.answerers.jamba import JambaAnswerer
    from app.config import Settings
    from engine import load_engine
    from ingest.budget import preload_retrieval

    docs = big_documents(pages)
    a = JambaAnswerer(Settings(data_dir=data, model=str(ckpt), engine="jamba", cache_bytes=64 * 1024**3),
                      engine=load_engine(ckpt))
    preload_retrieval().join()                      # as the server does at start-up
    background = background_cpu = None
    if hasattr(a, "count_pages"):                   # as the server does once the documents are added
        t0, c0 = time.perf_counter(), time.process_time()
        a.count_pages(docs)
        a.index_pages(docs)
        background, background_cpu = time.perf_counter() - t0, time.process_time() - c0
    out = []
    for question in questions:
        r = ask(a, docs, question)
        out.append({"ttft_s": r["ttft_s"], "ttft_cpu_s": r["ttft_cpu_s"], "text": r["text"],
                    "summary": r["omitted_summary"], "chain": a._warm.keys[-1],
                    "prompt_tokens": r["prompt_tokens"]})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"asks": out, "peak_rss_mib": rss, "pages": sum(len(d.pages) for d in docs),
                      "documents": len(docs), "background_s": background, "background_cpu_s": background_cpu}))


def plan_memory_child(root: Path, ckpt: Path, data: Path, pages: int) -> None:
    """The Python memory (tracemalloc) the first question's prompt plan takes on the big set, at its
    peak and held after it (caches), in this process under the code of `root`; prints JSON. Apart
    from the timed runs: tracing slows Python down."""
    import tracemalloc

    sys.path.insert(0, str(root))
    from app.answerers.base import AnswerRequest
    from app.answerers.jamba import JambaAnswerer
    from app.config import Settings
    from engine import load_engine
    from ingest.budget import preload_retrieval

    docs = big_documents(pages)
    a = JambaAnswerer(Settings(data_dir=data, model=str(ckpt), engine="jamba"), engine=load_engine(ckpt))
    a.builder
    preload_retrieval().join()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    plan = a._plan(a.engine, AnswerRequest(docs, BIG_QUESTIONS[0], [], max_new_tokens=BIG_NEW_TOKENS))
    try:
        while True:
            next(plan)
    except StopIteration:
        pass
    held, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"plan_peak_mib": (peak - before) / 2**20, "plan_held_mib": (held - before) / 2**20}))


def big_set(args: argparse.Namespace) -> None:
    import bench.cache
    from engine.testing import write_tiny_checkpoint

    bench.cache.MAX_NEW = BIG_NEW_TOKENS
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = write_tiny_checkpoint(tmp / "ckpt", **dict(BENCH_CONFIG, max_position_embeddings=args.context))
        old = tmp / "baseline"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        env = dict(os.environ, PYTHONPATH="")
        # the engine's C kernels compiled once, before any timing, for each tree
        for root in (old, ROOT):
            subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r}); "
                            f"from engine import load_engine; load_engine({str(ckpt)!r})"], check=True, env=env)
        runs: dict[str, list[dict]] = {"baseline": [], "now": []}
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for r in range(args.repeats):               # the two ways alternate (the machine is shared)
            for way, root in (("baseline", old), ("now", ROOT)):
                asks, background, first_run = [], [], None
                for restart in (False, True):       # then a new process on the same data folder
                    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "over_budget.py"), "--child",
                                           str(root), str(ckpt), str(tmp / f"data-{way}-{r}"), "--pages",
                                           str(args.pages), "--threads", str(args.threads)]
                                          + (["--restart"] if restart else []),
                                          check=True, capture_output=True, text=True, env=env)
                    run = json.loads(proc.stdout.strip().splitlines()[-1])
                    asks += run["asks"]
                    background.append((run["background_s"], run["background_cpu_s"]))
                    first_run = first_run if restart else run
                runs[way].append(dict(first_run, asks=asks, background=background))
        memory = {}
        for way, root in (("baseline", old), ("now", ROOT)):
            proc = subprocess.run([sys.executable, str(ROOT / "bench" / "over_budget.py"), "--child", str(root),
                                   str(ckpt), str(tmp / f"memory-{way}"), "--pages", str(args.pages), "--memory"],
                                  check=True, capture_output=True, text=True, env=env)
            memory[way] = json.loads(proc.stdout.strip().splitlines()[-1])
        ended = time.strftime("%H:%M UTC", time.gmtime())
    first = runs["now"][0]
    labels = ["first question", "another topic", "new process, new question"]
    print(f"{started} - {ended}: {first['documents']} documents, {first['pages']} pages (corpus PDFs repeated), "
          f"context {args.context} tokens, {args.threads} thread(s), {BIG_NEW_TOKENS} new tokens; each way in a "
          f"fresh process and data folder, then a new process on that folder; fastest of {args.repeats}; "
          f"baseline = commit {args.baseline}")
    print(f"{'':38} {'TTFT s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    best = {}
    for way in ("baseline", "now"):
        rss = max(run["peak_rss_mib"] for run in runs[way])
        for q, label in enumerate(labels):
            t = best[way, q] = min((run["asks"][q] for run in runs[way]), key=lambda a: a["ttft_s"])
            print(f"{way + ' / ' + label:38} {t['ttft_s']:8.2f} {t['ttft_cpu_s']:8.2f} "
                  f"{f'{rss:.0f}' if q == 0 else '':>13}")
    for way in ("baseline", "now"):
        for p, label in enumerate(("added (before the first question)", "at the new process's start")):
            done = [run["background"][p] for run in runs[way] if run["background"][p][0] is not None]
            if done:
                wall, cpu = min(done)
                print(f"{way} / background work when {label}: {wall:.2f} s wall, {cpu:.2f} s CPU "
                      f"(counting pages, then the BM25 index; not waited for by a question)")
    same = all(run["asks"][q][k] == runs["baseline"][0]["asks"][q][k] for way in runs for run in runs[way]
               for q in range(len(labels)) for k in ("chain", "summary", "text", "prompt_tokens"))
    print(f"same prompts (document chain keys, pages left out, prompt tokens) and answers: {'yes' if same else 'NO'}")
    for way in ("baseline", "now"):
        print(f"{way}: the first question's prompt plan allocates {memory[way]['plan_peak_mib']:.0f} MiB at its peak "
              f"(Python, tracemalloc, a separate process), {memory[way]['plan_held_mib']:.0f} MiB held after it")
    for q, label in enumerate(labels):
        b, n = best["baseline", q], best["now", q]
        print(f"{label}: TTFT baseline / now {b['ttft_s'] / n['ttft_s']:.2f}x wall, "
              f"{b['ttft_cpu_s'] / n['ttft_cpu_s']:.2f}x CPU")

if __name__ == "__main__":
    main()
