"""Tiny random Jamba checkpoints in the exact Hugging Face layout, for tests and benches.

`write_tiny_checkpoint(folder, seed=0, shards=1, **overrides)` writes

    config.json                     model_type "jamba", every JambaConfig field
    generation_config.json          bos / eos (<|endoftext|> and <|eom|>) / pad ids
    model.safetensors               or model-0000i-of-0000n.safetensors + model.safetensors.index.json
    tokenizer.json                  byte-level BPE trained at write time on built-in multilingual text
    tokenizer_config.json           special tokens + a Jamba-1.5-style chat_template taking `documents`
                                    (or `chat_template=REASONING_TEMPLATE`: Jamba Reasoning's layout,
                                    with its ChatML special tokens and <|im_end|> as an eos id)

Tensor names are the hub names (per-expert `feed_forward.experts.{e}.{gate,up,down}_proj.weight`,
`feed_forward.router.weight`, `mamba.{in_proj,conv1d,x_proj,dt_proj,out_proj}`, ...): transformers 5
fuses the experts itself at load time. Weights are scaled so activations and logits are O(1): a
wrong operation changes the logits visibly, which a 0.02-std init would hide.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# Jamba's own special tokens and ids (pad 0, bos 1, eos 2, unk 3), then the chat-format tokens of Jamba 1.5.
SPECIAL_TOKENS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>"]
CHAT_TOKENS = ["<|bom|>", "<|eom|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>",
               "<documents>", "</documents>"]
# ChatML turn markers (Jamba2, Jamba Reasoning), special tokens of a checkpoint whose template uses them.
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]

DEFAULT_CONFIG: dict[str, Any] = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    attn_layer_period=4,
    attn_layer_offset=2,
    expert_layer_period=2,
    expert_layer_offset=1,
    num_experts=4,
    num_experts_per_tok=2,
    mamba_d_state=8,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_dt_rank="auto",
    mamba_conv_bias=True,
    mamba_proj_bias=False,
    max_position_embeddings=16384,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)

# Jamba-1.5-compatible chat template: `<|bom|><|role|> content<|eom|>` turns; documents go into the
# system turn as "## Document ID: i / Title: / Text:" blocks inside <documents>...</documents>.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- if system_message or documents -%}"
    "{{- '<|bom|><|system|> ' + system_message -}}"
    "{%- if documents -%}"
    "{%- if system_message -%}{{- '\\n\\n' -}}{%- endif -%}"
    "{{- '<documents>\\n# Documents\\n\\nYou can use the following documents for reference:\\n\\n' -}}"
    "{%- for doc in documents -%}"
    "{{- '## Document ID: ' ~ (doc['id'] if doc['id'] is defined else loop.index0) ~ '\\n' -}}"
    "{%- if doc['title'] is defined and doc['title'] -%}{{- 'Title: ' ~ doc['title'] ~ '\\n' -}}{%- endif -%}"
    "{{- 'Text: ' ~ doc['text'] ~ '\\n\\n' -}}"
    "{%- endfor -%}"
    "{{- '</documents>' -}}"
    "{%- endif -%}"
    "{{- '<|eom|>' -}}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{{- '<|bom|><|' + message['role'] + '|> ' + message['content'] + '<|eom|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|bom|><|assistant|>' -}}{%- endif -%}"
)

# Training text for the tiny tokenizer: several scripts so merges exist for each; any UTF-8 still
# round-trips through the byte-level alphabet.
_TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. Documents, pages and citations: see page 12 of the report.
Question: what does the contract say about termination? Answer: the agreement ends after 30 days' notice.
Le renard brun saute par-dessus le chien paresseux. La société a été fondée en 1993 à Paris.
Der schnelle braune Fuchs springt über den faulen Hund. Die Größe der Datei beträgt 12 MB.
El veloz zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca? Mañana.
O rápido raposa marrom pula sobre o cão preguiçoso. A informação está na página três.
Il veloce volpe marrone salta sopra il cane pigro. Het snelle bruine vos springt over de luie hond.
الثعلب البني السريع يقفز فوق الكلب الكسول. هذه الوثيقة تحتوي على معلومات مهمة عن الشركة.
השועל החום המהיר קופץ מעל הכלב העצלן. המסמך הזה מכיל מידע חשוב על החברה.
Быстрая коричневая лиса прыгает через ленивую собаку. Документ содержит важную информацию.
敏捷的棕色狐狸跳过了懒狗。这份文件包含重要信息。 素早い茶色の狐がのろまな犬を飛び越える。
तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.
Numbers 0123456789, symbols ()[]{}<>+-*/=%$€£¥ and emoji 😀📄✅ should all survive a round trip.
"""


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """The full config.json dict (all JambaConfig fields) for the default tiny model plus overrides."""
    cfg = dict(DEFAULT_CONFIG)
    unknown = set(overrides) - set(cfg) - {
        "initializer_range", "hidden_act", "use_cache", "output_router_logits", "router_aux_loss_coef",
        "attention_dropout", "use_mamba_kernels", "use_mambapy", "head_dim",
    }
    if unknown:
        raise TypeError(f"unknown Jamba config fields: {sorted(unknown)}")
    cfg.update(overrides)
    if cfg["mamba_dt_rank"] == "auto":
        cfg["mamba_dt_rank"] = math.ceil(cfg["hidden_size"] / 16)
    n_special = len(SPECIAL_TOKENS) + len(CHAT_TOKENS) + len(CHATML_TOKENS)
    if cfg["vocab_size"] < 256 + n_special:
        raise ValueError(f"vocab_size must be >= {256 + n_special} (bytes + special tokens)")
    full = {
        "architectures": ["JambaForCausalLM"],
        "model_type": "jamba",
        "torch_dtype": "float32",
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "use_cache": True,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "attention_dropout": 0.0,
        "use_mamba_kernels": True,
        "use_mambapy": False,
    }
    full.update(cfg)
    return full


