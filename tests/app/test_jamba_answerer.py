"""JambaAnswerer on a tiny checkpoint: the chain walk over stored document states, end to end."""
from __future__ import annotations

import dataclasses
import threading

import pytest

from app.answerers.base import AnswerRequest
from app.answerers.jamba import JambaAnswerer
from app.config import Settings
from engine import load_engine, state_bytes
from engine.testing import write_tiny_checkpoint
from ingest import Page, read_document
from ingest.budget import document_set_key
from ingest.prompt import PromptBuilder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ck"), seed=0)


@pytest.fixture(scope="module")
def eng(checkpoint):
    return load_engine(checkpoint)


@pytest.fixture(scope="module")
def docs(corpus):
    """Four real documents, each cut to two short pages (the tiny model runs on 2 shared cores)."""
    out = []
    for name, pages in (("hsaur-inference.pdf", (1, 3)), ("debian-history-fr.pdf", (7, 8)),
                        ("r-intro.pdf", (15, 16)), ("acm-sigconf.pdf", (1, 2))):
        doc = read_document(corpus / name)
        kept = [Page(p.number, p.label, p.text[:300]) for p in (doc.pages[n - 1] for n in pages)]
        out.append(dataclasses.replace(doc, pages=kept))
    return out


def _settings(checkpoint, tmp_path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "data", model=str(checkpoint), engine="jamba", **kw)


def ask(answerer, documents, question, history=(), cancel=None, max_new_tokens=12):
    events = list(answerer.answer(AnswerRequest(list(documents), question, list(history),
                                                max_new_tokens=max_new_tokens, cancel=cancel)))
    done = [e for e in events if e.kind == "done"]
    assert len(done) == 1 and events[-1] is done[0]
    assert "".join(e.text for e in events if e.kind == "token") == done[0].text
    return done[0].text, done[0].timings, [e for e in events if e.kind == "progress"]


def test_chain_walk_reuses_prefixes_across_questions_appends_removals_and_restarts(eng, checkpoint, docs,
                                                                                   tmp_path):
    settings = _settings(checkpoint, tmp_path)
    pb = PromptBuilder(eng.tokenizer)
    seg = pb.build(docs, "What is this about?")
    pre, d = len(seg.preamble), [len(x) for x in seg.documents]

    a = JambaAnswerer(settings, engine=eng)
    text1, t, progress = ask(a, docs[:3], "What is this about?")
    assert (t["cached_tokens"], t["restored_from"]) == (0, "none")
    tail1 = pb.build(docs[:3], "What is this about?").tail
    assert t["prefilled_tokens"] == t["prompt_tokens"] == pre + sum(d[:3]) + len(tail1)
    assert progress[-1].stage == "prefill" and progress[-1].done == progress[-1].total == pre + sum(d[:3])
    assert [e.done for e in progress] == sorted(e.done for e in progress)
    # boundaries are stored where the entry's Mamba state adds <= 10% to its K/V, and always at the end
    keys = a._warm.keys
    assert len(keys) == 4 and a.store.stored_depth(keys) == 4
    rows = [a.store.entry(k) for k in keys if a.store.entry(k) is not None]
    min_tokens = a._min_entry_tokens(eng)
    assert all(r.n_tokens - r.offset >= min_tokens for r in rows[:-1])
    assert a.store.entry(keys[1]) is not None  # preamble + doc 1 is long enough for an entry of its own
    dtype = str(eng.dtype).removeprefix("torch.")
    assert a.store.stats()["bytes"] <= 1.1 * state_bytes(eng.config, pre + sum(d[:3]), dtype)
    assert a.cached_documents(docs) == [True, True, True, False]

    # a follow-up in the same process: the document prefix comes from RAM, and the state after the first
    # question's prompt is continued: only the first answer and the new question are prefilled
    follow_up = pb.build(docs[:3], "And the dates?", [("user", "What is this about?"), ("assistant", text1)])
    assert follow_up.tail_pieces()[0] == tail1 and len(follow_up.tail_pieces()) == 2
    text2, t, _ = ask(a, docs[:3], "And the dates?", [("user", "What is this about?"), ("assistant", text1)])
    assert (t["cached_tokens"], t["prefilled_tokens"], t["restored_from"]) == \
        (pre + sum(d[:3]) + len(tail1), len(follow_up.tail) - len(tail1), "ram")
    assert t["stored_bytes"] == 0

    # a restart (new answerer, new store object): the same prefix comes from SQLite + blobs, same answer
    b = JambaAnswerer(settings, engine=eng)
    again, t, _ = ask(b, docs[:3], "And the dates?", [("user", "What is this about?"), ("assistant", text1)])
    assert (t["cached_tokens"], t["restored_from"]) == (pre + sum(d[:3]), "disk") and again == text2

    # appending a document prefills only that document (and the tail)
    _, t, _ = ask(b, docs, "What is this about?")
    assert t["cached_tokens"] == pre + sum(d[:3])
    assert t["prefilled_tokens"] == d[3] + len(seg.tail)

    # removing the middle document reuses the prefix before it (preamble + doc 1)
    c = JambaAnswerer(settings, engine=eng)
    _, t, _ = ask(c, [docs[0], docs[2], docs[3]], "What is this about?")
    assert (t["cached_tokens"], t["restored_from"]) == (pre + d[0], "disk")


