"""`jambadocs` command line: serve, ingest, ask, workspaces, docs, cache, download."""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path

# Before torch starts: its CPU allocator then backs large tensors with 2 MiB pages (madvise), so a
# K/V copy or a restored state costs a few page faults instead of one per 4 KiB (bench/cache.py,
# 2026-11-28 08:2x UTC, alternating runs: a 64K prefix restored from SQLite in 60.5-63.5 ms vs
# 96.0-109.7 ms). THP_MEM_ALLOC_ENABLE=0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from app.config import ENGINES, Settings  # noqa: E402
from app.errors import AppError, InvalidInput, NotFound, error_reason  # noqa: E402
from app.records import omitted_text  # noqa: E402

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """Ends the command with one line on stderr and exit status 1."""


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("settings (also JAMBADOCS_* environment variables)")
    g.add_argument("--data-dir", default=d, help="data folder (JAMBADOCS_DATA_DIR; default: per-user data folder)")
    g.add_argument("--model", default=d, help="checkpoint folder or hub id (JAMBADOCS_MODEL); none: extractive engine")
    g.add_argument("--device", default=d, help="cpu / cuda (JAMBADOCS_DEVICE; default: auto)")
    g.add_argument("--dtype", default=d, help="float32 / bfloat16 / float16 (JAMBADOCS_DTYPE)")
    g.add_argument("--quantize", default=d, choices=["int8"],
                   help="int8: quantize MoE expert and MLP weights at load (JAMBADOCS_QUANTIZE)")
    g.add_argument("--engine", default=d, choices=ENGINES, help="answering engine (JAMBADOCS_ENGINE; default auto)")
    g.add_argument("--temperature", default=d, type=float,
                   help="0: greedy (JAMBADOCS_TEMPERATURE; default: what the checkpoint's generation_config says)")
    g.add_argument("--top-p", dest="top_p", default=d, type=float, help="nucleus sampling (JAMBADOCS_TOP_P)")
    g.add_argument("--seed", default=d, type=int, help="fix the sampling seed (JAMBADOCS_SEED)")