def _normal(gen: torch.Generator, *shape: int, std: float) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * std


def random_weights(cfg: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 weights with hub names for the config dict `cfg`."""
    g = torch.Generator().manual_seed(seed)
    hidden, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    n_heads, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or hidden // n_heads
    d_inner, d_state, d_conv = cfg["mamba_expand"] * hidden, cfg["mamba_d_state"], cfg["mamba_d_conv"]
    dt_rank = cfg["mamba_dt_rank"]

    def linear(out_f: int, in_f: int) -> torch.Tensor:
        return _normal(g, out_f, in_f, std=1.0 / math.sqrt(in_f))

    def norm(n: int) -> torch.Tensor:
        return 1.0 + _normal(g, n, std=0.1)

    w: dict[str, torch.Tensor] = {"model.embed_tokens.weight": _normal(g, vocab, hidden, std=1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(hidden)
        w[p + "pre_ff_layernorm.weight"] = norm(hidden)
        if i % cfg["attn_layer_period"] == cfg["attn_layer_offset"]:
            w[p + "self_attn.q_proj.weight"] = linear(n_heads * head_dim, hidden)
            w[p + "self_attn.k_proj.weight"] = linear(n_kv * head_dim, hidden)
            w[p + "self_attn.v_proj.weight"] = linear(n_kv * head_dim, hidden)
            w[p + "self_attn.o_proj.weight"] = linear(hidden, n_heads * head_dim)
        else:
            m = p + "mamba."
            w[m + "in_proj.weight"] = linear(2 * d_inner, hidden)
            if cfg["mamba_proj_bias"]:
                w[m + "in_proj.bias"] = _normal(g, 2 * d_inner, std=0.1)
            w[m + "conv1d.weight"] = _normal(g, d_inner, 1, d_conv, std=1.0 / math.sqrt(d_conv))
            if cfg["mamba_conv_bias"]:
                w[m + "conv1d.bias"] = _normal(g, d_inner, std=0.1)
            w[m + "x_proj.weight"] = linear(dt_rank + 2 * d_state, d_inner)
            w[m + "dt_proj.weight"] = linear(d_inner, dt_rank) * 0.5
            # Mamba's init: dt in [1e-3, 1e-1], bias = softplus^-1(dt)
            dt = torch.exp(torch.rand(d_inner, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            w[m + "dt_proj.bias"] = dt + torch.log(-torch.expm1(-dt))
            a = torch.arange(1, d_state + 1, dtype=torch.float32).expand(d_inner, d_state)
            w[m + "A_log"] = torch.log(a) + _normal(g, d_inner, d_state, std=0.1)
            w[m + "D"] = 1.0 + _normal(g, d_inner, std=0.1)
            w[m + "out_proj.weight"] = linear(hidden, d_inner)
            if cfg["mamba_proj_bias"]:
                w[m + "out_proj.bias"] = _normal(g, hidden, std=0.1)
            w[m + "dt_layernorm.weight"] = norm(dt_rank)
            w[m + "b_layernorm.weight"] = norm(d_state)
            w[m + "c_layernorm.weight"] = norm(d_state)
        f = p + "feed_forward."
        if cfg["num_experts"] > 1 and i % cfg["expert_layer_period"] == cfg["expert_layer_offset"]:
            w[f + "router.weight"] = linear(cfg["num_experts"], hidden)
            for e in range(cfg["num_experts"]):
                w[f + f"experts.{e}.gate_proj.weight"] = linear(inter, hidden)
                w[f + f"experts.{e}.up_proj.weight"] = linear(inter, hidden)
                w[f + f"experts.{e}.down_proj.weight"] = linear(hidden, inter)
        else:
            w[f + "gate_proj.weight"] = linear(inter, hidden)
            w[f + "up_proj.weight"] = linear(inter, hidden)
            w[f + "down_proj.weight"] = linear(hidden, inter)
    w["model.final_layernorm.weight"] = norm(hidden)
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = linear(vocab, hidden)
    return w


def _write_weights(folder: Path, weights: dict[str, torch.Tensor], shards: int) -> None:
    names = list(weights)
    if shards <= 1:
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    per = math.ceil(len(names) / shards)
    weight_map: dict[str, str] = {}
    total = 0
    for s in range(shards):
        part = names[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: weights[n].contiguous() for n in part}, str(folder / fname), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = fname
            total += weights[n].numel() * weights[n].element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def build_tokenizer(vocab_size: int, chat_tokens: list[str] = CHAT_TOKENS):
    """Byte-level BPE (`tokenizers`) trained on the built-in multilingual text, with Jamba's special
    tokens and `chat_tokens`; adds <|startoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        special_tokens=SPECIAL_TOKENS + chat_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([line for line in _TRAINING_TEXT.splitlines() if line] * 2, trainer=trainer)
    bos = SPECIAL_TOKENS[1]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


# The layout of Jamba Reasoning 3B's template, written for this test: ChatML turns, a thinking
# instruction before the last user message, earlier answers without their reasoning, and a
# generation prompt that opens a <think> block.
REASONING_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' + m['content'].split('</think>')[-1].lstrip('\\n') + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + ('Think first, inside <think> </think>.\\n' if loop.last else '')"
    " + m['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}{%- endif -%}"
)