def test_answers_are_identical_cached_and_uncached(eng, checkpoint, docs, tmp_path):
    history = [("user", "Who wrote it?"), ("assistant", "The authors [doc 1, p. 1].")]
    cold = JambaAnswerer(_settings(checkpoint, tmp_path / "cold"), engine=eng)
    warm = JambaAnswerer(_settings(checkpoint, tmp_path / "warm"), engine=eng)
    ask(warm, docs[:2], "Prime the cache.")
    for q, h in (("Which page mentions R?", ()), ("And the year?", history)):
        cold.store.clear()
        cold._warm = None
        uncached, t_cold, _ = ask(cold, docs[:2], q, h, max_new_tokens=24)
        cached, t_warm, _ = ask(warm, docs[:2], q, h, max_new_tokens=24)
        assert t_cold["cached_tokens"] == 0 and t_warm["cached_tokens"] > 0
        assert cached == uncached and len(cached) > 0


def test_damaged_blob_is_recomputed(eng, checkpoint, docs, tmp_path):
    settings = _settings(checkpoint, tmp_path)
    a = JambaAnswerer(settings, engine=eng)
    first, _, _ = ask(a, docs[:3], "What is this about?")
    keys = a._warm.keys
    assert a.store.entry(keys[1]) is not None and a.store.entry(keys[3]) is not None
    path = a.store._blob_path(keys[3])  # the last boundary's delta
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01
    path.write_bytes(bytes(blob))

    b = JambaAnswerer(settings, engine=eng)
    again, t, _ = ask(b, docs[:3], "What is this about?")
    seg = PromptBuilder(eng.tokenizer).build(docs[:3], "x")
    assert t["cached_tokens"] == len(seg.preamble) + len(seg.documents[0])  # stopped before the damage
    assert again == first
    assert b.store.stored_depth(keys) == 4 and b.store.read(keys[3]) is not None  # recomputed and stored again


