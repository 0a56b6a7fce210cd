"""Generation: greedy/sampled decoding, eos, stop strings, streaming UTF-8, cancellation."""
from __future__ import annotations

import threading

import pytest
import torch

from engine.generate import IncrementalDecoder, StopMatcher

ARABIC_HEBREW = ["تقرير الشركة السنوي: ارتفعت الإيرادات بنسبة ١٢٪ في عام ٢٠٢٣.",
                 "הדוח השנתי של החברה: ההכנסות עלו ב־12% בשנת 2023.",
                 "mixed عربي עברית 中文 😀 text"]


@pytest.fixture()
def prompt(tiny_engine):
    return tiny_engine.tokenizer("The report says").input_ids


def _manual_greedy(eng, ids, n):
    logits, state = eng.prefill(ids, logits="last")
    out = []
    for _ in range(n):
        t = int(logits[-1].argmax())
        out.append(t)
        logits, state = eng.decode_step(t, state)
    return out


def test_greedy_follows_argmax_and_streams_its_decode(tiny_engine, prompt):
    eng = tiny_engine
    eng_eos, eng.eos_token_ids = eng.eos_token_ids, []
    try:
        gen = eng.generate(prompt, max_new_tokens=12)
        pieces = list(gen)
    finally:
        eng.eos_token_ids = eng_eos
    assert gen.token_ids == _manual_greedy(eng, prompt, 12)
    assert gen.finish_reason == "length"
    assert "".join(pieces) == gen.text == eng.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
    assert gen.state.n_tokens == len(prompt) + 11          # the last token is never fed back


def test_stops_on_eos_ids(tiny_engine, prompt):
    eng = tiny_engine
    first_two = _manual_greedy(eng, prompt, 2)
    saved, eng.eos_token_ids = eng.eos_token_ids, [first_two[1]]
    try:
        gen = eng.generate(prompt, max_new_tokens=50)
        list(gen)
    finally:
        eng.eos_token_ids = saved
    assert gen.finish_reason == "eos" and gen.token_ids == first_two[:1]


def test_seeded_sampling_is_reproducible(tiny_engine, prompt):
    eng = tiny_engine
    runs = [eng.generate(prompt, max_new_tokens=20, temperature=1.0, seed=s) for s in (5, 5, 6)]
    for r in runs:
        list(r)
    assert runs[0].token_ids == runs[1].token_ids
    assert runs[0].token_ids != runs[2].token_ids
    # a tiny top_p keeps only the most likely token: greedy
    tiny_p = eng.generate(prompt, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=1)
    greedy = eng.generate(prompt, max_new_tokens=8)
    list(tiny_p), list(greedy)
    assert tiny_p.token_ids == greedy.token_ids


def test_stop_string_cuts_the_text(tiny_engine, prompt):
    eng = tiny_engine
    saved, eng.eos_token_ids = eng.eos_token_ids, []
    try:
        full = eng.generate(prompt, max_new_tokens=30, temperature=1.0, seed=3)
        list(full)
        text = full.text
        stop = text[len(text) // 2:len(text) // 2 + 3]
        assert len(stop) == 3
        gen = eng.generate(prompt, max_new_tokens=30, temperature=1.0, seed=3, stop=[stop, "\x00never"])
        out = "".join(gen)
    finally:
        eng.eos_token_ids = saved
    assert gen.finish_reason == "stop"
    assert out == text[:text.index(stop)] and stop not in out


@pytest.mark.parametrize("text", ARABIC_HEBREW)
def test_incremental_decoding_never_breaks_characters(tiny_engine, text):
    tok = tiny_engine.tokenizer
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(ids) > len(text) // 3                          # tiny vocab: many byte-level pieces
    dec = IncrementalDecoder(tok)
    pieces = [p for p in (dec.push(t) for t in ids) if p] + [dec.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_reasoning_tags_stay_in_the_text_when_the_tokenizer_marks_them_special(tiny_engine):
    """A checkpoint whose tokenizer adds <think>/</think> as special tokens still streams them, so the
    answer can be told from the reasoning; its other special tokens (eos, turn markers) stay out."""
    import copy
    tok = copy.deepcopy(tiny_engine.tokenizer)
    tok.add_tokens(["<think>", "</think>"], special_tokens=True)
    text = "<think>\nThe report names 2023.</think>\n\nRevenue rose 12%."
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.convert_tokens_to_ids("</think>") in ids                  # one special token, not text
    ids += [tok.convert_tokens_to_ids("<|eom|>"), tok.eos_token_id]
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(t) for t in ids] + [dec.flush()]
    assert "".join(pieces) == text


def test_sampled_stream_equals_full_decode(tiny_engine):
    eng = tiny_engine
    prompt = eng.tokenizer(ARABIC_HEBREW[0]).input_ids
    gen = eng.generate(prompt, max_new_tokens=40, temperature=1.5, seed=11)
    pieces = list(gen)
    assert "".join(pieces) == eng.tokenizer.decode(gen.token_ids, skip_special_tokens=True)


def test_stop_matcher_holds_back_partial_matches():
    m = StopMatcher(["</answer>"])
    assert m.feed("Hello </ans") == ("Hello ", False)
    assert m.feed("wer> tail") == ("", True)
    m = StopMatcher(["STOP"])
    assert m.feed("ST") == ("", False)
    assert m.feed("ART") == ("START", False)


def test_cancel(tiny_engine, prompt):
    eng = tiny_engine
    cancel = threading.Event()
    saved, eng.eos_token_ids = eng.eos_token_ids, []
    try:
        gen = eng.generate(prompt, max_new_tokens=200, temperature=1.0, seed=2, cancel=cancel)
        for i, _ in enumerate(gen):
            if i == 2:
                cancel.set()
        assert gen.finish_reason == "cancelled" and len(gen.token_ids) < 10
        pre = threading.Event()
        pre.set()
        gen = eng.generate(prompt, max_new_tokens=5, cancel=pre)
        assert list(gen) == [] and gen.finish_reason == "cancelled"
    finally:
        eng.eos_token_ids = saved


def test_generate_continues_from_a_state(tiny_engine, prompt):
    eng = tiny_engine
    _, state = eng.prefill(prompt[:3], logits="none")
    a = eng.generate(prompt[3:], state=state, max_new_tokens=6)
    b = eng.generate(prompt, max_new_tokens=6)
    list(a), list(b)
    assert a.token_ids == b.token_ids


def test_generation_and_decode_stop_at_the_models_context(tmp_path, tiny_checkpoint):
    """Prefill refuses tokens past max_position_embeddings; decode and generate must too (they ran on
    past it, leaving a state no prefill could continue)."""
    import json
    import shutil

    from engine import EngineError, load_engine
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["max_position_embeddings"] = 24
    (folder / "config.json").write_text(json.dumps(cfg))
    eng = load_engine(folder, device="cpu", dtype="float32")
    ids = list(range(300, 320))                                         # 20 tokens: room for 4 more
    gen = eng.generate(ids, max_new_tokens=10)
    list(gen)
    assert gen.finish_reason == "length" and len(gen.token_ids) == 4 and gen.state.n_tokens == 23
    assert gen.token_ids == _manual_greedy(eng, ids, 4)
    _, full = eng.prefill(ids + gen.token_ids, logits="none")
    with pytest.raises(EngineError, match="exceed the model's context of 24"):
        eng.decode_step(5, full)
