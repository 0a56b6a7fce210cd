"""HybridState: continuation from any split, immutability, deltas, bytes, size from config."""
from __future__ import annotations

import random

import pytest
import torch

from engine import EngineError, HybridState, StateError, load_engine
from engine.config import JambaConfig
from engine.state import state_bytes
from engine.state_size import ALL_ATTENTION, JAMBA_MINI, kv_bytes
from engine.testing import write_tiny_checkpoint

GIB = 1 << 30


def _ids(eng, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, eng.config.vocab_size, (n,), generator=g).tolist()


def _snapshot(state: HybridState) -> bytes:
    return state.to_bytes()


@pytest.fixture(scope="module")
def eng_multi(tmp_path_factory):
    """Two attention layers, MoE: exercises K/V continuation in more than one layer."""
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("multi"), num_hidden_layers=6, attn_layer_period=3,
                                 attn_layer_offset=1, seed=3)
    return load_engine(path, device="cpu", dtype="float32", chunk_size=16)


@pytest.mark.parametrize("trial", range(4))
def test_any_split_gives_one_pass_logits(eng_multi, trial):
    eng = eng_multi
    rnd = random.Random(trial)
    ids = _ids(eng, 90, seed=trial)
    full, full_state = eng.prefill(ids)
    cuts = sorted(rnd.sample(range(1, len(ids)), rnd.randint(1, 5)))
    state, parts = None, []
    for a, b in zip([0] + cuts, cuts + [len(ids)]):
        before = _snapshot(state) if state is not None else None
        logits, new_state = eng.prefill(ids[a:b], state)
        if state is not None:
            assert _snapshot(state) == before                      # input state never modified
        parts.append(logits)
        state = new_state
    torch.testing.assert_close(torch.cat(parts), full, atol=1e-4, rtol=0)
    assert state.n_tokens == full_state.n_tokens == len(ids)


def test_two_continuations_of_one_state_do_not_interfere(eng_multi):
    eng = eng_multi
    ids = _ids(eng, 40)
    _, base = eng.prefill(ids[:20])
    a_logits, a_state = eng.prefill(ids[20:30], base)              # appends in place into base's buffer
    b_ids = _ids(eng, 10, seed=9)
    b_logits, b_state = eng.prefill(b_ids, base)                    # must copy, not overwrite a's rows
    ref_a, _ = eng.prefill(ids[:30])
    ref_b, _ = eng.prefill(ids[:20] + b_ids)
    torch.testing.assert_close(a_logits, ref_a[20:], atol=1e-4, rtol=0)
    torch.testing.assert_close(b_logits, ref_b[20:], atol=1e-4, rtol=0)
    la, _ = eng.prefill(ids[30:40], a_state)                        # a's K/V still intact
    ref, _ = eng.prefill(ids)
    torch.testing.assert_close(la, ref[30:], atol=1e-4, rtol=0)


def test_a_dropped_continuation_gives_its_rows_back(eng_multi):
    """The cached documents' state answers question after question: once an answer's state is gone,
    the next question appends in place where it was (no copy of every K/V row), exactly."""
    import gc
    eng = eng_multi
    ids = _ids(eng, 40)
    _, base = eng.prefill(ids[:20], logits="none")
    before = _snapshot(base)
    layer = next(iter(base.kv))
    _, first = eng.prefill(ids[20:30], base, logits="none")
    for t in range(5):
        _, first = eng.decode_step(t + 1, first)
    buf = first.kv[layer].buf
    assert buf is base.kv[layer].buf                                # the first question appended in place
    del first
    gc.collect()
    q2 = _ids(eng, 10, seed=9)
    logits, second = eng.prefill(q2, base)
    assert second.kv[layer].buf is buf                              # and so did the second: no copy
    ref, _ = eng.prefill(ids[:20] + q2)
    torch.testing.assert_close(logits, ref[20:], atol=1e-4, rtol=0)
    assert _snapshot(base) == before
    _, third = eng.prefill(ids[20:30], base)                        # `second` lives: this one copies
    assert third.kv[layer].buf is not buf
    la, _ = eng.prefill(ids[30:40], second)
    ref2, _ = eng.prefill(ids[:20] + q2 + ids[30:40])
    torch.testing.assert_close(la, ref2[30:], atol=1e-4, rtol=0)