def _port(text: str) -> int:
    """A TCP port to listen on. Over 65535 the socket layer took it modulo 65536 (99999: 34463) while
    the server announced the number given, so neither the user nor `ask` found it."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jambadocs", description=(
        "Ask questions over whole document sets, with page citations and a persistent state cache."))
    _global_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        _global_options(sp, suppress=True)     # settings may come after the command too
        return sp

    sp = cmd("serve", "run the web UI and HTTP API")
    sp.add_argument("--host", default=os.environ.get("JAMBADOCS_HOST") or "127.0.0.1",
                    help="address to listen on (JAMBADOCS_HOST; default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=_port, default=os.environ.get("JAMBADOCS_PORT") or "7860",
                    help="(JAMBADOCS_PORT; default 7860)")   # a string default: argparse converts it, and
    # reports a bad JAMBADOCS_PORT as a usage error of `serve` only
    sp.add_argument("--auth", default=os.environ.get("JAMBADOCS_AUTH"),
                    help="user:password required by the UI and API (JAMBADOCS_AUTH)")
    sp.add_argument("--allowed-host", action="append", metavar="NAME",
                    default=[n for n in (os.environ.get("JAMBADOCS_ALLOWED_HOSTS") or "").split(",") if n.strip()],
                    help="without --auth, a name besides localhost, IP addresses and --host this server "
                         "answers to (e.g. a name in /etc/hosts; repeat for more; JAMBADOCS_ALLOWED_HOSTS, "
                         "comma-separated); other names are refused, so a web page cannot re-point its "
                         "own name at this machine (DNS rebinding) and read your documents")

    sp = cmd("ingest", "add documents to a workspace (created if new)")
    sp.add_argument("-w", "--workspace", required=True)
    sp.add_argument("files", nargs="+", metavar="FILE", help="documents, or folders of them (linked subfolders too)")
    sp.add_argument("--password", help="password of encrypted PDFs")

    sp = cmd("ask", "ask a question over a workspace's documents")
    sp.add_argument("-w", "--workspace", required=True)
    sp.add_argument("question")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--chat", type=int, help="continue this chat (its id) instead of starting one")
    sp.add_argument("--max-new-tokens", type=int)
    sp.add_argument("--show-reasoning", action="store_true",
                    help="print a reasoning model's reasoning (dimmed, on stderr) before its answer")
    sp.add_argument("--local", action="store_true",
                    help="answer in this process even when `jambadocs serve` runs on this data folder "
                         "(by default the question goes to that server and its loaded engine)")

    sp = cmd("workspaces", "list workspaces, or delete one")
    sp.add_argument("--delete", metavar="NAME",
                    help="delete this workspace: its documents, chats and stored originals no other uses")
    sp.add_argument("--json", action="store_true")

    sp = cmd("docs", "list a workspace's documents, or remove one")
    sp.add_argument("-w", "--workspace", required=True)
    sp.add_argument("--delete", metavar="DOC", help="remove this document: its N of [doc N], or its file name")
    sp.add_argument("--dismiss-failed", action="store_true",
                    help="forget the files listed as not added (dropped in the browser, failed after the page went away)")
    sp.add_argument("--reread", action="store_true",
                    help="read again, from their kept originals, the documents (of every workspace) an older "
                         "version of the reader read; `jambadocs serve` does it in the background at start")
    sp.add_argument("--json", action="store_true")

    sp = cmd("chats", "list a workspace's chats (ids for ask --chat), or delete one")
    sp.add_argument("-w", "--workspace", required=True)
    sp.add_argument("--delete", type=int, metavar="CHAT_ID", help="delete this chat and its messages")
    sp.add_argument("--json", action="store_true")

    sp = cmd("cache", "state cache: stats or clear")
    sp.add_argument("action", choices=("stats", "clear"))
    sp.add_argument("--json", action="store_true")

    sp = cmd("download", "download a model checkpoint from the Hugging Face hub")
    sp.add_argument("model_id", metavar="MODEL_ID")
    sp.add_argument("--dest", help="folder to put it in (default: <models dir>/<owner>--<name>; models dir: JAMBADOCS_MODELS_DIR, else <data dir>/models)")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None), model=getattr(args, "model", None),
                             device=getattr(args, "device", None), dtype=getattr(args, "dtype", None),
                             quantize=getattr(args, "quantize", None), engine=getattr(args, "engine", None),
                             temperature=getattr(args, "temperature", None), top_p=getattr(args, "top_p", None),
                             seed=getattr(args, "seed", None))


def _services(args: argparse.Namespace):
    from app.services import Services
    return Services(_settings(args))


def _workspace(svc, name: str, create: bool = False):
    ws = svc.workspaces.ensure(name) if create else svc.workspaces.by_name(name)
    if ws is None:
        raise NotFound(f"no workspace named {name!r} (create it with: jambadocs ingest -w {shlex.quote(name)} FILE...)")
    return ws


def _tty() -> bool:
    return sys.stderr.isatty()


# -- commands -----------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    svc = _services(args)
    svc.reread_in_background()          # documents read by an older reader
    svc.count_pages_in_background()     # page token counts, once the engine has started
    from ui.server import serve
    serve(svc, host=args.host, port=args.port, auth=args.auth, allowed_hosts=tuple(args.allowed_host))
    return EXIT_OK


def cmd_ingest(args) -> int:
    from app.sigterm import sigterm_raises
    svc = _services(args)
    new_workspace = svc.workspaces.by_name(args.workspace) is None
    try:
        with sigterm_raises(lambda signum: KeyboardInterrupt()):   # kill: cleaned up like Ctrl-C
            return _ingest(svc, args, new_workspace)
    except KeyboardInterrupt:       # stopped: the file being read is not added, nor a workspace
        ws = svc.workspaces.by_name(args.workspace) if new_workspace else None   # made for it, left empty
        if ws is not None and not svc.documents.list(ws.id):
            svc.workspaces.delete(ws.id)
        raise


def _ingest(svc, args, new_workspace: bool) -> int:
    from ingest.kinds import DOCUMENT_SUFFIXES
    ws = _workspace(svc, args.workspace, create=True)
    failed = 0
    files, skipped, empty, repeats = _expand(args.files)
    for link in repeats:
        print(f"jambadocs: {link}: not read again (a link to a folder already read)", file=sys.stderr)
    for folder in empty:                 # a folder that gave nothing is a failed argument, not a no-op
        if folder not in skipped:
            print(f"jambadocs: {folder}: no documents in this folder (it is read for its "
                  f"{' '.join(DOCUMENT_SUFFIXES)} files, in subfolders too)", file=sys.stderr)
    for folder, names in skipped.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        print(f"jambadocs: {folder}: skipped {len(names)} file{'s' if len(names) > 1 else ''} of no document type "
              f"({shown}; a folder gives its {' '.join(DOCUMENT_SUFFIXES)} files; name an image, data or "
              "code file to add it)", file=sys.stderr)
    known = {d.id for d in svc.documents.list(ws.id)}
    for name in files:
        failed += not _ingest_one(svc, ws, name, args.password, known)
    if new_workspace and not known:        # nothing went in: do not leave an empty workspace behind
        svc.workspaces.delete(ws.id)
        print(f"jambadocs: workspace {ws.name!r} not created (no document could be added)", file=sys.stderr)
    if failed:
        print(f"jambadocs: {failed} of {len(files)} files not added", file=sys.stderr)
    return EXIT_ERROR if failed or empty else EXIT_OK


def _ingest_one(svc, ws, name: str, password: str | None, known: set[int]) -> bool:
    """Add one file, saying what happened; False when it could not be added. `known`: the ids of
    the workspace's documents, grown by this one."""
    from ingest import IngestError
    path = Path(name)
    bar = None
    if _tty():
        from tqdm import tqdm
        bar = tqdm(total=0, unit="page", desc=path.name[:30], leave=False, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()
    try:
        doc = svc.documents.add(ws.id, path, password=password, progress=progress)
    except (IngestError, AppError, OSError) as exc:
        hint = " (give it with --password)" if getattr(exc, "reason", None) == "encrypted" and not password else ""
        print(f"jambadocs: {name}: not added: {_reason(exc, path.name)}{hint}", file=sys.stderr)
        return False
    finally:
        if bar is not None:
            bar.close()
    if doc.id in known:
        print(f"already there [doc {doc.index}] {doc.filename} (same content as {name})")
        return True
    known.add(doc.id)
    print(f"added [doc {doc.index}] {doc.filename}: {doc.extent} "
          f"({doc.title}) to workspace {ws.name!r}" + "".join(f"; {note}" for note in doc.notes))
    if others := svc.documents.namesakes(ws.id, doc.id):
        from app.documents import namesakes_note
        print(f"  note: {namesakes_note(others)} (jambadocs docs -w {shlex.quote(ws.name)} --delete N)")
    return True


def _expand(names: list[str]) -> tuple[list[str], dict[str, list[str]], list[str], list[str]]:
    """Files as given; a folder stands for the documents in it (recursively, sorted, linked
    subfolders followed once). Also, per folder, the files in it that were skipped as no document
    type (hidden files are not named), the folders that held no document, and the links to a
    folder already read (a loop, or a second way in) that were not followed."""
    from ingest.kinds import DOCUMENT_SUFFIXES
    out: list[str] = []
    skipped: dict[str, list[str]] = {}
    empty: list[str] = []
    repeats: list[str] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            before = len(out)
            for p in _folder_files(path, repeats):
                if p.suffix.lower() in DOCUMENT_SUFFIXES:
                    out.append(str(p))
                else:
                    skipped.setdefault(name, []).append(str(p.relative_to(path)))
            if len(out) == before:
                empty.append(name)
        else:
            out.append(name)
    return out, skipped, empty, repeats


def _folder_files(folder: Path, repeats: list[str]) -> list[Path]:
    """The files under `folder` but hidden ones, sorted; a linked subfolder is read once, and a
    link to a folder already read is added to `repeats` instead. A link to a file that is gone is
    a file here, so that adding it says so."""
    seen: set[str] = set()
    files: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            repeats.append(f"{root} -> {real}")
            dirs[:] = []
            continue
        seen.add(real)
        files += [p for n in names if not n.startswith(".")
                  and ((p := Path(root, n)).is_file() or (p.is_symlink() and not p.exists()))]
    return sorted(files)


def _reason(exc: BaseException, filename: str) -> str:
    """The message without a repeated file name prefix."""
    msg = " ".join(str(exc).split())
    for prefix in {filename, Path(str(getattr(exc, "path", "") or filename)).name}:
        if prefix and msg.startswith(prefix + ":"):
            msg = msg[len(prefix) + 1:].strip()
    return msg or type(exc).__name__


def cmd_ask(args) -> int:
    settings = _settings(args)
    from app.services import Services
    svc = Services(settings)
    ws = _workspace(svc, args.workspace)
    server = None if args.local else _running_server(args, settings)
    if server is not None:
        from app.local_server import ask_through
        events = ask_through(server, str(ws.id), args.question, chat_id=args.chat,
                             max_new_tokens=_max_new_tokens(args, settings))
    else:
        events = svc.qa.ask(ws.id, args.question, chat_id=args.chat, max_new_tokens=args.max_new_tokens)
    stream = not args.json and sys.stdout.isatty()
    from app.sigterm import sigterm_raises
    try:
        with sigterm_raises(lambda signum: KeyboardInterrupt()):   # kill / docker stop: saved as stopped, like Ctrl-C
            final = _follow(events, args, stream)
    except KeyboardInterrupt:
        svc.close()          # a checkpoint being loaded stops at its next tensor, before the process ends
        raise
    if args.json:
        print(json.dumps(final, ensure_ascii=False, indent=2))
        return EXIT_OK
    _print_answer(final, args, stream, via=server.url if server is not None else None)
    return EXIT_OK


def _follow(events, args, stream: bool) -> dict:
    """Show an ask's events as they come (progress bar, reasoning on stderr, answer text when
    `stream`); return the answer JSON. Closes `events` however it ends (Ctrl-C: hangs up)."""
    bar = None
    final = None
    reasoned = False
    try:
        for ev in events:
            if ev.kind == "progress" and _tty() and ev.stage in ("prefill", "restore", "load", "quantize") and ev.total:
                if bar is None:
                    from tqdm import tqdm
                    bar = tqdm(total=ev.total, unit="tok", desc=ev.stage, leave=False, file=sys.stderr)
                bar.set_description(ev.stage)
                bar.unit = "tok" if ev.stage in ("prefill", "restore") else "part"
                bar.total = ev.total
                bar.n = ev.done
                bar.refresh()
            elif ev.kind in ("token", "thinking"):
                if bar is not None:
                    bar.close()
                    bar = None
                if ev.kind == "thinking":      # a reasoning model's reasoning: dimmed, on stderr
                    if stream and args.show_reasoning:
                        sys.stderr.write(("\x1b[2m" + ev.text + "\x1b[0m") if _tty() else ev.text)
                    elif stream and not reasoned:
                        sys.stderr.write("(reasoning first; --show-reasoning prints it)\n")
                    sys.stderr.flush()
                    reasoned = True
                    continue
                if reasoned and stream and args.show_reasoning:
                    sys.stderr.write("\n\n")          # the reasoning ends here; the answer follows on stdout
                    sys.stderr.flush()
                    reasoned = False
                if stream:
                    sys.stdout.write(ev.text)
                    sys.stdout.flush()
            elif ev.kind == "done":
                final = ev.answer if isinstance(ev.answer, dict) else {
                    **ask_json(ev.answer), "chat_id": ev.answer.chat_id, "message_id": ev.answer.id}
    finally:
        if bar is not None:
            bar.close()
        close = getattr(events, "close", None)
        if close is not None:
            close()                             # Ctrl-C: hang up, so a server stops answering too
    if final is None:
        raise CliError("the engine ended without an answer")
    return final


def _print_answer(final: dict, args, stream: bool, via: str | None) -> None:
    """The answer (unless streamed already), its citations, what was not read, and a stderr footer."""
    if not stream:
        if args.show_reasoning and final.get("reasoning"):
            print(final["reasoning"], end="\n\n", file=sys.stderr)
        print(final["answer"], end="")
    print()
    if final["citations"]:
        print("\nCitations:")
        for c in final["citations"]:
            mark = "verified" if c["verified"] else "NOT FOUND"
            print(f"  [doc {c['doc']}] {c['file'] or '?'}, {_where(c)}: {mark}")
    if final.get("omitted_text"):
        print("\nNot read for this answer (the context is full): " + final["omitted_text"])
    t = final.get("timings") or {}
    through = f" via the server at {via}" if via else ""
    print(f"\n[{final['engine']}{through}; chat {final['chat_id']}; cached {t.get('cached_tokens') or 0} tokens, "
          f"prefilled {t.get('prefilled_tokens') or 0}, first token {_fmt_s(t.get('ttft_s'))}]",
          file=sys.stderr)


def _running_server(args, settings: Settings):
    """The `jambadocs serve` on this data folder, when it answers as this command would (same model,
    engine and decoding for every setting given here); else None, with a note when one runs."""
    from app.local_server import ANSWER_SETTINGS, answer_settings, find
    server = find(settings)
    if server is None:
        return None
    mine = answer_settings(settings)
    given = {k for k in ANSWER_SETTINGS if getattr(args, k, None) is not None or _env_set(k)}
    if given & {"model", "remote_url"}:
        given.add("engine")
    differ = server.differences({k: mine[k] for k in given})
    if differ:
        print(f"jambadocs: the server at {server.url} (pid {server.pid}) on this data folder runs with other "
              f"settings ({', '.join(differ)}); answering here, with an engine of its own", file=sys.stderr)
        return None
    return server


def _env_set(name: str) -> bool:
    return bool(os.environ.get(f"JAMBADOCS_{name.upper()}", "").strip())


def _max_new_tokens(args, settings: Settings) -> int | None:
    """The answer limit this command asks for: its flag, else JAMBADOCS_MAX_NEW_TOKENS, else the server's."""
    if args.max_new_tokens is not None:
        return args.max_new_tokens
    return settings.max_new_tokens if _env_set("max_new_tokens") else None


def _where(citation: dict) -> str:
    """A citation of the answer JSON as `CitationInfo.where()` words it."""
    from app.records import CitationInfo
    return CitationInfo(doc=citation["doc"], doc_id=None, filename=citation.get("file") or "",
                        page=citation.get("page"), page_label=citation.get("page_label"),
                        quote=citation.get("quote") or "", verified=bool(citation.get("verified")), passage="",
                        start=None, end=None, unit=citation.get("unit") or "page").where()


def _fmt_s(v) -> str:
    return "-" if v is None else f"{v:.2f}s"


def ask_json(msg) -> dict:
    """The `ask --json` object: answer, engine, citations, timings, and the pages not read ("omitted":
    [{"doc", "file", "pages"}], empty when the whole set fit the model's context; "omitted_text":
    the same in words, "" then)."""
    t = msg.timings or {}
    omitted = [{"doc": o.get("doc"), "file": o.get("file"), "pages": o.get("pages")}
               for o in t.get("omitted") or [] if isinstance(o, dict)]
    return {
        "answer": msg.text,
        "engine": msg.engine,
        "citations": [{"doc": c.doc, "file": c.filename, "page": c.page, "page_label": c.page_label, "unit": c.unit,
                       "quote": c.quote, "verified": c.verified} for c in msg.citations],
        "timings": {k: t.get(k) for k in ("cached_tokens", "conversation_tokens", "prefilled_tokens", "ttft_s",
                                          "tokens_per_s", "sampling")},
        "omitted": omitted,
        "omitted_text": omitted_text(t),
        "reasoning": msg.reasoning,
    }


def cmd_workspaces(args) -> int:
    svc = _services(args)
    if args.delete is not None:
        ws = _workspace(svc, args.delete)
        _delete(args, f"/api/workspaces/{ws.id}", lambda: svc.workspaces.delete(ws.id))
        _report(args, {"deleted": ws.to_dict()}, f"deleted workspace {ws.name!r} ({_count(ws.documents, 'document')} "
                "and its chats; cached states stay until the cache budget needs their room)")
        return EXIT_OK
    rows = svc.workspaces.list()
    if args.json:
        print(json.dumps([w.to_dict() for w in rows], ensure_ascii=False, indent=2))
    elif not rows:
        print("no workspaces yet (create one with: jambadocs ingest -w NAME FILE...)")
    for w in rows if not args.json else []:
        print(f"{w.name}\t{_count(w.documents, 'document')}\t{_count(w.pages, 'page')}")
    return EXIT_OK


def _delete(args, path: str, here) -> None:
    """Delete through the `jambadocs serve` on this data folder (API `path`) when one runs, so what
    an answer it is writing needs is refused (Conflict: exit 1, its message); else `here()`."""
    from app.local_server import delete_through, find
    server = find(_settings(args))
    if server is None:
        here()
    else:
        delete_through(server, path)


def _report(args, obj: dict, text: str) -> None:
    """What a command did: `obj` as JSON with --json (stdout stays JSON), else the sentence."""
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str) if args.json else text)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def cmd_docs(args) -> int:
    svc = _services(args)
    ws = _workspace(svc, args.workspace)
    rows = svc.documents.list(ws.id)
    if args.delete is not None:
        ref = args.delete.strip()
        found = [d for d in rows if (ref.isdigit() and d.index == int(ref)) or d.filename == ref]
        if not found:
            raise NotFound(f"workspace {ws.name!r} has no document {ref!r} (see: jambadocs docs -w {shlex.quote(ws.name)})")
        if len(found) > 1:                  # the same name, other contents: never guess which
            raise InvalidInput(f"workspace {ws.name!r} has {len(found)} documents named {ref!r} "
                               f"({', '.join(f'[doc {d.index}]' for d in found)}); give its number")
        doc = found[0]
        _delete(args, f"/api/workspaces/{ws.id}/documents/{doc.id}", lambda: svc.documents.remove(ws.id, doc.id))
        _report(args, {"deleted": doc.to_dict()}, f"removed [doc {doc.index}] {doc.filename} from workspace "
                f"{ws.name!r}" + (" (the documents after it move up one number)" if doc.index < len(rows) else ""))
        return EXIT_OK
    if args.dismiss_failed:
        n = svc.documents.dismiss_failures(ws.id)
        print(f"dismissed {_count(n, 'file')} not added to workspace {ws.name!r}")
        return EXIT_OK
    if args.reread:
        done = svc.documents.reread_outdated()
        _report(args, done, f"read {_count(len(done['changed']) + len(done['unchanged']), 'document')} again with "
                f"this version's reader: {len(done['changed'])} changed (a note on each says what), "
                f"{len(done['unchanged'])} unchanged" + (f"; {len(done['kept'])} kept their text (original "
                                                         "missing, or a password needed)" if done["kept"] else ""))
        return EXIT_OK
    if args.json:
        print(json.dumps([d.to_dict() for d in rows], ensure_ascii=False, indent=2))
    else:
        if not rows:
            print(f"workspace {ws.name!r} has no documents")
        for d in rows:
            print(f"[doc {d.index}] {d.filename}\t{d.extent}\t{d.title}")
            for note in d.reread_notes:
                print(f"\t({note})")
    outdated = svc.documents.outdated(ws.id)
    if outdated:        # on stderr, as below
        print(f"jambadocs: {_count(outdated, 'document')} of this workspace {'were' if outdated > 1 else 'was'} "
              f"read by an older version of the reader; read {'them' if outdated > 1 else 'it'} again with: "
              f"jambadocs docs -w {shlex.quote(ws.name)} --reread (jambadocs serve does it at start)", file=sys.stderr)
    failures = svc.documents.failures(ws.id)
    if failures:        # on stderr: --json's output stays the documents' list
        print(f"jambadocs: {_count(len(failures), 'file')} dropped in the browser could not be added (the page "
              f"went away before {'they were' if len(failures) > 1 else 'it was'} read):", file=sys.stderr)
        for f in failures:
            print(f"  {f.filename}: {f.message} ({f.failed_at.astimezone():%Y-%m-%d %H:%M})", file=sys.stderr)
        print(f"  (forget them with: jambadocs docs -w {shlex.quote(ws.name)} --dismiss-failed)", file=sys.stderr)
    return EXIT_OK


