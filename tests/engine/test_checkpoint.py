"""Loading: dtypes, memory mapping, fingerprint, and one clear error per broken folder."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import CheckpointError, load_engine
from engine.testing import write_tiny_checkpoint


@pytest.fixture()
def folder(tmp_path, tiny_checkpoint):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, dst)
    return dst


def test_public_attributes(tiny_engine, tiny_checkpoint):
    eng = tiny_engine
    assert eng.max_context == 16384 and eng.config.vocab_size == 512
    assert eng.eos_token_ids == [2, eng.tokenizer.convert_tokens_to_ids("<|eom|>")]
    assert type(eng.tokenizer).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert hasattr(eng.tokenizer, "apply_chat_template")
    assert len(eng.fingerprint) == 64
    assert load_engine(tiny_checkpoint).fingerprint == eng.fingerprint


def test_fp32_weights_are_memory_mapped_not_copied(tiny_checkpoint):
    eng = load_engine(tiny_checkpoint, dtype="float32")
    maps = open("/proc/self/maps").read()
    assert str((tiny_checkpoint / "model.safetensors").resolve()) in maps
    assert eng.weights.lm_head.dtype == torch.float32


@pytest.mark.parametrize("dtype,torch_dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_half_precision_close_to_fp32(tiny_checkpoint, tiny_engine, dtype, torch_dtype):
    eng = load_engine(tiny_checkpoint, device="cpu", dtype=dtype)
    assert eng.weights.embed.dtype == torch_dtype and eng.weights.layers[0].mixer.A.dtype == torch.float32
    ids = list(range(3, 40))
    half, state = eng.prefill(ids)
    full, _ = tiny_engine.prefill(ids)
    assert half.dtype == torch.float32
    assert (half.argmax(-1) == full.argmax(-1)).float().mean() > 0.8
    assert (half - full).abs().mean() < 0.05 and (half - full).abs().max() < 1.0
    assert next(iter(state.kv.values())).k.dtype == torch_dtype
    assert next(iter(state.ssm.values())).dtype == torch.float32


def test_fingerprint_changes_with_weights_and_config(tmp_path, tiny_engine):
    other = load_engine(write_tiny_checkpoint(tmp_path / "s1", seed=1))
    assert other.fingerprint != tiny_engine.fingerprint


def test_fingerprint_of_a_large_file_sees_every_tensor(folder, tmp_path, monkeypatch):
    """Above the whole-hash limit the file is sampled; a checkpoint that differs only in one
    tensor (a fine-tuned layer, a merged LoRA) must still get its own fingerprint, or it would
    reuse the other model's cached states."""
    from engine import checkpoint

    monkeypatch.setattr(checkpoint, "_FULL_HASH_LIMIT", 0)       # sample even this small file
    monkeypatch.setattr(checkpoint, "_SAMPLE_BLOCKS", 1)         # one block: the header's start
    other = tmp_path / "tuned"
    shutil.copytree(folder, other)
    w = load_file(str(other / "model.safetensors"))
    name = sorted(k for k in w if k.endswith("self_attn.o_proj.weight"))[-1]
    w[name] = w[name] * 1.5
    save_file(w, str(other / "model.safetensors"), metadata={"format": "pt"})
    files = lambda d: [d / "model.safetensors"]  # noqa: E731
    assert checkpoint.fingerprint(other, files(other)) != checkpoint.fingerprint(folder, files(folder))


def test_fused_expert_layout_is_read(folder, tiny_engine):
    """transformers-5 style checkpoints (experts fused to 3-D tensors) give the same model."""
    w = load_file(str(folder / "model.safetensors"))
    for layer in (1, 3):
        p = f"model.layers.{layer}.feed_forward.experts."
        n = 4
        gate_up = torch.stack([torch.cat([w.pop(f"{p}{e}.gate_proj.weight"), w.pop(f"{p}{e}.up_proj.weight")])
                               for e in range(n)])
        w[p + "gate_up_proj"] = gate_up
        w[p + "down_proj"] = torch.stack([w.pop(f"{p}{e}.down_proj.weight") for e in range(n)])
    save_file(w, str(folder / "model.safetensors"))
    ids = list(range(5, 30))
    a, _ = load_engine(folder).prefill(ids)
    b, _ = tiny_engine.prefill(ids)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_tied_weights_saved_once_under_the_heads_name_are_read(tmp_path):
    """safetensors' own `save_model` stores a tied pair once, as `lm_head.weight` (no
    `model.embed_tokens.weight`); transformers ties the embedding to it, and so do we."""
    from safetensors.torch import save_model
    from transformers import JambaForCausalLM
    folder = write_tiny_checkpoint(tmp_path / "ckpt", tie_word_embeddings=True)
    model = JambaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    save_model(model, str(folder / "model.safetensors"))
    names = set(load_file(str(folder / "model.safetensors")))
    assert "lm_head.weight" in names and "model.embed_tokens.weight" not in names
    ids = list(range(3, 30))
    with torch.no_grad():
        expected = JambaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(
            torch.tensor([ids]), use_cache=False).logits[0]
    eng = load_engine(folder, dtype="float32")
    logits, state = eng.prefill(ids[:-1])
    step, _ = eng.decode_step(ids[-1], state)
    torch.testing.assert_close(torch.cat([logits, step]), expected, atol=1e-4, rtol=0)


