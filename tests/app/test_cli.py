"""The jambadocs command line, run in-process on a fresh data folder."""
from __future__ import annotations

import json
import re

import pytest

from app.cli import main
from tests.ingest.office_files import write_pptx


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JAMBADOCS_MODEL", raising=False)
    monkeypatch.delenv("JAMBADOCS_ENGINE", raising=False)
    data = tmp_path / "data"

    def _run(*argv: str) -> tuple[int, str, str]:
        code = main(["--data-dir", str(data), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    _run.data = data
    return _run


def test_ingest_reports_bad_files_and_adds_the_rest(run, corpus, tmp_path):
    code, out, err = run("ingest", "-w", "lib", str(corpus / "fake.pdf"), str(corpus / "pari-refcard.pdf"),
                         str(corpus / "encrypted.pdf"), str(corpus / "hsaur-inference.pdf"))
    assert code == 1
    assert "added [doc 1] pari-refcard.pdf: 4 pages" in out and "added [doc 2] hsaur-inference.pdf: 15 pages" in out
    lines = err.strip().splitlines()
    assert any("fake.pdf: not added" in line and "PDF" in line for line in lines)
    assert any("encrypted.pdf: not added" in line and "password" in line.lower() for line in lines)
    assert lines[-1].endswith("2 of 4 files not added")
    code, out, _ = run("docs", "-w", "lib", "--json")
    docs = json.loads(out)
    assert code == 0 and [d["filename"] for d in docs] == ["pari-refcard.pdf", "hsaur-inference.pdf"]
    assert docs[1]["pages"] == 15 and docs[1]["unit"] == "page"
    code, out, _ = run("workspaces")
    assert code == 0 and out.startswith("lib\t2 documents")
    note = tmp_path / "note.txt"                                      # one part: "1 part", not "1 parts"
    note.write_text("A short note about the refcard.", encoding="utf-8")
    code, out, _ = run("ingest", "-w", "lib", str(note))
    assert code == 0 and "added [doc 3] note.txt: 1 part (" in out, out
    code, out, _ = run("ingest", "-w", "lib", str(corpus / "hsaur-inference.pdf"))
    assert code == 0 and out.startswith("already there [doc 2] hsaur-inference.pdf")


def test_ask_json_shape(run, corpus):
    assert run("ingest", "-w", "w", str(corpus / "hsaur-inference.pdf"))[0] == 0
    code, out, _ = run("ask", "-w", "w", "Student's t-test for two independent samples", "--json")
    assert code == 0
    obj = json.loads(out)
    assert set(obj) == {"answer", "engine", "citations", "timings", "omitted", "omitted_text", "reasoning",
                        "chat_id", "message_id"} and isinstance(obj["chat_id"], int)
    assert obj["reasoning"] is None                  # only reasoning models write one
    assert obj["engine"] == "extractive" and obj["answer"].startswith("Extractive answer")
    assert obj["citations"] and all(set(c) == {"doc", "file", "page", "page_label", "unit", "quote", "verified"}
                                     for c in obj["citations"])
    assert all(c["verified"] and c["file"] == "hsaur-inference.pdf" for c in obj["citations"])
    assert set(obj["timings"]) == {"cached_tokens", "conversation_tokens", "prefilled_tokens", "ttft_s",
                                   "tokens_per_s", "sampling"}
    assert obj["omitted"] == [] and obj["omitted_text"] == ""        # the extractive engine reads everything
    code, out, err = run("ask", "-w", "w", "Student's t-test")
    assert code == 0 and "Citations:" in out and "verified" in out


@pytest.mark.parametrize("argv,words", [
    (("ask", "-w", "missing", "q"), "no workspace named 'missing'"),
    (("docs", "-w", "missing"), "no workspace named 'missing'"),
    (("ingest", "-w", "", "x.pdf"), "workspace name is empty"),
])
def test_errors_are_one_line_and_nonzero(run, argv, words):
    code, out, err = run(*argv)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err


def test_download_offline_is_a_clear_error(run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("JAMBADOCS_KEEP_OFFLINE", "1")
    code, _, err = run("download", "ai21labs/AI21-Jamba2-3B")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "cannot download ai21labs/AI21-Jamba2-3B" in err
    code, _, err = run("download", "../etc")
    assert code == 1 and "not a hub model id" in err


def test_cache_stats_on_an_empty_store(run):
    code, out, _ = run("cache", "stats", "--json")
    assert code == 0 and json.loads(out)["entries"] == 0


def test_ingest_a_folder(run, corpus, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, dest in (("pari-refcard.pdf", "b.pdf"), ("latexsheet-de.pdf", "sub/a.pdf")):
        (folder / dest).write_bytes((corpus / name).read_bytes())
    write_pptx(folder / "c.pptx")
    (folder / "notes.bin").write_bytes(b"\x00\x01")          # not a document type: skipped
    (folder / "data.json").write_text('{"a": 1}')            # read when named, not picked from a folder
    code, out, err = run("ingest", "-w", "f", str(folder))
    assert code == 0, err
    assert [line.split()[3].rstrip(":") for line in out.splitlines()] == ["b.pdf", "c.pptx", "a.pdf"]
    assert "c.pptx: 3 slides" in out
    assert f"{folder}: skipped 2 files of no document type (data.json, notes.bin;" in err, err
    code, out, err = run("ingest", "-w", "f", str(folder / "data.json"))
    assert code == 0 and "data.json: 1 part" in out, err
    # A folder that gives no document is a failure (exit 1, said), not a silent success.
    (tmp_path / "nothing").mkdir()
    (tmp_path / "only-data" / "deep").mkdir(parents=True)
    (tmp_path / "only-data" / "deep" / "x.bin").write_bytes(b"\x00")
    code, out, err = run("ingest", "-w", "f", str(tmp_path / "nothing"), str(tmp_path / "only-data"))
    assert code == 1 and out == "", out
    assert f"{tmp_path / 'nothing'}: no documents in this folder" in err
    assert f"{tmp_path / 'only-data'}: skipped 1 file of no document type (deep/x.bin;" in err
    code, _, err = run("ingest", "-w", "new", str(tmp_path / "nothing"))
    assert code == 1 and "workspace 'new' not created" in err
    assert "new" not in run("workspaces")[1]


def test_ingest_a_folder_follows_linked_subfolders_once(run, corpus, tmp_path):
    """A linked subfolder is read; a link back to a folder already read (a loop) is named, not read."""
    shelf, folder = tmp_path / "shelf", tmp_path / "in"
    shelf.mkdir()
    folder.mkdir()
    (shelf / "a.pdf").write_bytes((corpus / "latexsheet-de.pdf").read_bytes())
    (folder / "b.pdf").write_bytes((corpus / "pari-refcard.pdf").read_bytes())
    (folder / "linked").symlink_to(shelf, target_is_directory=True)
    (shelf / "back").symlink_to(folder, target_is_directory=True)     # in/linked/back -> in: a loop
    code, out, err = run("ingest", "-w", "l", str(folder))
    assert code == 0, err
    assert [line.split()[3].rstrip(":") for line in out.splitlines()] == ["b.pdf", "a.pdf"]
    assert f"{folder / 'linked' / 'back'} -> {folder.resolve()}: not read again (a link to a folder already read)" in err


def test_settings_may_follow_the_command(run, corpus, tmp_path, capsys):
    assert run("ingest", "-w", "late", str(corpus / "pari-refcard.pdf"))[0] == 0
    assert main(["workspaces", "--json", "--data-dir", str(tmp_path / "data")]) == 0
    assert [w["name"] for w in json.loads(capsys.readouterr().out)] == ["late"]
    assert main(["workspaces", "--json", "--data-dir", str(tmp_path / "elsewhere")]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_chats_lists_ids_for_ask_chat_and_deletes_one(run, corpus):
    assert run("ingest", "-w", "w", str(corpus / "hsaur-inference.pdf"))[0] == 0
    first = json.loads(run("ask", "-w", "w", "Wilcoxon rank sum test", "--json")[1])["chat_id"]
    second = json.loads(run("ask", "-w", "w", "Student's t-test", "--json")[1])["chat_id"]
    assert run("ask", "-w", "w", "and the paired version?", "--chat", str(first), "--json")[0] == 0
    code, out, _ = run("chats", "-w", "w")
    lines = out.strip().splitlines()
    assert code == 0 and [int(line.split("\t")[0]) for line in lines] == [second, first]   # newest first
    assert "\t4 messages\t" in lines[1] and "\t2 messages\t" in lines[0] and lines[1].endswith("Wilcoxon rank sum test")
    code, out, _ = run("chats", "-w", "w", "--delete", str(first))
    assert code == 0 and f"deleted chat {first}" in out
    assert [c["id"] for c in json.loads(run("chats", "-w", "w", "--json")[1])] == [second]
    code, _, err = run("chats", "-w", "w", "--delete", str(first))
    assert code == 1 and f"has no chat {first}" in err
    assert run("chats", "-w", "other-ws", "--delete", str(second))[0] == 1          # another workspace: refused
    assert [c["id"] for c in json.loads(run("chats", "-w", "w", "--json")[1])] == [second]


def test_ingest_of_a_scan_says_its_text_came_from_ocr(run, corpus):
    from ingest.ocr import ocr_available
    if not ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    code, out, _ = run("ingest", "-w", "scans", str(corpus / "image-only.pdf"))
    assert code == 0 and "image-only.pdf: 3 pages (Preface)" in out and "recognised by OCR" in out
    docs = json.loads(run("docs", "-w", "scans", "--json")[1])
    assert any("OCR" in note for note in docs[0]["notes"])


def _smaps_huge_kib(code: str, env: dict) -> tuple[str, int]:
    """Run `code` in a fresh Python (repo root on the path); returns its stdout's first line and
    the AnonHugePages (KiB) of that process after a 64 MiB tensor is filled."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    script = code + (
        "\nimport torch\nt = torch.ones(16 * 2**20)\n"
        "import os\nf = '/proc/self/smaps_rollup'\n"
        "kib = sum(int(l.split()[1]) for l in open(f) if l.startswith('AnonHugePages')) if os.path.exists(f) else -1\n"
        "print(kib)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root,
                         env={k: v for k, v in {**os.environ, **env}.items() if v is not None})
    assert out.returncode == 0, out.stderr
    first, kib = out.stdout.split()
    return first, int(kib)


def test_the_command_line_turns_on_huge_pages_for_torch_before_torch_starts(monkeypatch):
    """app.cli sets THP_MEM_ALLOC_ENABLE before torch is imported (it is read once, at torch's first
    allocation): large tensors then sit on 2 MiB pages where the kernel allows them (madvise or
    always); a user's THP_MEM_ALLOC_ENABLE=0 is kept."""
    from pathlib import Path
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    code = ("import os, sys\nimport app.cli\n"
            "print(os.environ['THP_MEM_ALLOC_ENABLE'] + ('-torch' if 'torch' in sys.modules else ''))")
    setting, huge = _smaps_huge_kib(code, {})
    assert setting == "1"                                              # and torch not yet imported
    off, huge_off = _smaps_huge_kib(code, {"THP_MEM_ALLOC_ENABLE": "0"})
    assert off == "0"
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text() or not Path("/proc/self/smaps_rollup").exists():
        pytest.skip("this kernel gives no transparent huge pages")
    if "[always]" not in thp.read_text():                             # madvise: only where torch asks
        assert huge_off == 0
    assert huge >= 32 * 1024, huge                                     # most of the 64 MiB tensor


def test_ask_says_which_pages_were_not_read_when_the_set_exceeds_the_context(run, corpus, tmp_path):
    """A partly read document is named with the pages left out, not reported as left out whole."""
    from engine.testing import write_tiny_checkpoint
    model = write_tiny_checkpoint(tmp_path / "small", seed=0, max_position_embeddings=1536)
    assert run("ingest", "-w", "w", str(corpus / "pari-refcard.pdf"), str(corpus / "hsaur-inference.pdf"))[0] == 0
    code, out, err = run("--model", str(model), "ask", "-w", "w", "Which test compares the means?",
                         "--max-new-tokens", "4")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("Not read for this answer"))
    assert "hsaur-inference.pdf): pp. " in line and "chosen by relevance to the question" in line, line
    code, out, _ = run("--model", str(model), "ask", "-w", "w", "Which test compares the means?", "--json",
                       "--max-new-tokens", "4")
    omitted = json.loads(out)["omitted"]
    assert any(o["doc"] == 2 and o["file"] == "hsaur-inference.pdf" and o["pages"] for o in omitted), omitted
    assert all(o["file"] != "pari-refcard.pdf" for o in omitted) or "pari-refcard.pdf)" in line


def test_ask_shows_a_reasoning_models_reasoning_only_when_asked(run, corpus, tmp_path, monkeypatch):
    from engine.testing import REASONING_TEMPLATE, write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / "reasoning", seed=2, chat_template=REASONING_TEMPLATE)
    model = ["--model", str(folder), "--engine", "jamba"]
    monkeypatch.setenv("JAMBADOCS_MAX_THINKING_TOKENS", "6")
    assert run(*model, "ingest", "-w", "w", str(corpus / "pari-refcard.pdf"))[0] == 0
    code, out, _ = run(*model, "ask", "-w", "w", "What is it?", "--max-new-tokens", "3", "--json")
    obj = json.loads(out)
    assert code == 0 and obj["reasoning"] and "</think>" not in obj["answer"]
    code, out, err = run(*model, "ask", "-w", "w", "What is it?", "--max-new-tokens", "3")
    assert code == 0 and obj["reasoning"] not in out + err
    code, out, err = run(*model, "ask", "-w", "w", "What is it?", "--max-new-tokens", "3", "--show-reasoning")
    assert code == 0 and obj["reasoning"] in err and obj["reasoning"] not in out


def test_ingest_opens_an_encrypted_pdf_with_its_password(run, corpus):
    code, _, err = run("ingest", "-w", "sealed", str(corpus / "encrypted.pdf"))
    assert code == 1 and "needs a password" in err and "give it with --password" in err, err
    code, out, _ = run("workspaces")
    assert "sealed" not in out                       # nothing went in: no empty workspace left behind
    code, _, err = run("ingest", "-w", "sealed", str(corpus / "encrypted.pdf"), "--password", "wrong")
    assert code == 1 and "the password is wrong" in err and "--password)" not in err, err
    code, out, err = run("ingest", "-w", "sealed", str(corpus / "encrypted.pdf"), "--password", "secret123")
    assert code == 0 and "added [doc 1] encrypted.pdf: 26 pages" in out, (out, err)
    code, out, _ = run("ask", "-w", "sealed", "Qui a fondé Debian ?", "--json")
    assert code == 0 and any(c["verified"] for c in json.loads(out)["citations"])
    code, _, err = run("ingest", "-w", "sealed", str(corpus / "fake.pdf"))   # a failure in an existing workspace
    assert code == 1 and "not created" not in err
    assert run("docs", "-w", "sealed")[0] == 0


def test_docs_and_workspaces_can_be_deleted_from_the_cli(run, corpus, tmp_path):
    assert run("ingest", "-w", "lib", str(corpus / "pari-refcard.pdf"), str(corpus / "hsaur-inference.pdf"),
               str(corpus / "latexsheet-de.pdf"))[0] == 0
    code, out, _ = run("docs", "-w", "lib", "--delete", "1")
    assert code == 0 and out.startswith("removed [doc 1] pari-refcard.pdf") and "move up one number" in out
    code, out, _ = run("docs", "-w", "lib", "--delete", "latexsheet-de.pdf")
    assert code == 0 and "removed [doc 2] latexsheet-de.pdf" in out and "move up" not in out
    code, _, err = run("docs", "-w", "lib", "--delete", "7")
    assert code == 1 and "has no document '7'" in err
    code, out, _ = run("docs", "-w", "lib", "--json")
    assert [d["filename"] for d in json.loads(out)] == ["hsaur-inference.pdf"]
    code, out, _ = run("workspaces")
    assert out == "lib\t1 document\t15 pages\n"
    code, out, _ = run("workspaces", "--delete", "lib")
    assert code == 0 and out.startswith("deleted workspace 'lib' (1 document")
    assert run("workspaces")[1].startswith("no workspaces yet")
    assert not any((tmp_path / "data" / "files").rglob("*.pdf"))      # no original left behind
    code, _, err = run("workspaces", "--delete", "lib")
    assert code == 1 and "no workspace named 'lib'" in err
    code, _, err = run("ingest", "-w", "a/b", str(corpus / "pari-refcard.pdf"))
    assert code == 1 and "contains '/'" in err


def test_deleting_by_a_name_two_documents_share_deletes_neither(run, corpus, tmp_path):
    """Two folders' report.pdf (other contents) in one workspace: the name does not say which."""
    for folder, source in (("a", "pari-refcard.pdf"), ("b", "latexsheet-de.pdf")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "report.pdf").write_bytes((corpus / source).read_bytes())
    assert run("ingest", "-w", "w", str(tmp_path / "a" / "report.pdf"), str(tmp_path / "b" / "report.pdf"))[0] == 0
    code, _, err = run("docs", "-w", "w", "--delete", "report.pdf")
    assert code == 1 and "2 documents named 'report.pdf' ([doc 1], [doc 2]); give its number" in err
    assert len(json.loads(run("docs", "-w", "w", "--json")[1])) == 2
    code, out, _ = run("docs", "-w", "w", "--delete", "2")
    assert code == 0 and out.startswith("removed [doc 2] report.pdf")
    assert [d["title"] for d in json.loads(run("docs", "-w", "w", "--json")[1])] == ["Pari-GP reference card"]


def test_a_workspace_named_in_another_case_is_the_same_one(run, corpus):
    assert run("ingest", "-w", "Reports", str(corpus / "pari-refcard.pdf"))[0] == 0
    code, out, _ = run("ingest", "-w", "reports", str(corpus / "hsaur-inference.pdf"))
    assert code == 0 and "added [doc 2] hsaur-inference.pdf" in out
    assert run("workspaces")[1] == "Reports\t2 documents\t19 pages\n"


def test_cache_stats_in_words(run, corpus, tmp_path):
    from engine.testing import write_tiny_checkpoint
    model = write_tiny_checkpoint(tmp_path / "tiny", max_position_embeddings=4096)
    assert run("ingest", "-w", "w", str(corpus / "pari-refcard.pdf"))[0] == 0
    assert run("--model", str(model), "ask", "-w", "w", "What is it?", "--max-new-tokens", "2")[0] == 0
    code, out, _ = run("cache", "stats")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("state cache in ") and lines[0].endswith("states")
    assert lines[1].startswith("  1 entry, ") and " KiB of 8.0 GiB" in lines[1] and "tokens" in lines[1]
    assert lines[2].startswith("  model ") and lines[2].endswith("KiB")
    assert " UTC" in lines[3] and "{" not in out and "1795" not in out


def test_ingest_on_a_full_disk_names_the_file_and_goes_on(run, corpus, tmp_path, monkeypatch):
    """The database cannot grow (disk full, simulated with max_page_count): the file that does not
    fit is reported by name, the others are still added, and nothing of it stays behind."""
    from app import db
    on_connect = db._on_connect

    def capped(dbapi_conn, record):
        on_connect(dbapi_conn, record)
        dbapi_conn.execute("PRAGMA max_page_count = 40")     # r-intro's 113 pages of text need more
    monkeypatch.setattr(db, "_on_connect", capped)
    code, out, err = run("ingest", "-w", "w", str(corpus / "r-intro.pdf"), str(corpus / "pari-refcard.pdf"))
    assert code == 1
    assert "r-intro.pdf: not added" in err and "full" in err, err
    assert "added [doc 1] pari-refcard.pdf" in out
    code, out, _ = run("docs", "-w", "w", "--json")
    docs = json.loads(out)
    assert [d["filename"] for d in docs] == ["pari-refcard.pdf"]
    assert sorted(p.name for p in (tmp_path / "data" / "files").iterdir()) == [docs[0]["content_hash"]]


def test_serve_without_auth_beyond_loopback_warns_once(run, monkeypatch):
    import logging
    import socket

    import uvicorn

    import ingest.budget
    import ui.server
    monkeypatch.setattr(ui.server, "create_app", lambda *a, **k: None)
    monkeypatch.setattr(ingest.budget, "preload_retrieval", lambda: None)
    monkeypatch.setattr(ui.server, "listening_socket", lambda host, port: socket.socket())
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])     # as outside pytest: no logging set up
    code, _, err = run("serve", "--host", "0.0.0.0", "--port", "7999")
    assert code == 0
    assert err.count("WITHOUT a password") == 1, err


def test_json_output_stays_json_on_errors(run, corpus):
    """A script reading --json gets one JSON object on stdout whatever happens (exit status 1)."""
    code, out, err = run("ask", "-w", "nowhere", "What is it?", "--json")
    assert code == 1 and json.loads(out) == {"error": {"reason": "not_found", "message": err.strip()[len(
        "jambadocs: error: "):]}} and "'nowhere'" in err
    assert run("ingest", "-w", "w", str(corpus / "pari-refcard.pdf"))[0] == 0
    code, out, _ = run("ask", "-w", "w", " \t ", "--json")
    assert code == 1 and json.loads(out)["error"] == {"reason": "invalid_input", "message": "the question is empty"}
    code, out, _ = run("docs", "-w", "w", "--delete", "7", "--json")
    assert code == 1 and json.loads(out)["error"]["reason"] == "not_found"
    code, out, _ = run("docs", "-w", "w", "--json")             # a success prints no error object
    assert code == 0 and [d["filename"] for d in json.loads(out)] == ["pari-refcard.pdf"]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_serve_refuses_a_port_outside_1_65535(port, capsys, monkeypatch):
    """99999 was bound as 34463 (modulo 65536) while `serve` said, and server.json told `ask`, 99999."""
    from app.cli import build_parser
    assert build_parser().parse_args(["serve", "--port", "8080"]).port == 8080
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["serve", "--port", port])
    assert stop.value.code == 2 and "--port" in capsys.readouterr().err
    monkeypatch.setenv("JAMBADOCS_PORT", port)                 # the same from the environment
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])