def test_joined_restored_and_generating_states_keep_room_for_what_follows(eng_multi):
    """join(room=), with_room() and generate() leave spare K/V rows, so what follows appends in place
    (no copy of the K/V), exactly."""
    eng = eng_multi
    ids = _ids(eng, 60)
    layer = next(iter(eng.config.attention_layers))
    ref, _ = eng.prefill(ids)
    _, a = eng.prefill(ids[:25], logits="none")
    _, ab = eng.prefill(ids[25:40], a, logits="none")
    restored = [a.join(ab.since(25), room=30), eng.state_from_bytes(ab.to_bytes()).with_room(30)]
    for s in restored:
        assert s.kv[layer].buf.capacity == 40 + 30
        assert s.with_room(10).kv[layer].buf is s.kv[layer].buf            # room enough: no copy
        logits, c = eng.prefill(ids[40:60], s)
        assert c.kv[layer].buf is s.kv[layer].buf
        torch.testing.assert_close(logits, ref[40:], atol=1e-4, rtol=0)
    exact = eng.state_from_bytes(ab.to_bytes())                          # no spare rows
    g = eng.generate(ids[40:45], state=exact, max_new_tokens=40)
    text = "".join(g)
    assert g.state.kv[layer].buf.capacity == 45 + 40                      # one copy, room for the answer
    assert text == "".join(eng.generate(ids[:45], max_new_tokens=40))


def test_rows_in_a_copy_read_the_same_rows_and_free_the_first_buffer(eng_multi):
    """`rows_in(later)`: a state's K/V read from the buffer of a continuation that had to copy them."""
    import gc
    import weakref
    eng = eng_multi
    ids = _ids(eng, 50)
    layer = next(iter(eng.config.attention_layers))
    _, base = eng.prefill(ids[:20], logits="none")
    _, held = eng.prefill(ids[20:25], base, logits="none")            # takes base's rows after 20...
    _, later = eng.prefill(ids[20:30], base, logits="none")           # ...so this one copies
    assert held.kv[layer].buf is base.kv[layer].buf and later.kv[layer].buf is not base.kv[layer].buf
    first = weakref.ref(base.kv[layer].buf)
    moved = base.rows_in(later)
    assert moved.kv[layer].buf is later.kv[layer].buf and moved.n_tokens == 20
    del base, held
    gc.collect()
    assert first() is None                                           # the first buffer is gone
    logits, _ = eng.prefill(ids[30:50], later)
    ref, _ = eng.prefill(ids)
    torch.testing.assert_close(logits, ref[30:], atol=1e-4, rtol=0)
    b_logits, _ = eng.prefill(ids[20:50], moved)                     # `later` lives: this one copies
    torch.testing.assert_close(b_logits, ref[20:], atol=1e-4, rtol=0)
    with pytest.raises(StateError):
        later.rows_in(moved)


def test_logits_modes_and_progress(eng_multi):
    eng = eng_multi
    ids = _ids(eng, 50)
    full, _ = eng.prefill(ids)
    seen = []
    last, s1 = eng.prefill(ids, logits="last", progress=lambda d, t: seen.append((d, t)))
    none, s2 = eng.prefill(ids, logits="none")
    assert last.shape == (1, eng.config.vocab_size) and none is None
    torch.testing.assert_close(last, full[-1:], atol=1e-5, rtol=0)
    assert seen == [(16, 50), (32, 50), (48, 50), (50, 50)]
    assert s1.to_bytes() == s2.to_bytes()


def test_clone_is_independent(eng_multi):
    eng = eng_multi
    ids = _ids(eng, 30)
    _, state = eng.prefill(ids[:20])
    copy = state.clone()
    assert copy.to_bytes() == state.to_bytes() and copy.nbytes == state.nbytes
    for t in list(copy.conv.values()) + list(copy.ssm.values()):
        t.add_(1.0)
    next(iter(copy.kv.values())).k.add_(1.0)
    a, _ = eng.prefill(ids[20:], state)
    ref, _ = eng.prefill(ids)
    torch.testing.assert_close(a, ref[20:], atol=1e-4, rtol=0)