def _error(folder) -> CheckpointError:
    with pytest.raises(CheckpointError) as e:
        load_engine(folder)
    return e.value


def test_missing_config(folder):
    (folder / "config.json").unlink()
    err = _error(folder)
    assert err.path.endswith("config.json") and "missing file" in str(err)


def test_wrong_model_type(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "llama"
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _error(folder)
    assert err.path.endswith("config.json") and "'llama'" in str(err) and "jamba" in str(err)


# config.json values transformers' JambaConfig refuses (its strict types) or cannot build a model with
# (pad id outside the embedding, zero sizes, no head), a context no prompt fits in, and an activation
# the engine does not compute (only SiLU): each named.
INVALID = [
    ("num_key_value_heads", None), ("hidden_size", 64.0), ("hidden_size", 0), ("num_attention_heads", 0),
    ("mamba_dt_rank", "big"), ("mamba_conv_bias", "false"), ("mamba_d_conv", 0), ("intermediate_size", -1),
    ("pad_token_id", 512), ("max_position_embeddings", 0), ("rms_norm_eps", -1e-6), ("head_dim", 0),
    ("num_hidden_layers", True), ("hidden_act", "gelu"),
]


@pytest.mark.parametrize("field, value", INVALID, ids=[f"{f}={v!r}" for f, v in INVALID])
def test_invalid_config_value_is_refused_naming_config_json_and_the_field(folder, field, value):
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _error(folder)
    assert err.path.endswith("config.json") and field in err.problem, str(err)


# Fields our config does not use, typed as transformers' strict JambaConfig refuses them: transformers
# reads config.json to load the tokenizer, and the error must name config.json, before any weight is read.
STRICT = [("use_cache", "yes"), ("rms_norm_eps", 1), ("bos_token_id", "1"), ("eos_token_id", [2, "x"])]


@pytest.mark.parametrize("field, value", STRICT, ids=[f"{f}={v!r}" for f, v in STRICT])
def test_a_field_transformers_refuses_is_named_in_config_json_before_the_weights(folder, field, value):
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    stages = []
    with pytest.raises(CheckpointError) as e:
        load_engine(folder, progress=lambda stage, done, total: stages.append(stage))
    assert e.value.path.endswith("config.json") and field in e.value.problem and not stages, str(e.value)


# config.json values transformers' JambaConfig accepts and builds the same model with: loaded, not refused.
# A checkpoint written with `layout`, then `fields` set in its config.json.
ACCEPTED = [({}, {"pad_token_id": -1}),          # -1: the embedding's last row, as torch's padding_idx counts
            ({}, {"hidden_act": "swish"}),       # another name of SiLU (transformers' ACT2FN)
            ({"expert_layer_offset": -1}, {"num_experts_per_tok": 6})]    # top-6 of 4 experts, but no MoE layer


@pytest.mark.parametrize("layout, fields", ACCEPTED, ids=["pad=-1", "swish", "top-k-without-moe-layers"])
def test_config_value_transformers_accepts_loads_and_matches_it(tmp_path, layout, fields):
    from transformers import JambaForCausalLM
    folder = write_tiny_checkpoint(tmp_path / "ckpt", **layout)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(fields)
    (folder / "config.json").write_text(json.dumps(cfg))
    ids = list(range(3, 30))
    ref = JambaForCausalLM.from_pretrained(folder, dtype=torch.float32, experts_implementation="eager").eval()
    with torch.no_grad():
        expected = ref(torch.tensor([ids]), use_cache=False).logits[0]
    torch.testing.assert_close(load_engine(folder).prefill(ids)[0], expected, atol=1e-4, rtol=0)


def test_missing_weights_file(folder):
    (folder / "model.safetensors").unlink()
    assert "missing file" in str(_error(folder))


def test_pickled_weights_refused(folder):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    assert "pickled" in str(_error(folder))


def test_missing_tensor(folder):
    w = load_file(str(folder / "model.safetensors"))
    del w["model.layers.0.mamba.A_log"]
    save_file(w, str(folder / "model.safetensors"))
    err = _error(folder)
    assert "missing tensor 'model.layers.0.mamba.A_log'" in str(err)


def test_shape_mismatch_names_file_and_tensor(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _error(folder)
    assert err.path.endswith("model.safetensors") and "shape" in str(err) and "feed_forward" in str(err)


def test_corrupt_safetensors(folder):
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    err = _error(folder)
    assert err.path.endswith("model.safetensors") and "not a valid safetensors" in str(err)


def test_missing_shard(tmp_path):
    path = write_tiny_checkpoint(tmp_path, shards=2)
    (path / "model-00002-of-00002.safetensors").unlink()
    err = _error(path)
    assert err.path.endswith("model-00002-of-00002.safetensors") and "missing file" in str(err)


def test_missing_tokenizer(folder):
    (folder / "tokenizer.json").unlink()
    assert "tokenizer" in str(_error(folder))


@pytest.mark.parametrize("generation, expected", [
    ({}, (0.0, 1.0)),                                                        # no do_sample: greedy
    ({"do_sample": False, "temperature": 0.7}, (0.0, 1.0)),
    ({"do_sample": True, "temperature": 0.6, "top_p": 0.95}, (0.6, 0.95)),
    ({"do_sample": True}, (1.0, 1.0)),                                       # transformers' defaults
    ({"do_sample": True, "temperature": None, "top_p": 0.9}, (1.0, 0.9)),
])
def test_sampling_recommendation_is_read_from_generation_config(folder, generation, expected):
    from engine.checkpoint import read_sampling

    path = folder / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **generation}))
    assert read_sampling(folder) == expected