def test_deletions_and_cache_clear_print_json_with_json(run, corpus):
    """`--json` with --delete (and `cache clear --json`) printed the sentence meant for people."""
    assert run("ingest", "-w", "w", str(corpus / "pari-refcard.pdf"), str(corpus / "latexsheet-de.pdf"))[0] == 0
    chat = json.loads(run("ask", "-w", "w", "How do I factor an integer?", "--json")[1])["chat_id"]
    code, out, _ = run("chats", "-w", "w", "--delete", str(chat), "--json")
    assert code == 0 and json.loads(out)["deleted"]["id"] == chat
    code, out, _ = run("docs", "-w", "w", "--delete", "1", "--json")
    assert code == 0 and json.loads(out)["deleted"]["filename"] == "pari-refcard.pdf"
    code, out, _ = run("cache", "clear", "--json")
    assert code == 0 and json.loads(out) == {"removed_entries": 0}
    code, out, _ = run("workspaces", "--delete", "w", "--json")
    assert code == 0 and json.loads(out)["deleted"]["name"] == "w"


def test_commands_suggested_in_errors_can_be_pasted_into_a_shell(run, corpus):
    """The hints printed `jambadocs docs -w my papers`: two arguments in a shell."""
    import shlex
    assert run("ingest", "-w", "my papers", str(corpus / "pari-refcard.pdf"))[0] == 0
    for argv in (("docs", "-w", "my papers", "--delete", "9"), ("chats", "-w", "my papers", "--delete", "9")):
        code, _, err = run(*argv)
        hint = err[err.index("(see: ") + 6: err.rindex(")")]
        assert code == 1 and shlex.split(hint) == ["jambadocs", argv[0], "-w", "my papers"], err


