"""The llama-index LLM adapter on a tiny Jamba checkpoint: completion, chat, streaming, a pipeline."""
from __future__ import annotations

import pytest
from llama_index.core import Document, SummaryIndex
from llama_index.core.llms import ChatMessage

from engine.llama_index_llm import JambaLLM


@pytest.fixture(scope="module")
def llm(tiny_engine) -> JambaLLM:
    return JambaLLM(tiny_engine, max_new_tokens=8)


def test_metadata_comes_from_the_checkpoint(llm, tiny_engine):
    meta = llm.metadata
    assert meta.context_window == tiny_engine.max_context and meta.num_output == 8
    assert meta.is_chat_model


def test_complete_is_the_engine_greedy_continuation_and_streams_the_same(llm, tiny_engine):
    ids = tiny_engine.tokenizer("The quick brown fox")["input_ids"]
    expected = "".join(tiny_engine.generate(ids, max_new_tokens=8))
    assert llm.complete("The quick brown fox").text == expected
    parts = list(llm.stream_complete("The quick brown fox"))
    assert "".join(p.delta for p in parts) == expected and parts[-1].text == expected
    assert len(parts) > 1


def test_chat_uses_the_checkpoint_chat_template(llm, tiny_engine):
    tok = tiny_engine.tokenizer
    messages = [ChatMessage(role="system", content="Be brief."),
                ChatMessage(role="user", content="Name a prime number.")]
    text = tok.apply_chat_template([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Name a prime number."}],
                                   tokenize=False, add_generation_prompt=True)
    assert "<|bom|><|user|>" in text and text.endswith("<|assistant|>")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    expected = "".join(tiny_engine.generate(ids, max_new_tokens=8))
    assert llm.chat(messages).message.content == expected
    streamed = list(llm.stream_chat(messages))
    assert "".join(r.delta for r in streamed) == expected
    assert streamed[-1].message.content == expected and streamed[-1].message.role == "assistant"
    assert llm.chat(messages, max_tokens=3).message.content != expected   # kwargs reach the engine


def test_a_llama_index_query_engine_streams_through_it(llm, tiny_engine):
    index = SummaryIndex.from_documents([Document(text="Jamba mixes Mamba and attention layers.")])
    engine = index.as_query_engine(llm=llm, streaming=True)
    response = engine.query("What does Jamba mix?")
    pieces = list(response.response_gen)
    assert len(pieces) > 1 and "".join(pieces)
    assert response.source_nodes[0].node.get_content().startswith("Jamba mixes")


def test_a_prompt_longer_than_the_context_is_refused(tiny_engine):
    small = JambaLLM(tiny_engine)
    with pytest.raises(ValueError, match="context"):
        small.complete("word " * (tiny_engine.max_context + 10))


@pytest.fixture(scope="module")
def reasoning_llm(tmp_path_factory) -> JambaLLM:
    from engine import load_engine
    from engine.testing import REASONING_TEMPLATE, write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("reasoning"), seed=2, chat_template=REASONING_TEMPLATE)
    return JambaLLM(load_engine(folder), max_new_tokens=8)


def test_a_reasoning_models_think_block_is_not_the_chat_answer(reasoning_llm):
    """Jamba Reasoning's template opens <think>: what the model writes before closing it is its
    reasoning (a ThinkingBlock, streamed as thinking_delta), not the answer's content."""
    eng = reasoning_llm.engine
    messages = [ChatMessage(role="user", content="Name a prime number.")]
    text = eng.tokenizer.apply_chat_template([{"role": "user", "content": "Name a prime number."}],
                                             tokenize=False, add_generation_prompt=True)
    assert text.endswith("<think>\n")
    written = "".join(eng.generate(eng.tokenizer(text, add_special_tokens=False)["input_ids"],
                                   max_new_tokens=8))
    assert written.strip() and "</think>" not in written      # random weights: it never closes it
    message = reasoning_llm.chat(messages).message
    assert message.content == "" and message.blocks[0].content == written.lstrip()
    streamed = list(reasoning_llm.stream_chat(messages))
    assert "".join(r.additional_kwargs.get("thinking_delta", "") for r in streamed) == written.lstrip()
    assert all(r.delta == "" for r in streamed)


def test_the_answer_after_think_is_the_content(reasoning_llm, monkeypatch):
    """The text after </think> (a tag cut across pieces) is the answer; before it, the reasoning."""
    pieces = ["Two is even", " and prime.</th", "ink>\n\n", "It is 2", "."]
    monkeypatch.setattr(reasoning_llm.engine, "generate", lambda ids, **kw: iter(pieces))
    messages = [ChatMessage(role="user", content="Name a prime number.")]
    message = reasoning_llm.chat(messages).message
    assert message.content == "It is 2." and message.blocks[0].content == "Two is even and prime."
    streamed = list(reasoning_llm.stream_chat(messages))
    assert "".join(r.delta for r in streamed) == "It is 2."
    assert "".join(r.additional_kwargs.get("thinking_delta", "") for r in streamed) == "Two is even and prime."
    assert streamed[-1].message.content == "It is 2."
