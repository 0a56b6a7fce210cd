"""What a delete writes, and the space it gives back, on a database of realistic size (app/db.py):

  wal      bytes a delete appends to SQLite's WAL with secure_delete ON (ours, and this SQLite's
           build default: every freed page zeroed) and FAST (the retry on a full disk): what a
           full disk must have room for
  reclaim  ms of the delete transaction and of db.reclaim_space after it (incremental vacuum in
           steps + checkpoint), and the database + WAL bytes before and after
  convert  ms of the one VACUUM that converts an older database (auto_vacuum NONE)

The database: --workspaces copies of a workspace holding the eight real corpus PDFs (each read
once; 1.8 MB of page text per workspace, so 60 make a 100 MB database of 480 documents).

    .venv/bin/python bench/storage_space.py [--workspaces 60] [--corpus DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import db  # noqa: E402
from app.config import Settings  # noqa: E402
from app.services import Services  # noqa: E402
from ingest import read_document  # noqa: E402

REAL_PDFS = ["gnuplot.pdf", "r-intro.pdf", "debian-history-fr.pdf", "hsaur-inference.pdf",
             "acm-sigconf.pdf", "pari-refcard.pdf", "latexsheet-de.pdf", "sexam-ar.pdf"]
MB = 1e6


def on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def checkpoint(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def build(data: Path, corpus: Path, workspaces: int) -> Services:
    svc = Services(Settings.from_env(data_dir=data, engine="extractive"))
    docs = [(corpus / n, read_document(corpus / n)) for n in REAL_PDFS]
    for i in range(workspaces):
        ws = svc.workspaces.create(f"w{i}")
        for path, doc in docs:
            svc.documents._insert(ws.id, path, path.stat().st_size, doc)
    checkpoint(svc.settings.db_path)
    return svc


def wal_bytes(src: Path, work: Path, secure_delete: str, sql: str) -> int:
    """WAL bytes one delete statement appends, on a fresh copy of the database."""
    copy = work / f"wal-{secure_delete}.sqlite3"
    shutil.copy(src, copy)
    con = sqlite3.connect(copy, isolation_level=None)
    for pragma in ("journal_mode = WAL", "foreign_keys = ON", f"secure_delete = {secure_delete}"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("BEGIN IMMEDIATE")
    con.execute(sql)
    con.execute("COMMIT")
    size = Path(f"{copy}-wal").stat().st_size
    con.close()
    copy.unlink()
    Path(f"{copy}-wal").unlink(missing_ok=True)
    Path(f"{copy}-shm").unlink(missing_ok=True)
    return size


def timed_delete(svc: Services, what: str, delete) -> None:
    path = svc.settings.db_path
    before = on_disk(path)
    t0 = time.perf_counter()
    svc.delete_rows(what, delete)
    t1 = time.perf_counter()
    db.reclaim_space(svc.db)
    t2 = time.perf_counter()
    print(f"  {what:<28} delete {1e3 * (t1 - t0):7.1f} ms  reclaim {1e3 * (t2 - t1):7.1f} ms  "
          f"database {before / MB:6.1f} -> {on_disk(path) / MB:6.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspaces", type=int, default=60)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    args = ap.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), f"sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(prefix="jd-space-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        svc = build(work / "data", args.corpus, args.workspaces)
        path = svc.settings.db_path
        n_docs = args.workspaces * len(REAL_PDFS)
        print(f"database: {args.workspaces} workspaces, {n_docs} documents, {on_disk(path) / MB:.1f} MB "
              f"(built in {time.perf_counter() - t0:.0f} s)")

        print("wal: bytes a delete appends to the WAL")
        gnuplot = "DELETE FROM documents WHERE id = 1"
        workspace = "DELETE FROM workspaces WHERE id = 2"
        for label, sql in (("document (gnuplot, 311 pages)", gnuplot), ("workspace (8 documents)", workspace)):
            on, fast = (wal_bytes(path, work, mode, sql) for mode in ("ON", "FAST"))
            print(f"  {label:<30} ON {on / MB:6.2f} MB  FAST {fast / MB:6.2f} MB  ({on / fast:.1f}x)")

        print("reclaim: after each delete (auto_vacuum = INCREMENTAL)")
        ids = [w.id for w in svc.workspaces.list()]
        first_doc = svc.documents.list(ids[0])[0].id
        timed_delete(svc, "document (gnuplot)", lambda s: s.delete(s.get(db.Document, first_doc)))
        timed_delete(svc, "workspace (8 documents)", lambda s: s.delete(s.get(db.Workspace, ids[1])))
        tenth = ids[2: 2 + max(1, len(ids) // 10)]
        timed_delete(svc, f"{len(tenth)} workspaces at once",
                     lambda s: [s.delete(s.get(db.Workspace, i)) for i in tenth])
        svc.close()

        print("convert: an older database (auto_vacuum NONE): half its workspaces deleted")
        old = Services(Settings.from_env(data_dir=work / "data", engine="extractive"))
        con = sqlite3.connect(path)
        con.executescript("PRAGMA auto_vacuum = NONE; VACUUM;")
        con.close()
        rest = [w.id for w in old.workspaces.list()]
        checkpoint(path)
        half = rest[: len(rest) // 2]
        timed_delete(old, f"{len(half)} workspaces (old database)",
                     lambda s: [s.delete(s.get(db.Workspace, i)) for i in half])
        print("  auto_vacuum now", sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0],
              "(2 = incremental)")
        old.close()


if __name__ == "__main__":
    main()