def test_docs_lists_the_files_a_closed_page_could_not_add_until_dismissed(run, corpus):
    """Files of a browser drop that failed after the page went away: `docs` names each with its
    reason (on stderr, so --json stays the documents' list) until `--dismiss-failed`."""
    from app.config import Settings
    from app.services import Services

    assert run("ingest", "-w", "lib", str(corpus / "pari-refcard.pdf"))[0] == 0
    with Services(Settings.from_env(data_dir=run.data, engine="extractive")) as svc:
        ws = svc.workspaces.by_name("lib")
        assert svc.documents.add_unwatched(ws.id, corpus / "fake.pdf") is None
    code, out, err = run("docs", "-w", "lib")
    assert code == 0 and "pari-refcard.pdf" in out
    assert "1 file dropped in the browser could not be added" in err
    assert re.search(r"fake\.pdf: .*PDF", err) and "--dismiss-failed" in err
    code, out, err = run("docs", "-w", "lib", "--json")
    assert [d["filename"] for d in json.loads(out)] == ["pari-refcard.pdf"] and "fake.pdf" in err
    assert run("docs", "-w", "lib", "--dismiss-failed")[1].startswith("dismissed 1 file")
    code, out, err = run("docs", "-w", "lib")
    assert code == 0 and "fake.pdf" not in err


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ingest_stopped_before_any_document_leaves_no_workspace(corpus, tmp_path, signal_name):
    """Ctrl-C (or kill) while the first file of a new workspace was read left the workspace, empty."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from pypdf import PdfReader, PdfWriter
    pages, big = PdfReader(corpus / "pari-refcard.pdf").pages, PdfWriter()
    for i in range(4000):                                       # seconds of reading, at least
        big.add_page(pages[i % 4])
    big.write(tmp_path / "big.pdf")
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--data-dir", str(data), "ingest", "-w", "fresh",
                             str(tmp_path / "big.pdf")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:                          # the workspace exists: reading has begun
        try:
            with sqlite3.connect(data / "jambadocs.sqlite3") as db:
                if db.execute("select count(*) from workspaces").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    proc.send_signal(getattr(signal, signal_name))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "added" not in out, (out, err)
    with sqlite3.connect(data / "jambadocs.sqlite3") as db:
        assert db.execute("select count(*) from workspaces").fetchone()[0] == 0


def test_a_file_changed_and_added_again_is_added_beside_the_first_and_says_so(run, tmp_path):
    """An edited file added again is new content, so a second document; both are read for every
    question (the extractive answer quoted the old date and the new), which nothing said."""
    plan = tmp_path / "plan.txt"
    plan.write_text("Quarterly plan. The launch date is March 3.\n", encoding="utf-8")
    assert run("ingest", "-w", "my plans", str(plan))[0] == 0
    plan.write_text("Quarterly plan. The launch date is June 9.\n", encoding="utf-8")
    code, out, _ = run("ingest", "-w", "my plans", str(plan))
    assert code == 0 and out.startswith("added [doc 2] plan.txt"), out
    note = out.splitlines()[1]
    assert re.fullmatch(r"  note: document 1 \(added \d{4}-\d\d-\d\d \d\d:\d\d\) has the same name and other "
                        r"content: an earlier version\? Both are read for every question until one is removed "
                        r"\(jambadocs docs -w 'my plans' --delete N\)", note), note
    other = tmp_path / "other.txt"                          # another name: no note
    other.write_text("Budget notes.\n", encoding="utf-8")
    assert "note:" not in run("ingest", "-w", "my plans", str(other))[1]


def test_ingest_a_folder_reports_a_link_to_a_file_that_is_gone(run, corpus, tmp_path):
    """A link in the folder whose file is gone (moved, on a drive not mounted) was skipped without a
    word, so the folder seemed added whole; now it is named as not added."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "card.pdf").write_bytes((corpus / "pari-refcard.pdf").read_bytes())
    (folder / "minutes.pdf").symlink_to(tmp_path / "usb" / "minutes.pdf")
    code, out, err = run("ingest", "-w", "f", str(folder))
    assert code == 1 and "added [doc 1] card.pdf" in out, (out, err)
    assert f"jambadocs: {folder / 'minutes.pdf'}: not added: cannot read the file (No such file or directory)" in err, err
    assert err.strip().splitlines()[-1].endswith("1 of 2 files not added")