def _write_tokenizer(folder: Path, vocab_size: int, max_len: int,
                     chat_template: str = CHAT_TEMPLATE) -> dict[str, int]:
    chat_tokens = CHAT_TOKENS + [t for t in CHATML_TOKENS if t in chat_template]
    tok = build_tokenizer(vocab_size, chat_tokens)
    tok.save(str(folder / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS + chat_tokens}
    added = {
        str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
        for t in SPECIAL_TOKENS + chat_tokens
    }
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "pad_token": "<|pad|>", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|unk|>",
        "additional_special_tokens": chat_tokens,
        "add_bos_token": True, "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "chat_template": chat_template,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False))
    return ids


def write_tiny_checkpoint(folder: str | Path, seed: int = 0, shards: int = 1, chat_template: str = CHAT_TEMPLATE,
                          generation: dict[str, Any] | None = None,
                          **overrides: Any) -> Path:
    """Write a random tiny Jamba checkpoint (HF layout, tokenizer included) into `folder`; return it.
    `chat_template`: the tokenizer's (default: Jamba 1.5's layout; REASONING_TEMPLATE: Jamba Reasoning's,
    whose <|im_start|> / <|im_end|> are then special tokens and <|im_end|> an eos id, as there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(**overrides)
    ids = _write_tokenizer(folder, cfg["vocab_size"], cfg["max_position_embeddings"], chat_template)
    cfg["pad_token_id"], cfg["bos_token_id"], cfg["eos_token_id"] = (
        ids["<|pad|>"], ids["<|startoftext|>"], ids["<|endoftext|>"])
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    turn_end = ids.get("<|im_end|>", ids["<|eom|>"])      # what the template ends a turn with
    gen_cfg = {"bos_token_id": ids["<|startoftext|>"], "pad_token_id": ids["<|pad|>"],
               "eos_token_id": [ids["<|endoftext|>"], turn_end], **(generation or {})}
    (folder / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2))
    _write_weights(folder, random_weights(cfg, seed), shards)
    return folder


def tiny_checkpoint_dir(tmp_path_factory, name: str = "tiny-jamba", **kw: Any) -> Path:
    """For pytest session fixtures: `tiny_checkpoint_dir(tmp_path_factory, seed=0, shards=1, **overrides)`."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp(name), **kw)


# The benches' checkpoint (issue 2, item 7): hidden 256, intermediate 1024, 8 layers with 1 attention
# layer, 4 experts top-2, vocab 4096. bench/engine.py, bench/quant.py and bench/cache.py share it.
BENCH_CONFIG = dict(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                    num_attention_heads=8, num_key_value_heads=2, attn_layer_period=8, attn_layer_offset=4,
                    expert_layer_period=2, expert_layer_offset=1, num_experts=4, num_experts_per_tok=2,
                    mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, max_position_embeddings=65536)
