"""Read a PDF in a child process with a hard time limit.

The in-process reader checks its deadline between pages, but one PDFium call on a malicious or
pathological file cannot be interrupted (and a crash in it would take the app down). With
`read_document(..., isolate=True)` the PDF is parsed by `python -m ingest.isolated` instead: it
reports progress and the result as JSON lines on stdout (never pickle: the child parses untrusted
bytes, so what it sends back is plain data), and is killed when `timeout_s` runs out.
Costs ~0.2-0.5 s of interpreter start per document.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from ingest.errors import IngestError
from ingest.pdf import PdfContent, Progress, read_pdf

_KILL_GRACE_S = 5.0


def read_pdf_isolated(path: str | Path, name: str, *, password: str | None = None,
                      progress: Progress | None = None, max_pages: int | None = None,
                      timeout_s: float | None = None, cover_under: int = 0) -> PdfContent:
    """Like `ingest.pdf.read_pdf`, on the file at `path`, in a child process killed after `timeout_s`."""
    request = json.dumps({"path": str(path), "name": name, "password": password, "max_pages": max_pages,
                          "cover_under": cover_under})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-m", "ingest.isolated"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        child.stdin.write(request)
        child.stdin.close()
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise IngestError("corrupt", name, f"reading stopped after {timeout_s:g} s (malformed or "
                                  "pathologically complex PDF)")
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                continue
            if line is None:
                code = child.wait(timeout=_KILL_GRACE_S)
                raise IngestError("corrupt", name, f"the PDF reader process failed (exit status {code})")
            message = json.loads(line)
            if "progress" in message and progress:
                progress(*message["progress"])
            elif "error" in message:
                raise IngestError(message["error"]["reason"], name, message["error"]["detail"])
            elif "result" in message:
                r = message["result"]
                return PdfContent(r["texts"], r["labels"], [tuple(o) for o in r["outline"]],
                                  r["metadata_title"], r["notes"], {int(n): c for n, c in r["image_covers"].items()})
    except BrokenPipeError:
        code = child.wait(timeout=_KILL_GRACE_S)
        raise IngestError("corrupt", name, f"the PDF reader process failed (exit status {code})") from None
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=_KILL_GRACE_S)


def _child() -> None:
    """Read one request from stdin, write progress and one result or error as JSON lines."""
    request = json.loads(sys.stdin.read())

    def emit(message: dict) -> None:
        sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    try:
        data = Path(request["path"]).read_bytes()
        content = read_pdf(data, request["name"], password=request["password"],
                           progress=lambda done, total: emit({"progress": [done, total]}),
                           max_pages=request["max_pages"], timeout_s=None, cover_under=request["cover_under"])
    except IngestError as err:
        emit({"error": {"reason": err.reason, "detail": err.detail}})
        return
    emit({"result": {"texts": content.texts, "labels": content.labels, "outline": content.outline,
                     "metadata_title": content.metadata_title, "notes": content.notes,
                     "image_covers": content.image_covers}})


if __name__ == "__main__":
    _child()
