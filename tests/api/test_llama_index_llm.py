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