def cmd_chats(args) -> int:
    svc = _services(args)
    ws = _workspace(svc, args.workspace)
    if args.delete is not None:
        chat = next((c for c in svc.chats.list(ws.id) if c.id == args.delete), None)
        if chat is None:
            raise NotFound(f"workspace {ws.name!r} has no chat {args.delete} (see: jambadocs chats -w {shlex.quote(ws.name)})")
        _delete(args, f"/api/chats/{args.delete}", lambda: svc.chats.delete(args.delete))
        _report(args, {"deleted": chat.to_dict()}, f"deleted chat {args.delete} from workspace {ws.name!r}")
        return EXIT_OK
    rows = svc.chats.list(ws.id)
    if args.json:
        print(json.dumps([c.to_dict() for c in rows], ensure_ascii=False, indent=2, default=str))
        return EXIT_OK
    if not rows:
        print(f"workspace {ws.name!r} has no chats")
    for c in rows:
        print(f"{c.id}\t{c.messages} message{'' if c.messages == 1 else 's'}\t{c.created_at:%Y-%m-%d %H:%M}\t{c.title}")
    return EXIT_OK


def cmd_cache(args) -> int:
    svc = _services(args)
    if args.action == "stats":
        stats = svc.cache_stats()
        if args.json:
            print(json.dumps(stats, indent=2, default=str))
        else:
            print(_cache_text(stats))
    else:
        removed = svc.cache_clear()
        _report(args, {"removed_entries": removed}, f"cleared the state cache ({removed} entries removed)")
    return EXIT_OK


