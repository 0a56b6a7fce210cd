"""An engine that cannot start (--model pointing at no checkpoint): documents still list and add,
token counts stay None, and only asking (and the engine/budget views) reports why."""
from __future__ import annotations

import pytest
import torch

from app.config import Settings
from app.errors import EngineUnavailable
from app.services import Services


@pytest.fixture
def broken(tmp_path):
    folder = tmp_path / "no-checkpoint-here"
    folder.mkdir()                                   # a folder, but no config.json nor weights
    svc = Services(Settings.from_env(data_dir=tmp_path / "data", model=str(folder), engine=None))
    yield svc
    svc.close()


def test_documents_list_and_add_while_the_engine_cannot_start(broken, corpus):
    svc = broken
    assert svc.settings.resolved_engine() == "jamba"
    ws = svc.workspaces.create("w")
    first = svc.documents.add(ws.id, corpus / "pari-refcard.pdf")
    assert first.tokens is None and first.pages > 0

    stream = svc.qa.ask(ws.id, "How do I invert a matrix?")   # validation passes: it has documents
    with pytest.raises(EngineUnavailable, match="no-checkpoint-here"):
        list(stream)                                           # the engine start fails in the stream
    assert svc.chats.list(ws.id) == []                         # no empty, untitled chat left behind

    # the failed start must not leak into the document views
    assert [d.id for d in svc.documents.list(ws.id)] == [first.id]
    second = svc.documents.add(ws.id, corpus / "acm-sigconf.pdf")     # never raises after committing
    assert second.index == 2 and second.tokens is None and not second.cached
    listed = svc.documents.list(ws.id)
    assert [(d.filename, d.tokens, d.cached) for d in listed] == [
        ("pari-refcard.pdf", None, False), ("acm-sigconf.pdf", None, False)]
    assert svc.documents.get(second.id).pages == second.pages
    assert svc.documents.add(ws.id, corpus / "acm-sigconf.pdf").id == second.id   # same content

    # the engine views say why; a new question tries again and says why again, saving nothing
    for view in (svc.engine_info, lambda: svc.budget(ws.id)):
        with pytest.raises(EngineUnavailable, match="no-checkpoint-here"):
            view()
    chat = svc.chats.create(ws.id)
    with pytest.raises(EngineUnavailable, match="no-checkpoint-here"):
        list(svc.qa.ask(ws.id, "How do I invert a matrix?", chat_id=chat.id))
    assert svc.chats.messages(chat.id) == []
    assert [c.id for c in svc.chats.list(ws.id)] == [chat.id]  # a chat the user opened stays
    assert len(svc.documents.list(ws.id)) == 2
    assert not svc.answerer_loaded and "no-checkpoint-here" in svc.engine_error


@pytest.mark.parametrize("device, says", [("tpu", "unknown device 'tpu'; use cpu, cuda or cuda:N"),
                                          ("gpu0", "unknown device 'gpu0'"),
                                          pytest.param("cuda", "this torch sees no CUDA GPU; use cpu", marks=
                                                       pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU"))])
def test_a_device_that_cannot_run_here_is_one_clear_reason(tmp_path, corpus, device, says):
    """--device tpu failed with torch's RuntimeError and a logged traceback, as a crash of the engine."""
    from engine.testing import write_tiny_checkpoint
    model = write_tiny_checkpoint(tmp_path / "tiny")
    with Services(Settings.from_env(data_dir=tmp_path / "data", model=str(model), device=device)) as svc:
        ws = svc.workspaces.create("w")
        svc.documents.add(ws.id, corpus / "pari-refcard.pdf")
        with pytest.raises(EngineUnavailable) as err:
            list(svc.qa.ask(ws.id, "How do I invert a matrix?"))
        assert str(err.value).startswith("cannot load the Jamba checkpoint: ") and says in str(err.value)
