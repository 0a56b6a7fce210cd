"""A database made by each earlier schema version (by the code of the commit that added it) opens,
is migrated to date and keeps its workspaces, documents, pages, chats and citations."""
from __future__ import annotations

import textwrap

import pytest

from app import db
from app.config import Settings
from app.services import Services
from tests.app.old_code import run_old_code

# The commits that added migrations 1 to 4 (app/db.py's history).
SCHEMA_COMMITS = {1: "0c31989", 2: "2774c5e", 3: "b74fa26", 4: "371222d"}

OLD_CHILD = textwrap.dedent("""
    import json, sqlite3, sys
    from pathlib import Path
    from app.config import Settings
    from app.services import Services
    data, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    svc = Services(Settings.from_env(data_dir=data, engine="extractive"))
    ws = svc.workspaces.create("w")
    doc = svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    chat = svc.chats.create(ws.id)
    svc.qa.answer(ws.id, "What is the Wilcoxon test?", chat_id=chat.id)
    con = sqlite3.connect(data / "jambadocs.sqlite3")
    version = con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    cited = con.execute("SELECT count(*) FROM citations").fetchone()[0]
    print(json.dumps({"version": version, "doc": doc.id, "pages": doc.pages, "cited": cited,
                      "page3": svc.documents.page(doc.id, 3).text}))
""")


@pytest.mark.parametrize("version", sorted(SCHEMA_COMMITS))
def test_a_database_of_each_older_schema_is_migrated_and_keeps_its_data(version, tmp_path, corpus):
    data = tmp_path / "data"
    made = run_old_code(SCHEMA_COMMITS[version], tmp_path, OLD_CHILD, data, corpus)
    assert made["version"] == version and made["cited"] > 0
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        with svc.db.connect() as conn:
            assert db.schema_version(conn) == db.SCHEMA_VERSION
        ws = svc.workspaces.by_name("w")
        [doc] = svc.documents.list(ws.id)
        assert (doc.id, doc.pages) == (made["doc"], made["pages"])
        assert svc.documents.page(doc.id, 3).text == made["page3"]
        assert svc.documents.file_path(doc.id).is_file()
        [chat] = svc.chats.list(ws.id)
        question, answer = svc.chats.messages(chat.id)
        assert question.text == "What is the Wilcoxon test?"
        assert len(answer.citations) == made["cited"]
        assert {c.unit for c in answer.citations} == {"page"}        # migration 3's default
        assert all(c.doc_id == doc.id for c in answer.citations)
        # the columns later migrations added are usable: a re-read, a failure record, a delete
        assert svc.documents.reread_outdated() == {"changed": [], "unchanged": [doc.id], "kept": []}
        svc.documents.record_failure(ws.id, "x.pdf", ValueError("test"))
        svc.documents.remove(ws.id, doc.id)
        assert svc.documents.list(ws.id) == [] and len(svc.chats.messages(chat.id)[1].citations) == made["cited"]