def test_unusable_sampling_values_are_logged_and_decode_greedily(folder, caplog):
    """An odd recommendation must not keep the model from loading; broken JSON still names the file."""
    from engine.checkpoint import read_sampling

    path = folder / "generation_config.json"
    for bad in ({"do_sample": True, "top_p": 1.5}, {"do_sample": True, "temperature": "warm"}):
        path.write_text(json.dumps(bad))
        with caplog.at_level("WARNING", logger="engine.checkpoint"):
            assert read_sampling(folder) == (0.0, 1.0)
        assert "generation_config.json" in caplog.text and "greedily" in caplog.text
        caplog.clear()
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="generation_config.json.*not valid JSON"):
        read_sampling(folder)
    path.unlink()
    assert read_sampling(folder) == (0.0, 1.0)


def test_an_answer_stops_at_the_end_of_its_turn_whatever_generation_config_names(tmp_path, monkeypatch):
    """A checkpoint whose generation_config names only <|endoftext|> (a Jamba2 Mini mirror: eos 2
    there, 519 in config.json) while its chat template ends an assistant turn with another special
    token: the answer ran past its turn into a made-up next one, up to max_new_tokens."""
    import engine.generate
    from engine.checkpoint import turn_end_id
    from engine.testing import REASONING_TEMPLATE

    ckpt = write_tiny_checkpoint(tmp_path / "c", seed=0, generation={"eos_token_id": 2})
    eng = load_engine(ckpt, device="cpu")
    eom = eng.tokenizer.convert_tokens_to_ids("<|eom|>")
    assert eng.eos_token_ids == [2, eom]
    script = iter([40, 41, eom, 42, 43])                       # the model writes its turn end third
    monkeypatch.setattr(engine.generate, "sample", lambda *a, **k: next(script))
    gen = eng.generate(eng.tokenizer.encode("Hello"), max_new_tokens=5)
    list(gen)
    assert gen.finish_reason == "eos" and gen.token_ids == [40, 41]
    # a ChatML template whose <|im_end|> is a special token of the tokenizer
    tok = eng.tokenizer
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = REASONING_TEMPLATE
    assert turn_end_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")
    tok.chat_template = None                                   # no template: nothing to add
    assert turn_end_id(tok) is None


def _fp8(folder):
    """The checkpoint's projection matrices as float8 plus a per-tensor `weight_scale`, as an fp8
    release of a model (quant_method "fp8") stores them: same names and shapes, other values."""
    w = load_file(str(folder / "model.safetensors"))
    for name in [n for n in w if n.endswith("proj.weight") and w[n].dim() == 2]:
        scale = w[name].abs().amax() / 448
        w[name] = (w[name] / scale).to(torch.float8_e4m3fn)
        w[name.removesuffix("weight") + "weight_scale"] = scale.reshape(1).float()
    save_file(w, str(folder / "model.safetensors"))


