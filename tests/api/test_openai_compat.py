"""The official `openai` client against /v1 on loopback: workspaces as models, chat, streaming."""
from __future__ import annotations

import httpx
import openai
import pytest

WS = "r-manual"


@pytest.fixture(scope="module")
def oai(server, corpus, credentials, upload_files) -> openai.OpenAI:
    with httpx.Client(base_url=server.url, auth=credentials, timeout=120) as c:
        assert c.post("/api/workspaces", json={"name": WS}).status_code == 201
        assert upload_files(c, WS, corpus / "r-intro.pdf").status_code == 201
    # the api_key is the UI's "user:password", sent as a Bearer token
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=":".join(credentials), max_retries=0)


def test_models_are_the_workspaces(oai):
    ids = [m.id for m in oai.models.list()]
    assert WS in ids
    assert oai.models.retrieve(WS).id == WS


def test_chat_completion_answers_from_the_workspace_with_citations(oai, extractive_services):
    r = oai.chat.completions.create(model=WS, messages=[
        {"role": "system", "content": "ignored: the workspace's documents make the prompt"},
        {"role": "user", "content": "How do I quit an R session?"}])
    content = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and "[doc 1, p." in content
    citations = r.model_extra["citations"]
    assert citations and all(c["file"] == "r-intro.pdf" for c in citations)
    assert any(c["verified"] for c in citations)
    # printed page labels of r-intro are physical page - 6; a citation shows both
    for c in citations:
        if c["page"] is not None and c["page"] > 6 and c["page_label"] and c["page_label"].isdigit():
            assert int(c["page_label"]) == c["page"] - 6
    saved = extractive_services.chats.messages(r.model_extra["chat_id"])
    assert [m.role for m in saved] == ["user", "assistant"] and saved[-1].text == content


def test_streaming_matches_the_final_answer(oai):
    stream = oai.chat.completions.create(
        model=WS, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What does the function q() do?"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert finals[0].model_extra["citations"] and "[doc 1, p." in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_history_reaches_the_engine_and_only_the_new_exchange_is_saved(oai, extractive_services):
    history = [{"role": "user", "content": "How are vectors created?"},
               {"role": "assistant", "content": "With the function c()."}]
    question = {"role": "user", "content": [{"type": "text", "text": "Any examples?"}]}
    r = oai.chat.completions.create(model=WS, messages=history + [question])
    alone = oai.chat.completions.create(model=WS, messages=[question])
    # a terse follow-up borrows the earlier question's words, so the history changes the answer
    assert r.choices[0].message.content != alone.choices[0].message.content
    assert "vector" in r.choices[0].message.content.lower()
    msgs = extractive_services.chats.messages(r.model_extra["chat_id"])
    assert [(m.role, m.text) for m in msgs] == [("user", "Any examples?"),
                                               ("assistant", r.choices[0].message.content)]


def test_a_conversation_sent_again_with_its_next_question_stays_one_chat(oai, extractive_services):
    """OpenAI clients send the whole conversation each time: a request whose earlier turns are a
    saved chat's messages continues that chat (it made a new one per call); any other history
    (edited, or never saved) still gets a chat of its own."""
    first = [{"role": "user", "content": "How are vectors created?"}]
    a = oai.chat.completions.create(model=WS, messages=first)
    chat = a.model_extra["chat_id"]
    turn2 = first + [{"role": "assistant", "content": a.choices[0].message.content},
                     {"role": "user", "content": "How is a matrix created?"}]
    b = oai.chat.completions.create(model=WS, messages=turn2)
    assert b.model_extra["chat_id"] == chat
    streamed = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=WS, stream=True, messages=turn2 + [{"role": "assistant", "content": b.choices[0].message.content},
                                                 {"role": "user", "content": "And a list?"}]) if c.choices)
    msgs = extractive_services.chats.messages(chat)
    assert [m.text for m in msgs if m.role == "user"] == ["How are vectors created?", "How is a matrix created?",
                                                          "And a list?"]
    assert " ".join(msgs[-1].text.split()) == " ".join(streamed.split())
    beep = [{"role": "user", "content": "How are\x07 arrays created?"}]       # saved without the BEL
    c = oai.chat.completions.create(model=WS, messages=beep)
    again = beep + [{"role": "assistant", "content": c.choices[0].message.content},
                    {"role": "user", "content": "And a data frame?"}]
    assert oai.chat.completions.create(model=WS, messages=again).model_extra["chat_id"] == c.model_extra["chat_id"]
    edited = turn2[:1] + [{"role": "assistant", "content": "Something else."}] + turn2[2:]
    assert oai.chat.completions.create(model=WS, messages=edited).model_extra["chat_id"] != chat
    assert len(extractive_services.chats.messages(chat)) == 6


def test_errors_reach_the_client(oai, server):
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="no-such-workspace",
                                    messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["reason"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=WS, messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError) as err:   # was a 200 with one choice, not 3
        oai.chat.completions.create(model=WS, n=3, messages=[{"role": "user", "content": "How are vectors created?"}])
    assert "n: Input should be less than or equal to 1" in err.value.body["message"]
    bad_key = openai.OpenAI(base_url=f"{server.url}/v1", api_key="alice:wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