def test_since_and_join_rebuild_the_full_state(eng_multi):
    eng = eng_multi
    ids = _ids(eng, 60)
    _, s1 = eng.prefill(ids[:25])
    _, s2 = eng.prefill(ids[25:45], s1)
    _, s3 = eng.prefill(ids[45:], s2)
    d2, d3 = s2.since(25), s3.since(45)
    assert (d2.offset, d2.n_tokens, d2.kv_tokens) == (25, 45, 20)
    assert d2.nbytes < s2.nbytes
    rebuilt = s1.join(d2).join(d3)
    assert rebuilt.to_bytes() == s3.to_bytes()
    # deltas travel as bytes too
    rebuilt = s1.join(eng.state_from_bytes(d2.to_bytes()))
    assert rebuilt.to_bytes() == s2.to_bytes()
    with pytest.raises(StateError, match="starts at token 45"):
        s1.join(d3)
    with pytest.raises(Exception, match="partial state"):
        eng.prefill(ids[:3], d2)


def test_bytes_round_trip_continues_exactly(eng_multi):
    eng = eng_multi
    ids = _ids(eng, 40)
    _, state = eng.prefill(ids[:30])
    restored = eng.state_from_bytes(state.to_bytes())
    assert restored.n_tokens == 30 and restored.nbytes == state.nbytes
    a, _ = eng.prefill(ids[30:], restored)
    ref, _ = eng.prefill(ids)
    torch.testing.assert_close(a, ref[30:], atol=1e-4, rtol=0)
    assert b"pickle" not in state.to_bytes()[:64]


def test_damaged_or_foreign_blob_is_refused(eng_multi, tiny_engine):
    eng = eng_multi
    blob = bytearray(eng.prefill(_ids(eng, 20), logits="none")[1].to_bytes())
    for pos in (len(blob) // 2, 20, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 0x40
        with pytest.raises(StateError, match="damaged|magic"):
            eng.state_from_bytes(bytes(bad))
    with pytest.raises(StateError):
        eng.state_from_bytes(bytes(blob[:100]))
    with pytest.raises(StateError, match="another model"):
        tiny_engine.state_from_bytes(bytes(blob))
    with pytest.raises(StateError, match="another model"):
        tiny_engine.prefill([1, 2], eng.prefill([1, 2], logits="none")[1])


def test_a_format_1_blob_with_its_sha256_is_still_read(eng_multi):
    """States stored before the xxh3 checksum (format 1: sha256) restore as they were; damaged ones
    are refused the same way."""
    import hashlib

    from engine.state import MAGIC
    eng = eng_multi
    ids = _ids(eng, 30)
    _, state = eng.prefill(ids[:20], logits="none")
    blob = state.to_bytes()
    assert blob.startswith(MAGIC) and MAGIC != b"JAMBADOCS-STATE\x01"
    body = b"JAMBADOCS-STATE\x01" + blob[len(MAGIC):-16]
    old = body + hashlib.sha256(body).digest()
    logits, _ = eng.prefill(ids[20:], eng.state_from_bytes(old))
    ref, _ = eng.prefill(ids)
    torch.testing.assert_close(logits, ref[20:], atol=1e-4, rtol=0)
    bad = bytearray(old)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(StateError, match="damaged"):
        eng.state_from_bytes(bytes(bad))
    with pytest.raises(StateError, match="damaged"):                   # format 1 magic, format 2 checksum
        eng.state_from_bytes(b"JAMBADOCS-STATE\x01" + blob[len(MAGIC):])


def test_state_bytes_from_config_matches_real_state(eng_multi):
    eng = eng_multi
    cfg = eng.config
    for n in (1, 37):
        _, state = eng.prefill(_ids(eng, n), logits="none")
        assert state.nbytes == state_bytes(cfg, n, torch.float32)
        per_token = 2 * len(cfg.attention_layers) * cfg.num_key_value_heads * cfg.head_dim * 4
        assert state_bytes(cfg, n + 1, torch.float32) - state_bytes(cfg, n, torch.float32) == per_token


def test_jamba_mini_kv_at_256k_is_4_gib():
    assert len(JAMBA_MINI.attention_layers) == 4
    assert kv_bytes(JAMBA_MINI, 256 * 1024, "bfloat16") == 4 * GIB
    assert kv_bytes(ALL_ATTENTION, 256 * 1024, "bfloat16") == 32 * GIB


def test_concurrent_continuations_of_one_state(eng_multi):
    """Threads continuing the same state never write into each other's K/V rows."""
    import threading
    eng = eng_multi
    _, base = eng.prefill(_ids(eng, 20), logits="none")
    tails = [_ids(eng, 12, seed=100 + i) for i in range(4)]
    results = [None] * len(tails)
    start = threading.Barrier(len(tails))

    def work(i):
        start.wait()
        state = base
        for t in tails[i]:
            _, state = eng.decode_step(t, state)
        results[i] = state

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tails))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, tail in enumerate(tails):
        _, ref = eng.prefill(tail, base, logits="none")
        for layer, rows in ref.kv.items():
            torch.testing.assert_close(results[i].kv[layer].k, rows.k, atol=1e-5, rtol=0)
            torch.testing.assert_close(results[i].kv[layer].v, rows.v, atol=1e-5, rtol=0)