def test_a_newer_jambadocs_cache_is_left_alone_and_questions_are_answered_without_it(eng, checkpoint, docs,
                                                                                      tmp_path, caplog):
    """A downgrade: states/index.sqlite written by a newer jambadocs (its schema above ours) failed every
    question with StateStoreError. Questions are answered without the cache (one warning naming the
    index), and that cache is neither read nor changed."""
    import sqlite3

    from app.state_store import SCHEMA_VERSION

    settings = _settings(checkpoint, tmp_path)
    first, _, _ = ask(JambaAnswerer(settings, engine=eng), docs[:2], "What is this about?")
    index = settings.data_dir / "states" / "index.sqlite"
    with sqlite3.connect(index) as conn:
        conn.execute("UPDATE store_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    blobs = sorted(p.name for p in (settings.data_dir / "states" / "blobs").glob("*/*"))
    a = JambaAnswerer(settings, engine=eng)
    with caplog.at_level("WARNING", logger="app.state_store"):
        again, t, _ = ask(a, docs[:2], "What is this about?")
        ask(a, docs[:2], "And the year?")
    assert again == first and t["cached_tokens"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "without the state cache" in warnings[0] and str(index) in warnings[0], warnings
    assert "newer" in warnings[0] and "jambadocs cache clear" in warnings[0]
    with sqlite3.connect(index) as conn:
        assert conn.execute("SELECT value FROM store_meta").fetchone()[0] == str(SCHEMA_VERSION + 1)
    assert sorted(p.name for p in (settings.data_dir / "states" / "blobs").glob("*/*")) == blobs


def test_another_model_never_reuses_the_states(eng, checkpoint, docs, tmp_path, tmp_path_factory):
    settings = _settings(checkpoint, tmp_path)
    ask(JambaAnswerer(settings, engine=eng), docs[:2], "What is this about?")
    other = load_engine(write_tiny_checkpoint(tmp_path_factory.mktemp("other"), seed=1))
    b = JambaAnswerer(settings.with_(model="other"), engine=other)
    _, t, _ = ask(b, docs[:2], "What is this about?")
    assert t["cached_tokens"] == 0 and b.store.stats()["models"].keys() == {eng.fingerprint, other.fingerprint}


def test_set_larger_than_the_context_is_fitted_by_retrieval_and_reported(corpus, docs, tmp_path_factory):
    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small"), seed=0, max_position_embeddings=1536)
    a = JambaAnswerer(_settings(small, tmp_path_factory.mktemp("data")))  # engine loaded lazily from settings
    doc = read_document(corpus / "hsaur-inference.pdf")
    _, t, progress = ask(a, [docs[0], doc], "Which test compares the means?", max_new_tokens=8)
    assert t["prompt_tokens"] <= 1536 - 8
    assert t["omitted"] and any(o["doc"] == 2 and o["pages"] for o in t["omitted"]["documents"])
    assert "left out" in t["omitted"]["summary"]
    assert any(e.stage == "retrieve" for e in progress)
    assert a.info()["max_context"] == 1536 and a.info()["fingerprint"] == a.engine.fingerprint
    assert a.info()["decode"] == a.engine.kernels["gemv"]              # "C on N threads" or "torch" on CPU


def test_cancel_mid_prefill_keeps_the_documents_already_done(eng, checkpoint, docs, tmp_path):
    a = JambaAnswerer(_settings(checkpoint, tmp_path), engine=eng)
    cancel = threading.Event()
    req = AnswerRequest(docs[:3], "What is this about?", [], max_new_tokens=8, cancel=cancel)
    seg = PromptBuilder(eng.tokenizer).build(docs[:3], "x")
    first_doc_end = len(seg.preamble) + len(seg.documents[0])
    events = []
    for ev in a.answer(req):
        events.append(ev)
        if ev.kind == "progress" and ev.done >= first_doc_end:
            cancel.set()
    assert not any(e.kind in ("token", "done") for e in events)
    depth = a.store.stored_depth(a._warm.keys)
    assert 2 <= depth < 4  # the preamble and document 1 are kept, not all documents were prefilled


def test_an_abandoned_question_stops_its_prefill(eng, checkpoint, docs, tmp_path):
    a = JambaAnswerer(_settings(checkpoint, tmp_path), engine=eng)
    stream = a.answer(AnswerRequest(docs[:3], "What is this about?", [], max_new_tokens=8))
    for ev in stream:
        if ev.kind == "progress" and ev.stage == "prefill":
            break
    stream.close()  # what Services does when a client goes away
    assert not any(t.name == "jamba-prefill" and t.is_alive() for t in threading.enumerate())
    _, t, _ = ask(a, docs[:3], "What is this about?")  # the engine is free, and the work done was kept
    assert t["prompt_tokens"] > 0 and t["cached_tokens"] < t["prompt_tokens"]


def test_model_resolution_names_what_is_wrong(checkpoint, tmp_path, monkeypatch):
    from app.answerers.jamba import resolve_model
    from app.errors import EngineUnavailable

    assert resolve_model(str(checkpoint)) == checkpoint
    downloaded = tmp_path / "models" / "ai21labs--Tiny"  # where `jambadocs download` puts a hub id
    downloaded.mkdir(parents=True)
    (downloaded / "config.json").write_text("{}")
    assert resolve_model("ai21labs/Tiny", tmp_path / "models") == downloaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EngineUnavailable, match="jambadocs download ai21labs/Missing"):
        resolve_model("ai21labs/Missing", tmp_path / "models")
    with pytest.raises(EngineUnavailable, match="no such folder"):
        resolve_model(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(EngineUnavailable, match="'/nonexistent': no such folder"):   # one slash: still a path
        resolve_model("/nonexistent")
    with pytest.raises(EngineUnavailable, match="'./ckpt': no such folder"):
        resolve_model("./ckpt")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(EngineUnavailable, match="not a folder"):
        resolve_model(str(tmp_path / "weights.bin"))
    with pytest.raises(EngineUnavailable, match="neither a checkpoint folder nor a hub id"):
        resolve_model("ai21labs/")
    with pytest.raises(EngineUnavailable, match="no model configured"):
        resolve_model(None)


def test_concurrent_questions_on_two_workspaces_do_not_mix_states(eng, checkpoint, docs, tmp_path):
    a = JambaAnswerer(_settings(checkpoint, tmp_path), engine=eng)
    sets = {"A": docs[:2], "B": [docs[3], docs[2]]}
    alone = {name: ask(JambaAnswerer(_settings(checkpoint, tmp_path / name), engine=eng), d, "Summary?")[0]
             for name, d in sets.items()}
    assert alone["A"] != alone["B"]  # so a state of the wrong workspace would show
    got: dict = {}

    def run(name: str) -> None:
        for _ in range(2):  # the second round restores each workspace's prefix while the other asks
            got.setdefault(name, []).append(ask(a, sets[name], "Summary?")[0])

    threads = [threading.Thread(target=run, args=(name,)) for name in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {name: [alone[name], alone[name]] for name in sets}


def test_quantize_setting_loads_int8_experts_and_keeps_their_states_apart(checkpoint, docs, tmp_path):
    """--quantize int8 reaches the engine: int8 expert weights, and a fingerprint of its own,
    so states computed with fp32 experts are never restored into the int8 engine."""
    plain = JambaAnswerer(_settings(checkpoint, tmp_path))
    q = JambaAnswerer(_settings(checkpoint, tmp_path, quantize="int8"))
    assert q.info()["quantize"] == "int8" and plain.info()["quantize"] is None
    assert q.info()["fingerprint"] != plain.info()["fingerprint"]
    ask(plain, docs[:1], "What is this about?")
    _, timings, _ = ask(q, docs[:1], "What is this about?")
    assert timings["cached_tokens"] == 0


def test_a_follow_up_on_a_set_larger_than_the_context_keeps_the_pages_and_their_states(corpus, docs,
                                                                                       tmp_path_factory):
    """The pages chosen for the first question match the follow-up as well as a fresh choice: the same
    documents go into the prompt, so their stored states serve it (also in a new process)."""
    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small"), seed=0, max_position_embeddings=4096)
    data = tmp_path_factory.mktemp("data")
    a = JambaAnswerer(_settings(small, data))
    doc = read_document(corpus / "hsaur-inference.pdf")
    question = "Which test compares the means?"
    assert a.cached_documents([docs[0], doc]) == [False, False]
    answer, t1, _ = ask(a, [docs[0], doc], question, max_new_tokens=8)
    assert t1["omitted"] and t1["cached_tokens"] == 0 and "relevance to the question" in t1["omitted"]["summary"]
    assert a.cached_documents([docs[0], doc]) == [True, True]          # as the answer read them
    assert t1["prompt_tokens"] <= 4096 - 8 - 900                          # room left for follow-ups
    history = [("user", question), ("assistant", answer)]
    b = JambaAnswerer(_settings(small, data))                              # a new process
    _, t2, _ = ask(b, [docs[0], doc], "Once more: which test compares the means?", history=history,
                   max_new_tokens=8)
    assert "earlier question" in t2["omitted"]["summary"]
    assert t2["omitted"]["documents"] == t1["omitted"]["documents"]
    assert t2["cached_tokens"] > 0.8 * t1["prompt_tokens"] and t2["prefilled_tokens"] < t1["prefilled_tokens"] / 4


def test_a_reasoning_model_thinks_within_its_budget_then_answers_exactly(checkpoint, docs, tmp_path):
    """Jamba Reasoning's template opens a <think> block: the reasoning streams as "thinking", is
    closed for the model after max_thinking_tokens, and the answer continues from the state exactly
    as one prefill of prompt + reasoning + "</think>" would."""
    from engine.testing import REASONING_TEMPLATE

    eng = load_engine(checkpoint)
    eng.tokenizer.chat_template = REASONING_TEMPLATE
    a = JambaAnswerer(_settings(checkpoint, tmp_path, max_thinking_tokens=9), engine=eng)
    assert a.builder.format == "system"
    events = list(a.answer(AnswerRequest(docs[:2], "Why is the sky blue?", max_new_tokens=7)))
    done = events[-1]
    thinking = "".join(e.text for e in events if e.kind == "thinking")
    answer = "".join(e.text for e in events if e.kind == "token")
    kinds = [e.kind for e in events if e.kind in ("thinking", "token")]
    assert kinds and kinds[0] == "thinking" and kinds == sorted(kinds, key=lambda k: k == "token")
    t = done.timings
    assert t["thinking_closed_by"] == "budget" and 9 <= t["thinking_tokens"] <= 12
    assert done.reasoning == thinking.strip() and done.text == answer

    seg = a.builder.build(docs[:2], "Why is the sky blue?")
    assert seg.thinking and seg.texts[-1].endswith("<think>\n")
    prompt = seg.ids()
    g = eng.generate(prompt, max_new_tokens=t["thinking_tokens"])
    thought = "".join(g)
    assert thought.strip().startswith(done.reasoning[:20])
    close = a.builder.encode_continuation("\n</think>\n\n")
    expected = eng.generate(prompt + g.token_ids + close, max_new_tokens=7)
    assert done.text == "".join(expected).lstrip()
    assert t["new_tokens"] == t["thinking_tokens"] + len(expected.token_ids)
    assert len(expected.token_ids) <= 7


def test_the_answer_is_exactly_what_the_engine_generates(eng, checkpoint, docs, tmp_path):
    """No text lost at the end (the generation's last held-back piece) or in between."""
    a = JambaAnswerer(_settings(checkpoint, tmp_path), engine=eng)
    text, timings, _ = ask(a, docs[:2], "What is it?", max_new_tokens=17)
    seg = PromptBuilder(eng.tokenizer).build(docs[:2], "What is it?")
    g = eng.generate(seg.ids(), max_new_tokens=17)
    assert text == "".join(g).lstrip() and timings["new_tokens"] == len(g.token_ids) == 17
    assert timings["finish_reason"] == g.finish_reason == "length"


def test_sampling_follows_the_checkpoint_unless_the_settings_say_otherwise(docs, tmp_path, tmp_path_factory):
    """A checkpoint whose generation_config samples (do_sample, temperature, top_p) is sampled with
    its values and a fresh seed per answer, kept in the timings; that seed replays the answer
    exactly; JAMBADOCS_TEMPERATURE=0 makes it greedy, equal to the engine's greedy generation."""
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("sampled"), seed=3,
                                   generation={"do_sample": True, "temperature": 0.9, "top_p": 0.95})
    eng = load_engine(folder)
    assert eng.sampling == (0.9, 0.95)
    question = "What is it?"
    a = JambaAnswerer(_settings(folder, tmp_path), engine=eng)
    first, t1, _ = ask(a, docs[:1], question, max_new_tokens=24)
    second, t2, _ = ask(a, docs[:1], question, max_new_tokens=24)
    s1, s2 = t1["sampling"], t2["sampling"]
    assert (s1["temperature"], s1["top_p"]) == (0.9, 0.95) and s1["seed"] != s2["seed"]
    seg = PromptBuilder(eng.tokenizer).build(docs[:1], question)
    for text, s in ((first, s1), (second, s2)):
        g = eng.generate(seg.ids(), max_new_tokens=24, temperature=0.9, top_p=0.95, seed=s["seed"])
        assert text == "".join(g).lstrip()
    assert first != second                  # 24 tokens drawn at 0.9 from a random model's spread
    replay = JambaAnswerer(_settings(folder, tmp_path, seed=s1["seed"]), engine=eng)
    assert ask(replay, docs[:1], question, max_new_tokens=24)[0] == first

    greedy = JambaAnswerer(_settings(folder, tmp_path, temperature=0.0), engine=eng)
    text, timings, _ = ask(greedy, docs[:1], question, max_new_tokens=24)
    assert timings["sampling"] == {"temperature": 0.0, "top_p": 1.0, "seed": None}
    assert text == "".join(eng.generate(seg.ids(), max_new_tokens=24)).lstrip()


def test_questions_append_to_the_documents_kv_in_place(eng, checkpoint, docs, tmp_path, monkeypatch):
    """One K/V buffer per attention layer holds the documents, each question and its answer: no copy
    of the documents' K/V per question, whether they were just read, kept in RAM or read from disk,
    and answers stay exactly those of a cold start."""
    made = []
    real_generate = eng.generate
    monkeypatch.setattr(eng, "generate", lambda *a, **kw: made.append(real_generate(*a, **kw)) or made[-1])
    layer = eng.config.attention_layers[0]

    def ask_and_buffer(answerer, question):
        text, timings, _ = ask(answerer, docs[:3], question, max_new_tokens=30)
        g = made.pop()                      # the answer's state must not outlive the answer here
        buf, n = g.state.kv[layer].buf, g.state.n_tokens
        del g
        assert timings["new_tokens"] == 30 and buf.capacity >= n
        return text, buf

    settings = _settings(checkpoint, tmp_path)
    a = JambaAnswerer(settings, engine=eng)
    _, first = ask_and_buffer(a, "What is it?")                     # documents read now
    text_ram, second = ask_and_buffer(a, "And then?")               # documents' state from RAM
    assert first is second is a._warm.state.kv[layer].buf
    b = JambaAnswerer(settings, engine=eng)                         # a new process: from disk
    _, third = ask_and_buffer(b, "What is it?")
    text_disk, fourth = ask_and_buffer(b, "And then?")
    assert third is fourth is b._warm.state.kv[layer].buf and third is not first
    cold = JambaAnswerer(_settings(checkpoint, tmp_path / "cold"), engine=eng)
    text_cold, _ = ask_and_buffer(cold, "And then?")
    assert text_ram == text_disk == text_cold


def test_a_conversation_continues_its_last_prompt_and_answers_as_a_cold_start(eng, checkpoint, docs, tmp_path):
    """Each turn prefills only the last answer and the new question (the state after the previous
    prompt is kept), and gives exactly the answer a fresh process gives; another chat on the same
    documents, or an edited history, starts from the documents' state again, in place."""
    pb = PromptBuilder(eng.tokenizer)
    warm = JambaAnswerer(_settings(checkpoint, tmp_path / "warm"), engine=eng)
    history, previous_tail = [], None
    for question in ("What is this about?", "Who wrote it?", "Which year?"):
        text, t, _ = ask(warm, docs[:2], question, history, max_new_tokens=16)
        cold = JambaAnswerer(_settings(checkpoint, tmp_path / "cold"), engine=eng)
        cold.store.clear()
        cold_text, t_cold, cold_progress = ask(cold, docs[:2], question, history, max_new_tokens=16)
        assert text == cold_text and len(text) > 0
        tail = pb.build(docs[:2], question, history).tail
        docs_tokens = t_cold["cached_tokens"] + t_cold["prefilled_tokens"] - len(tail)
        reused = len(previous_tail) if previous_tail is not None else 0
        if previous_tail is None:                                   # the documents are read now
            assert (t["cached_tokens"], t["prefilled_tokens"]) == (0, docs_tokens + len(tail))
        else:
            assert (t["cached_tokens"], t["prefilled_tokens"]) == (docs_tokens + reused, len(tail) - reused)
            assert tail[:reused] == previous_tail
            # without a kept state the earlier turns are prefilled too, and the progress counts them
            last = [e for e in cold_progress if e.stage == "prefill"][-1]
            assert last.done == last.total == docs_tokens + reused
        history += [("user", question), ("assistant", text)]
        previous_tail = tail

    layer = eng.config.attention_layers[0]
    docs_buffer = warm._warm.state.kv[layer].buf
    for other in ([], [("user", "Something else?"), ("assistant", "Yes.")], history[:2] + [("user", "Edited")]):
        text, t, _ = ask(warm, docs[:2], "Which year?", other, max_new_tokens=16)
        assert t["prefilled_tokens"] == len(pb.build(docs[:2], "Which year?", other).tail)
        assert warm._turn.state.kv[layer].buf is docs_buffer      # no copy of the documents' K/V
        cold = JambaAnswerer(_settings(checkpoint, tmp_path / "cold"), engine=eng)
        assert text == ask(cold, docs[:2], "Which year?", other, max_new_tokens=16)[0]
    # a document added after the conversation: read after the documents' rows, in the same buffer
    assert warm._turn is not None
    ask(warm, docs[:3], "Which year?", history, max_new_tokens=4)
    assert warm._warm.state.kv[layer].buf is docs_buffer and len(warm._warm.keys) == len(warm._turn.keys)


def test_a_conversation_that_outgrows_the_documents_buffer_keeps_one_buffer(eng, checkpoint, docs, tmp_path,
                                                                           monkeypatch):
    """With no spare rows beyond the first answer, a later turn continues in a copy of the K/V; the
    documents' state then reads its rows from that copy (RAM holds one buffer, not two), and the
    answers stay those of a cold start, for this chat and for another one."""
    import app.answerers.jamba as jamba
    monkeypatch.setattr(jamba, "FOLLOW_UP_TOKENS", 0)
    layer = eng.config.attention_layers[0]
    a = JambaAnswerer(_settings(checkpoint, tmp_path / "a"), engine=eng)
    history, buffers = [], set()
    for question in ("What is this about?", "Who wrote it, and when, and for whom?", "Which year exactly?"):
        text, _, _ = ask(a, docs[:2], question, history, max_new_tokens=8)
        assert a._warm.state.kv[layer].buf is a._turn.state.kv[layer].buf
        buffers.add(id(a._turn.state.kv[layer].buf))
        cold = JambaAnswerer(_settings(checkpoint, tmp_path / "cold"), engine=eng)
        assert text == ask(cold, docs[:2], question, history, max_new_tokens=8)[0]
        history += [("user", question), ("assistant", text)]
    assert len(buffers) > 1                                        # the conversation did outgrow it
    other, _, _ = ask(a, docs[:2], "Another chat?", max_new_tokens=8)
    cold = JambaAnswerer(_settings(checkpoint, tmp_path / "cold2"), engine=eng)
    assert other == ask(cold, docs[:2], "Another chat?", max_new_tokens=8)[0]


def test_loading_the_checkpoint_reports_its_progress(checkpoint, tmp_path):
    """The answerer records the loader's (stage, done, total) as the layers are read; Services
    reports it while loading and nothing once the engine is up."""
    from app.services import Services

    seen = []
    a = JambaAnswerer(_settings(checkpoint, tmp_path, quantize="int8"))
    record = a._loading
    a._loading = lambda *p: (seen.append(p), record(*p))
    a.engine
    layers = a.engine.config.num_hidden_layers
    assert [p for p in seen if p[0] == "weights"] == [("weights", i, layers + 1) for i in range(1, layers + 2)]
    assert [p for p in seen if p[0] == "int8"] == [("int8", i, layers) for i in range(1, layers + 1)]
    assert a.load_progress == ("int8", layers, layers)
    svc = Services(_settings(checkpoint, tmp_path / "svc"))
    assert svc.load_progress() is None
    svc.start_engine()
    assert svc.load_progress() is None
    svc.close()


def test_a_hub_id_is_found_in_the_hugging_face_cache_and_never_fetched(checkpoint, tmp_path, monkeypatch):
    """Only `jambadocs download` goes online: `ask --model owner/name` used to download a missing
    model itself (serve, offline, could not), and now finds a copy other tools left in the cache."""
    import shutil
    import socket

    from app.answerers.jamba import resolve_model
    from app.errors import EngineUnavailable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hub_constants
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError("resolve_model opened a network connection")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(EngineUnavailable, match="not downloaded .* `jambadocs download ai21labs/Elsewhere`"):
        resolve_model("ai21labs/Elsewhere", tmp_path / "models")

    commit = "0123456789abcdef0123456789abcdef01234567"          # the hub cache's layout
    repo = cache / "models--ai21labs--Elsewhere"
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    found = resolve_model("ai21labs/Elsewhere", tmp_path / "models")
    assert found == repo / "snapshots" / commit and (found / "config.json").is_file()


def test_a_document_the_last_answer_did_not_read_at_all_is_not_cached(corpus, tmp_path_factory):
    """Over the context, the answer may keep no page of a document; its (empty) segment used to make
    the documents list call it cached."""
    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small2"), seed=0, max_position_embeddings=4096)
    a = JambaAnswerer(_settings(small, tmp_path_factory.mktemp("data2")))
    docs = [read_document(corpus / n) for n in ("hsaur-inference.pdf", "latexsheet-de.pdf", "pari-refcard.pdf")]
    _, timings, _ = ask(a, docs, "What is a t-test?", max_new_tokens=8)
    kept = a.store.selection(document_set_key(docs, a.engine.fingerprint))
    assert kept is not None and any(kept) and not all(kept), kept      # some read, one not at all
    assert a.cached_documents(docs) == [bool(k) for k in kept]


def test_a_long_conversation_loses_its_oldest_turns_not_the_documents(corpus, tmp_path_factory):
    """A chat whose earlier turns outgrew the context failed every follow-up ("the question and
    conversation leave no room for the documents"); now the oldest turns are left out of the prompt,
    said so, and the documents keep at least half the room."""
    from app.answerers.base import HISTORY_SHARE

    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small3"), seed=0, max_position_embeddings=4096)
    a = JambaAnswerer(_settings(small, tmp_path_factory.mktemp("data3")))
    doc = read_document(corpus / "pari-refcard.pdf")
    doc.pages = [dataclasses.replace(doc.pages[0], text=doc.pages[0].text[:300])]
    words = [f"word{i}" for i in range(2000)]
    while a.count_tokens(" ".join(words)) > 600:                        # ~600 tokens a turn: 6 of
        words = words[:-20]                                             # them fill the 4K context
    long_turn = " ".join(words)
    history = [("user", f"Question {n}: {long_turn}") if n % 2 == 0 else ("assistant", f"Answer {n}: {long_turn}")
               for n in range(6)]
    _, timings, _ = ask(a, [doc], "Which command factors an integer?", history=history, max_new_tokens=8)
    dropped = timings["omitted"]["history_messages"]
    assert dropped % 2 == 0 and 2 <= dropped < len(history)
    assert f"the {dropped} oldest messages of this chat" in timings["omitted"]["summary"]
    kept = a.builder.build([doc], "Which command factors an integer?", history=history[dropped:])
    assert len(kept.tail) <= (a.engine.max_context - 8) * HISTORY_SHARE
    assert timings["prompt_tokens"] == len(kept)                       # the prompt that was answered
    longer = history + history[:4]                                      # more than the whole context
    assert sum(a.count_tokens(t) for _, t in longer) > a.engine.max_context
    _, timings, _ = ask(a, [doc], "And which one computes a gcd?", history=longer, max_new_tokens=8)
    assert timings["omitted"]["history_messages"] >= 6


def test_more_documents_than_their_titles_fit_is_refused_for_that_reason(tmp_path_factory):
    """It blamed "the question and conversation (46 tokens)" for a workspace whose documents'
    titles and page markers alone overflowed the context."""
    from app.errors import InvalidInput

    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small4"), seed=0, max_position_embeddings=1024)
    a = JambaAnswerer(_settings(small, tmp_path_factory.mktemp("data4")))
    from ingest.model import Document
    docs = [Document(title=f"Memo number {i}", filename=f"memo-{i}.txt", kind="txt", unit="part",
                     pages=[Page(1, "part 1", f"Memo {i}: the meeting moved to room {i}.")],
                     content_hash=f"{i:064x}", text_hash=f"{i:064x}") for i in range(120)]
    with pytest.raises(InvalidInput, match="120 documents' titles and page markers alone take .* smaller workspaces"):
        ask(a, docs, "Where is the meeting?", max_new_tokens=8)


def _slow_plan(a, documents, question, history, max_new_tokens):
    """The plan as it was made until 2026-11-29: the whole set's prompt built first, then its pages
    chosen (fit_documents) and the prompt built again of those."""
    from app.answerers.jamba import FOLLOW_UP_TOKENS
    from ingest.budget import fit_documents

    room = a.engine.max_context - max_new_tokens
    seg = a.builder.build(documents, question, history=history)
    assert len(seg) > room                          # the set does not fit: pages are chosen
    budget = room - len(seg.preamble) - len(seg.tail)
    for _ in range(4):
        fit = fit_documents(documents, question, budget, tokenizer=a.engine.tokenizer, reserve=FOLLOW_UP_TOKENS)
        seg = a.builder.build(fit.documents, question, history=history)
        if len(seg) <= room:
            return seg, fit
        budget -= len(seg) - room + 64
    raise AssertionError("no fit")


def _plan(a, documents, question, history, max_new_tokens):
    gen = a._plan(a.engine, AnswerRequest(list(documents), question, list(history), max_new_tokens=max_new_tokens))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


@pytest.fixture(scope="module")
def big_set(corpus):
    """Real documents, about 90 times a 4K context."""
    return [read_document(corpus / name) for name in ("hsaur-inference.pdf", "debian-history-fr.pdf",
                                                       "r-intro.pdf", "gnuplot.pdf")]


def test_a_set_far_over_the_context_gets_the_same_pages_and_prompt_without_being_tokenised_whole(
        big_set, tmp_path_factory, monkeypatch):
    """A question on a set far larger than the context built the whole set's prompt (every document
    tokenised) only to learn that it did not fit: minutes to the first token for thousands of pages.
    Now the preamble and tail come first and the documents are tokenised only until they are over:
    the same pages are chosen and the prompt is token for token the one of the slow path."""
    from app.answerers.jamba import _chain_segments

    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small5"), seed=0, max_position_embeddings=4096)
    a = JambaAnswerer(_settings(small, tmp_path_factory.mktemp("data5")))
    question, history = "How do I set the title of a plot?", [("user", "What is R?"), ("assistant", "A language.")]
    encoded: list[int] = []                         # characters the prompt builder tokenised
    encode = a.builder._encode
    monkeypatch.setattr(a.builder, "_encode", lambda text, continuation: encoded.append(len(text)) or
                        encode(text, continuation))
    plan = _plan(a, big_set, question, history, 8)
    monkeypatch.undo()
    whole = sum(len(p.text) for d in big_set for p in d.pages)
    assert sum(encoded) < whole / 10

    slow, fit = _slow_plan(a, big_set, question, history, 8)
    assert plan.segments == _chain_segments(slow) and plan.tail_pieces == slow.tail_pieces()
    assert plan.omitted["summary"] == fit.summary() and "relevance to the question" in fit.summary()
    assert [o["pages"] for o in plan.omitted["documents"]] == [o.pages for o in fit.omitted]
    assert any(d.pages for d in fit.documents[2:])   # pages of r-intro / gnuplot were kept

    # a set that fits exactly is not cut: the whole prompt, as before
    short = [dataclasses.replace(d, pages=d.pages[:1]) for d in big_set[:2]]
    full = a.builder.build(short, question, history=history)
    just = write_tiny_checkpoint(tmp_path_factory.mktemp("just"), seed=0, max_position_embeddings=len(full) + 8)
    b = JambaAnswerer(_settings(just, tmp_path_factory.mktemp("data6")))
    plan = _plan(b, short, question, history, 8)
    assert plan.omitted is None and plan.segments == _chain_segments(full)
    over = write_tiny_checkpoint(tmp_path_factory.mktemp("over"), seed=0, max_position_embeddings=len(full) + 7)
    c = JambaAnswerer(_settings(over, tmp_path_factory.mktemp("data7")))
    assert _plan(c, short, question, history, 8).omitted is not None      # one token over: pages are chosen


class _CountingBackend:
    """A fast tokenizer's backend that records the texts it is asked to count (encode_batch[_fast])."""

    def __init__(self, real):
        self.real, self.counted = real, []

    def encode_batch(self, texts, **kw):
        self.counted.extend(texts)
        return self.real.encode_batch(texts, **kw)

    def encode_batch_fast(self, texts, **kw):
        self.counted.extend(texts)
        return self.real.encode_batch_fast(texts, **kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_page_counts_of_a_set_over_the_context_are_kept_for_a_new_process(big_set, tmp_path_factory, monkeypatch):
    """Every question on a set larger than the context counts the tokens of every page (4,000 pages:
    6-10 s on this machine); the counts lived in the process only, so a new one (`jambadocs ask`, a
    restarted server) tokenised the whole set again. They are kept in the state store, per tokenizer
    and page text: a new process counts only what changed, and picks the same pages."""
    import weakref

    import ingest.budget as budget

    small = write_tiny_checkpoint(tmp_path_factory.mktemp("small8"), seed=0, max_position_embeddings=4096)
    data = tmp_path_factory.mktemp("data8")
    eng = load_engine(small)
    tok = eng.tokenizer
    backend = _CountingBackend(tok.backend_tokenizer)
    monkeypatch.setattr(type(tok), "backend_tokenizer", property(lambda self: backend if self is tok else
                                                                 self._tokenizer))
    question = "How do I set the title of a plot?"
    big_set = big_set[:3]                                               # 154 pages, ~75 times the context
    pages = sum(len(d.pages) for d in big_set)

    def new_process():
        monkeypatch.setattr(budget, "_COUNTS", weakref.WeakKeyDictionary())
        monkeypatch.setattr(budget, "_INDEXES", type(budget._INDEXES)())
        backend.counted.clear()
        return JambaAnswerer(_settings(small, data), engine=eng)

    first = _plan(new_process(), big_set, question, (), 8)
    assert len(backend.counted) >= pages                               # every page counted once
    again = _plan(new_process(), big_set, question, (), 8)
    assert len(backend.counted) < len(big_set) + 5                     # frames and a gap line, no page
    assert again.segments == first.segments and again.omitted["documents"] == first.omitted["documents"]

    edited = [dataclasses.replace(big_set[0], pages=[dataclasses.replace(big_set[0].pages[0], text="Edited.")]
                                  + big_set[0].pages[1:])] + big_set[1:]
    _plan(new_process(), edited, question, (), 8)
    assert sum("Edited." in t for t in backend.counted) == 1 and len(backend.counted) < len(big_set) + 6

    other = write_tiny_checkpoint(tmp_path_factory.mktemp("other8"), seed=0, vocab_size=1024,
                                  max_position_embeddings=4096)
    a = JambaAnswerer(_settings(other, data))                           # another tokenizer: its own counts
    monkeypatch.setattr(budget, "_COUNTS", weakref.WeakKeyDictionary())
    summary = _plan(a, big_set, question, (), 8).omitted["summary"]
    monkeypatch.setattr(budget, "_COUNTS", weakref.WeakKeyDictionary())
    assert summary == _slow_plan(a, big_set, question, (), 8)[1].summary() != first.omitted["summary"]


def test_states_computed_on_another_kernel_path_are_not_reused(checkpoint, docs, tmp_path, monkeypatch):
    """The C kernels and torch ops give slightly different states (found: the same prefix restored
    from C-computed states gave other first-token logits than a cold torch-ops run), so a data folder
    used by both (a machine that lost its compiler, JAMBADOCS_KERNELS=torch, CPU and GPU on one
    volume) must keep their cached states apart, or an answer would differ from a cold one."""
    from engine import cpu_kernels

    c_eng = load_engine(checkpoint)
    if not cpu_kernels.active():
        pytest.skip("no C compiler: the CPU kernels are not built here")
    ask(JambaAnswerer(_settings(checkpoint, tmp_path), engine=c_eng), docs[:2], "What is this about?")
    try:
        with monkeypatch.context() as m:
            m.setenv("JAMBADOCS_KERNELS", "torch")
            cpu_kernels.disable()
            torch_eng = load_engine(checkpoint)
            assert not cpu_kernels.active()
            warm, t, _ = ask(JambaAnswerer(_settings(checkpoint, tmp_path), engine=torch_eng), docs[:2],
                             "What is this about?", max_new_tokens=24)
            cold, _, _ = ask(JambaAnswerer(_settings(checkpoint, tmp_path / "cold"), engine=torch_eng), docs[:2],
                             "What is this about?", max_new_tokens=24)
    finally:
        cpu_kernels.enable()
    assert (t["cached_tokens"], t["restored_from"]) == (0, "none") and warm == cold
    assert torch_eng.fingerprint == c_eng.fingerprint     # one model: a state blob stays portable
