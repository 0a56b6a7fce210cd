"""`jambadocs ask` from a terminal while `jambadocs serve` runs on the same data folder: through the
server vs in its own process (`--local`, what every CLI ask did before 2026-11-28).

    python bench/cli_ask.py [--docs hsaur-inference.pdf pari-refcard.pdf] [--repeat 5] [--answer-tokens 32]

Tiny random checkpoint of bench/engine.py's shape (fp32, CPU), corpus PDFs ingested into one
workspace, a real `jambadocs serve` in a subprocess. Both ways are timed as a user sees them: the
wall time of a `python -m app.cli ask ... --json` subprocess, alternating, after one warm-up each
(the server has loaded the engine and the documents' state is in the store for both):

* **baseline, `--local`**: the CLI starts its own engine (reads the weights, restores the
  documents' state from the store on disk) and answers;
* **through the server**: the CLI sends the question to the running server, whose engine is
  loaded and whose documents' state is in RAM.

With a real checkpoint the baseline also reads gigabytes of weights per ask (and needs room for a
second copy of them); this tiny model shows the floor of the saving, not its size.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = Path(os.environ.get("JAMBADOCS_CORPUS", ROOT.parent / "shared" / "corpus"))


def cli(data: Path, *args: str) -> tuple[float, dict | str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAMBADOCS_")}
    env["OMP_NUM_THREADS"] = "2"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "app.cli", "--data-dir", str(data), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"jambadocs {' '.join(args)} failed:\n{out.stderr}")
    try:
        return wall, json.loads(out.stdout)
    except ValueError:
        return wall, out.stdout


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", nargs="+", default=["hsaur-inference.pdf", "pari-refcard.pdf"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--answer-tokens", type=int, default=32)
    a = ap.parse_args(argv)

    from engine.testing import BENCH_CONFIG, write_tiny_checkpoint
    from tests.ui.live_server import start_server

    with tempfile.TemporaryDirectory(prefix="jd-bench-cli-") as tmp:
        tmp = Path(tmp)
        model = write_tiny_checkpoint(tmp / "model", **BENCH_CONFIG)
        data = tmp / "data"
        cli(data, "ingest", "-w", "bench", *[str(CORPUS / d) for d in a.docs])
        server = start_server(data, "--model", str(model))
        try:
            q = ["ask", "-w", "bench", "Which test compares the means of two groups?", "--json",
                 "--max-new-tokens", str(a.answer_tokens)]
            local = ["--model", str(model), *q, "--local"]
            _, first = cli(data, *q)             # the server loads the engine, stores the documents' states
            cli(data, *local)                    # compiles nothing new; warms the page cache
            times: dict[str, list[float]] = {"local": [], "server": []}
            answers = set()
            for _ in range(a.repeat):
                for name, args in (("local", local), ("server", q)):
                    wall, out = cli(data, *args)
                    times[name].append(wall)
                    answers.add(out["answer"])
        finally:
            server.stop()
    prompt = first["timings"]["prefilled_tokens"] + first["timings"]["cached_tokens"]
    print(f"documents {', '.join(a.docs)}: {prompt} prompt tokens; answers of {a.answer_tokens} tokens; "
          f"{a.repeat} asks each, alternating")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, label in (("local", "baseline: ask --local (own engine)"), ("server", "through the server")):
        print(f"  {label:38s} median {med[name]:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"  through the server vs --local: {med['local'] / med['server']:.2f}x faster")
    print(f"  same answer both ways: {len(answers) == 1}")


if __name__ == "__main__":
    main()
