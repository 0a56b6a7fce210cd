"""The tiny-checkpoint writer produces the real Hugging Face Jamba layout."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from engine.testing import write_tiny_checkpoint

TEXTS = ["Hello, world: page 12.", "مرحبا بالعالم، هذه وثيقة.", "שלום עולם, זה מסמך.", "中文 😀 Größe €5"]


def test_layout_and_hub_names(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["model_type"] == "jamba" and cfg["architectures"] == ["JambaForCausalLM"]
    gen = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert gen["eos_token_id"][0] == cfg["eos_token_id"]
    with safe_open(str(tiny_checkpoint / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        assert f.get_slice("model.layers.1.feed_forward.experts.3.down_proj.weight").get_shape() == [64, 128]
    assert "model.layers.1.feed_forward.router.weight" in names
    assert "model.layers.2.self_attn.k_proj.weight" in names            # attention at offset 2
    for part in ["in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                 "dt_proj.bias", "A_log", "D", "out_proj.weight", "dt_layernorm.weight",
                 "b_layernorm.weight", "c_layernorm.weight"]:
        assert f"model.layers.0.mamba.{part}" in names
    assert "model.layers.0.feed_forward.gate_proj.weight" in names       # dense MLP on even layers
    assert not any("gate_up_proj" in n for n in names)                   # hub layout, not fused


def test_transformers_loads_every_tensor(tmp_path):
    from transformers import JambaForCausalLM
    path = write_tiny_checkpoint(tmp_path, shards=3)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 3
    model, info = JambaForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trips_any_script(tiny_checkpoint, text):
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id == 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<|pad|>", "<|endoftext|>", "<|unk|>")


def test_chat_template_takes_documents(tiny_checkpoint):
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    docs = [{"title": "Report", "text": "Revenue rose."}, {"title": "Memo", "text": "نص عربي"}]
    text = tok.apply_chat_template([{"role": "user", "content": "What rose?"}], documents=docs,
                                   add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|startoftext|><|bom|><|system|> <documents>")
    assert "## Document ID: 1\nTitle: Memo\nText: نص عربي" in text
    assert text.endswith("<|bom|><|user|> What rose?<|eom|><|bom|><|assistant|>")
    plain = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert plain == "<|startoftext|><|bom|><|user|> Hi<|eom|><|bom|><|assistant|>"


def test_seed_changes_weights(tmp_path):
    a = write_tiny_checkpoint(tmp_path / "a", seed=0)
    b = write_tiny_checkpoint(tmp_path / "b", seed=1)
    with safe_open(str(a / "model.safetensors"), "pt") as fa, safe_open(str(b / "model.safetensors"), "pt") as fb:
        assert not torch.equal(fa.get_tensor("lm_head.weight"), fb.get_tensor("lm_head.weight"))


def test_a_tiny_reasoning_checkpoint_has_jamba_reasonings_turn_tokens(tmp_path):
    """Jamba Reasoning 3B's <|im_start|> / <|im_end|> are special tokens and its answers end at
    <|im_end|> (eos [2, 519]). The tiny checkpoint with its template spelt them as BPE text, so the
    reasoning tests' answers could only stop at <|endoftext|>."""
    from engine import load_engine
    from engine.checkpoint import turn_end_id
    from engine.testing import REASONING_TEMPLATE

    eng = load_engine(write_tiny_checkpoint(tmp_path, chat_template=REASONING_TEMPLATE), device="cpu")
    tok = eng.tokenizer
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert tok.encode("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False)[0] == start
    assert end in tok.all_special_ids and turn_end_id(tok) == end
    assert eng.eos_token_ids == [tok.convert_tokens_to_ids("<|endoftext|>"), end]