def test_docs_reread_reads_documents_an_older_reader_read(run, corpus, tmp_path):
    """Only `serve` read stored documents again after the reader improved: a user of the command line
    kept the old text with no word of it. `docs` now says so, and `docs --reread` reads them again."""
    import sqlite3

    table = tmp_path / "cities.tsv"
    table.write_text("city\tcountry\tpeople\nSão Paulo\tBrazil\t12 million\n", encoding="utf-8")
    assert run("ingest", "-w", "lib", str(corpus / "pari-refcard.pdf"), str(table))[0] == 0
    code, out, err = run("docs", "-w", "lib")
    assert code == 0 and "older version" not in err
    with sqlite3.connect(run.data / "jambadocs.sqlite3") as con:      # as an older reader left them
        con.execute("UPDATE documents SET reader_version = 0")
        read_now = con.execute("SELECT p.text FROM pages p JOIN documents d ON d.id = p.document_id "
                               "WHERE d.filename = 'cities.tsv'").fetchone()[0]
        assert "São Paulo | Brazil | 12 million" in read_now
        con.execute("UPDATE pages SET text = replace(text, ' | ', ' ') WHERE document_id = "
                    "(SELECT id FROM documents WHERE filename = 'cities.tsv')")
    code, out, err = run("docs", "-w", "lib")
    assert code == 0 and "2 documents of this workspace were read by an older version" in err
    assert "jambadocs docs -w lib --reread" in err
    code, out, err = run("docs", "-w", "lib", "--reread", "--json")
    done = json.loads(out)
    assert code == 0 and len(done["changed"]) == 1 and len(done["unchanged"]) == 1 and not done["kept"]
    code, out, err = run("docs", "-w", "lib")
    assert code == 0 and "older version" not in err
    assert re.search(r"\(re-read \S+ by a newer reader: part 1 changed", out), out
    with sqlite3.connect(run.data / "jambadocs.sqlite3") as con:
        assert con.execute("SELECT p.text FROM pages p JOIN documents d ON d.id = p.document_id "
                           "WHERE d.filename = 'cities.tsv'").fetchone()[0] == read_now


def test_cache_clear_removes_a_newer_jambadocs_cache(run):
    """After a downgrade, states/index.sqlite of a newer jambadocs (schema above ours) made `cache
    clear` fail with the very error that told the user to clear the cache: it is removed, blobs and
    all, and the cache works again."""
    import sqlite3

    from app.state_store import SCHEMA_VERSION, StateStore, chain_keys

    store = StateStore(run.data / "states")
    keys = chain_keys("m", 1, [[1], [2]])
    store.put(keys[0], "", "m", 0, 0, 1, b"first state")
    store.put(keys[1], keys[0], "m", 1, 1, 2, b"second state")
    store.close()
    with sqlite3.connect(run.data / "states" / "index.sqlite") as conn:
        conn.execute("UPDATE store_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    code, _, err = run("cache", "stats")
    assert code == 1 and "newer" in err and "jambadocs cache clear" in err
    code, out, err = run("cache", "clear", "--json")
    assert code == 0 and json.loads(out) == {"removed_entries": 2}, (out, err)
    assert not list((run.data / "states" / "blobs").glob("*/*"))
    code, out, _ = run("cache", "stats", "--json")
    assert code == 0 and json.loads(out)["entries"] == 0
