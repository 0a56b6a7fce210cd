"""Sentence splitting in the scripts whose sentences end otherwise than English ones."""
from __future__ import annotations

import pytest

from app.textutil import sentence_spans


@pytest.mark.parametrize("text, sentences", [
    ("東京は日本の首都です。人口は約千四百万人です!本当ですか?「はい」と彼は言った。",
     ["東京は日本の首都です。", "人口は約千四百万人です!", "本当ですか?「はい」と彼は言った。"]),
    ("北京是中国的首都。长城很长！", ["北京是中国的首都。", "长城很长！"]),
    ("式（１）を用いる．次に解く．", ["式（１）を用いる．", "次に解く．"]),
    ("यह पहला वाक्य है। यह दूसरा वाक्य है।", ["यह पहला वाक्य है।", "यह दूसरा वाक्य है।"]),
    ("یہ پہلا جملہ ہے۔ یہ دوسرا ہے۔", ["یہ پہلا جملہ ہے۔", "یہ دوسرا ہے۔"]),
    ("Version 1.2 is out. See 3.4 next.", ["Version 1.2 is out.", "See 3.4 next."]),
])
def test_sentences_end_where_their_script_ends_them(text, sentences):
    """No space follows a Chinese or Japanese 。, and Hindi and Urdu end with । and ۔: each text was one sentence."""
    assert [text[s.start:s.end] for s in sentence_spans(text)] == sentences