@pytest.mark.parametrize("eos", ["<|eom|>", 2.5, True, {"id": 2}, [2, "3"]])
def test_an_eos_id_that_is_no_token_id_is_named_in_generation_config(folder, eos):
    """A token's text, a float (2.5 was read as id 2), a boolean (true as id 1): refused naming the file
    and the field, before the weights are read; never a bare ValueError, never a guessed id."""
    gen = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": eos}))
    stages = []
    with pytest.raises(CheckpointError) as e:
        load_engine(folder, progress=lambda stage, done, total: stages.append(stage))
    assert e.value.path.endswith("generation_config.json") and "eos_token_id" in e.value.problem and not stages


def test_a_quantized_checkpoint_is_refused_not_read_without_its_scales(folder):
    """fp8 weights have the names and shapes the config calls for: they loaded, cast to fp32 without
    their scales, and the model answered garbage. config.json's quantization_config says so first;
    without it, the weights' own dtype does."""
    _fp8(folder)
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}}))
    err = _error(folder)
    assert err.path.endswith("config.json") and "quantized" in err.problem and "fp8" in err.problem
    path.write_text(json.dumps(cfg))
    err = _error(folder)
    assert err.path.endswith("model.safetensors") and "float8_e4m3fn" in err.problem and "proj.weight" in err.problem


def _lfs_pointer(path):
    """Replace `path` by the pointer a `git clone` without git-lfs leaves in its place."""
    import hashlib
    data = path.read_bytes()
    path.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
                    f"size {len(data)}\n")


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_a_git_lfs_pointer_is_named_as_such(folder, name):
    """A checkpoint cloned from the hub without git-lfs holds ~130-byte pointers in place of its
    weights (and of a large tokenizer.json): the error said "header too large" / "expected value"."""
    _lfs_pointer(folder / name)
    err = _error(folder)
    assert err.path.endswith(name) and "Git LFS pointer" in err.problem and "git lfs pull" in err.problem


def test_a_git_lfs_pointer_shard_is_named(tmp_path):
    path = write_tiny_checkpoint(tmp_path, shards=2)
    _lfs_pointer(path / "model-00002-of-00002.safetensors")
    err = _error(path)
    assert err.path.endswith("model-00002-of-00002.safetensors") and "Git LFS pointer" in err.problem


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_weight_file_is_named_as_such(folder, keep):
    """An interrupted download leaves a file shorter than its header says: the error read "incomplete
    metadata, file not fully covered"."""
    import os
    path = folder / "model.safetensors"
    size = path.stat().st_size
    os.truncate(path, int(size * keep))
    err = _error(folder)
    assert err.path.endswith("model.safetensors") and "truncated" in err.problem and f"{size:,} bytes" in err.problem


def test_a_classifier_checkpoint_is_refused_naming_its_architecture(folder):
    """A JambaForSequenceClassification checkpoint (a reward model: `score.weight`, no head of its
    own) is model_type jamba too; with tied embeddings it loaded the embedding as its head and
    answered garbage."""
    path, weights = folder / "config.json", folder / "model.safetensors"
    cfg, original = json.loads(path.read_text()), weights.read_bytes()
    w = load_file(str(weights))
    w["score.weight"] = w.pop("lm_head.weight")[:1].clone()
    save_file(w, str(weights))
    path.write_text(json.dumps({**cfg, "architectures": ["JambaForSequenceClassification"], "num_labels": 1,
                                "tie_word_embeddings": True}))
    err = _error(folder)
    assert err.path.endswith("config.json") and "JambaForSequenceClassification" in err.problem
    path.write_text(json.dumps({**cfg, "architectures": ["JambaForCausalLM"]}))      # the published ones
    weights.write_bytes(original)
    load_engine(folder)


@pytest.mark.parametrize("quantize, stage", [(None, "weights"), ("int8", "int8")])
def test_a_load_stops_at_its_next_tensor_once_cancelled(tiny_checkpoint, quantize, stage):
    """A process stopping while a checkpoint loads sets `cancel`: the load ends before its next
    tensor (read or made int8) instead of running on for the minutes a large checkpoint takes."""
    import threading

    from engine import Cancelled

    cancel, seen = threading.Event(), []

    def progress(at: str, done: int, total: int) -> None:
        seen.append((at, done))
        if at == stage and done == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        load_engine(tiny_checkpoint, quantize=quantize, progress=progress, cancel=cancel)
    assert seen[-1] == (stage, 1)