def _cache_text(stats: dict) -> str:
    """`cache stats` for people: sizes in units, times as dates, one line per model."""
    import datetime as dt

    def size(n) -> str:
        n = float(n or 0)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if n < 1024 or unit == "GiB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1024

    def when(t) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t else "-"

    lines = [f"state cache in {stats['folder']}",
             f"  {_count(stats['entries'], 'entry', 'entries')}, {size(stats['bytes'])} of "
             f"{size(stats['budget_bytes'])} (JAMBADOCS_CACHE_BYTES), document states of "
             f"{stats['cached_tokens']:,} tokens"]
    for fp, m in (stats.get("models") or {}).items():
        lines.append(f"  model {fp[:12]}: {_count(m['entries'], 'entry', 'entries')}, "
                     f"{size(m['bytes'])}")
    if stats["entries"]:
        lines.append(f"  last used {when(stats.get('newest_use'))}; least recently used {when(stats.get('oldest_use'))}")
    return "\n".join(lines)


def cmd_download(args) -> int:
    settings = _settings(args)
    repo = args.model_id.strip()
    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}", repo) or ".." in repo:
        raise CliError(f"{repo!r} is not a hub model id (owner/name)")
    dest = Path(args.dest) if args.dest else settings.models_dir / repo.replace("/", "--")
    # `download` is the one command meant to go online: undo the offline default of tests/servers.
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not os.environ.get("JAMBADOCS_KEEP_OFFLINE"):
        os.environ.pop("HF_HUB_OFFLINE")
    from huggingface_hub import snapshot_download
    try:
        path = snapshot_download(repo_id=repo, local_dir=dest,
                                 allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as exc:                       # offline, unknown repo, gated, disk full ...
        raise CliError(f"cannot download {repo}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                       " (no network? unknown or gated model?)") from None
    print(f"downloaded {repo} to {path}\nuse it with: jambadocs --model {path} ask -w WORKSPACE QUESTION")
    return EXIT_OK


COMMANDS = {"serve": cmd_serve, "ingest": cmd_ingest, "ask": cmd_ask, "workspaces": cmd_workspaces,
            "docs": cmd_docs, "chats": cmd_chats, "cache": cmd_cache, "download": cmd_download}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("jambadocs: interrupted", file=sys.stderr)
        _json_error(args, "interrupted", "interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 -- every error ends as one line
        if os.environ.get("JAMBADOCS_DEBUG"):
            raise
        print(f"jambadocs: error: {_one_line(exc)}", file=sys.stderr)
        _json_error(args, error_reason(exc), _one_line(exc))
        return EXIT_ERROR


def _json_error(args, reason: str, message: str) -> None:
    """With --json, stdout stays one JSON object on errors too: the API's {"error": {"reason", "message"}}."""
    if getattr(args, "json", False):
        print(json.dumps({"error": {"reason": reason, "message": message}}, ensure_ascii=False, indent=2))


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if isinstance(exc, (CliError, AppError, ValueError, OSError)) and msg:
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