def test_a_restored_state_is_copied_once_not_again_by_the_first_decode_steps(eng_multi):
    """A state from bytes has no spare K/V rows: its continuation's prefill copies the K/V into a
    new buffer, with room for the answer, so decode steps then append in place. (A question longer
    than 16 tokens: shorter continuations grow the buffer geometrically anyway.)"""
    ids = torch.randint(0, eng_multi.config.vocab_size, (70,), generator=torch.Generator().manual_seed(9)).tolist()
    _, s = eng_multi.prefill(ids[:40], logits="none")
    restored = eng_multi.state_from_bytes(s.to_bytes())
    _, s = eng_multi.prefill(ids[40:], restored, logits="none")
    layer = next(iter(s.kv))
    assert s.kv[layer].buf is not restored.kv[layer].buf
    buf = s.kv[layer].buf
    for t in range(20):
        _, s = eng_multi.decode_step(t + 3, s)
        assert s.kv[layer].buf is buf and s.kv[layer].length == 70 + t + 1
    logits_a, _ = eng_multi.decode_step(7, s)
    logits_b, _ = eng_multi.decode_step(7, eng_multi.state_from_bytes(s.to_bytes()))
    torch.testing.assert_close(logits_a, logits_b)


def test_state_size_table_for_a_checkpoint_folder(tmp_path, capsys):
    """`python -m engine.state_size --config FOLDER`: the table for that checkpoint's own config."""
    from engine.state_size import main
    from engine.testing import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / "ck", num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=1,
                                   num_key_value_heads=1)
    main(["--config", str(folder), "--tokens", "1024", "--dtype", "float32"])
    out = capsys.readouterr().out
    cfg = JambaConfig.from_file(folder / "config.json")
    per_token = 2 * 2 * 1 * cfg.head_dim * 4                      # K and V, 2 attention layers, 1 kv head, fp32
    assert f"ck {per_token / 1024:g} KiB (2 attention layers of 6)" in out
    assert f"Transformer {3 * per_token / 1024:g} KiB" in out
    with pytest.raises(SystemExit):
        main(["--config", str(tmp_path / "missing")])
    assert "missing: no such checkpoint folder or config.json" in capsys.readouterr().err


@pytest.mark.parametrize("token", [-1, 512, 10**6])
def test_a_token_outside_the_vocabulary_is_refused_by_prefill_and_decode(tiny_engine, token):
    """Both name the id and the range (decode_step raised a bare IndexError from the embedding)."""
    _, state = tiny_engine.prefill([5, 6])
    with pytest.raises(EngineError, match=r"out of range \[0, 512\)"):
        tiny_engine.prefill([5, token], state)
    with pytest.raises(EngineError, match=rf"token id {token} out of range \[0, 512\)"):
        tiny_engine.decode_step(token, state)
