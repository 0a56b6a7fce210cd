"""Asking with the extractive engine: streamed, cited, verified, saved; follow-ups use the chat."""
from __future__ import annotations

import re

import pytest

from app.answerers.extractive import LABEL
from app.errors import InvalidInput, NotFound


@pytest.fixture
def ws(svc, corpus):
    w = svc.workspaces.create("stats")
    for name in ("debian-history-fr.pdf", "hsaur-inference.pdf", "r-intro.pdf"):
        svc.documents.add(w.id, corpus / name)
    return w


def test_answer_streams_quotes_and_verified_citations(svc, ws):
    events = list(svc.qa.ask(ws.id, "How do I run a chi-squared test on a contingency table?"))
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and kinds.count("token") > 5
    msg = events[-1].answer
    assert "".join(e.text for e in events if e.kind == "token") == msg.text
    assert msg.text.startswith(LABEL) and msg.engine == "extractive"
    assert 1 <= len(msg.citations) <= 3 and all(c.verified for c in msg.citations)
    assert {c.filename for c in msg.citations} == {"hsaur-inference.pdf"}       # the statistics chapter
    for c in msg.citations:
        page = svc.documents.page(c.doc_id, c.page)
        assert page.text[c.start:c.end] == c.passage
        assert "chi" in c.passage.lower()
    t = msg.timings
    assert set(t) >= {"cached_tokens", "prefilled_tokens", "ttft_s", "tokens_per_s", "total_s", "omitted"}
    saved = svc.chats.messages(msg.chat_id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].citations == msg.citations and saved[1].text == msg.text


def test_french_question_finds_the_french_page(svc, ws):
    msg = svc.qa.answer(ws.id, "Qui a fondé Debian en août 1993 ?")
    top = msg.citations[0]
    assert top.filename == "debian-history-fr.pdf" and top.verified
    assert "Murdock" in top.passage


def test_follow_up_uses_history_and_chats_are_kept_apart(svc, ws):
    first = svc.qa.answer(ws.id, "Which leaders did the Debian project have? Ian Murdock Bruce Perens")
    follow = svc.qa.answer(ws.id, "and after?", chat_id=first.chat_id)  # too terse alone
    assert follow.chat_id == first.chat_id and follow.citations
    assert follow.citations[0].filename == "debian-history-fr.pdf"
    assert [m.role for m in svc.chats.messages(first.chat_id)] == ["user", "assistant"] * 2
    other = svc.workspaces.create("other")
    with pytest.raises(NotFound):
        svc.qa.ask(other.id, "q", chat_id=first.chat_id)
    chats = svc.chats.list(ws.id)
    assert [c.id for c in chats] == [first.chat_id] and chats[0].messages == 4
    assert chats[0].title.startswith("Which leaders")


def test_bad_asks_fail_before_streaming(svc, ws):
    empty = svc.workspaces.create("empty")
    with pytest.raises(InvalidInput, match="no documents"):
        svc.qa.ask(empty.id, "anything?")
    with pytest.raises(InvalidInput, match="empty"):
        svc.qa.ask(ws.id, "   ")
    with pytest.raises(NotFound):
        svc.qa.ask(12345, "q")
    assert svc.chats.list(empty.id) == []


def test_control_characters_leave_the_question(svc, ws):
    """Pasted or scripted control characters (NUL, BEL, ESC of a colour code) are not kept: not in
    the saved question, and not in the chat title a terminal prints; line breaks are."""
    events = list(svc.qa.ask(ws.id, "How do I run a\x00 chi-squared\x07 test\x1b[31m on a\ncontingency table?"))
    chat = svc.chats.get(events[-1].chat_id)
    asked = svc.chats.messages(chat.id)[0]
    assert asked.text == "How do I run a chi-squared test[31m on a\ncontingency table?"
    assert chat.title == "How do I run a chi-squared test[31m on a contingency table?"
    assert {c.filename for c in events[-1].answer.citations} == {"hsaur-inference.pdf"}
    with pytest.raises(InvalidInput, match="empty"):
        svc.qa.ask(ws.id, "\x00\x1b \x7f")


def test_removed_document_keeps_old_citations_readable(svc, ws):
    msg = svc.qa.answer(ws.id, "Qui a fondé Debian en août 1993 ?")
    doc_id = msg.citations[0].doc_id
    svc.documents.remove(ws.id, doc_id)
    old = svc.chats.messages(msg.chat_id)[1].citations[0]
    assert old.doc_id is None and old.filename == "debian-history-fr.pdf" and old.verified
    assert [d.index for d in svc.documents.list(ws.id)] == [1, 2]


def test_engine_info_and_budget(svc, ws):
    info = svc.engine_info()
    assert info["engine"] == "extractive" and info["max_context"] is None
    b = svc.budget(ws.id)
    docs = svc.documents.list(ws.id)
    assert b.documents == 3 and b.fits and b.max is None
    assert all(d.tokens and d.tokens > 100 for d in docs) and b.used == sum(d.tokens for d in docs)


def test_deleting_a_workspace_removes_its_chats_and_files(svc, ws):
    import sqlite3
    svc.qa.answer(ws.id, "Qui a fondé Debian en août 1993 ?")
    keep = svc.workspaces.create("keep")
    svc.budget(ws.id)                                  # token counts exist too
    svc.workspaces.delete(ws.id)
    con = sqlite3.connect(svc.settings.db_path)
    for table in ("documents", "pages", "token_counts", "chats", "messages", "citations"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    con.close()
    assert list(svc.settings.files_dir.iterdir()) == []
    assert [w.id for w in svc.workspaces.list()] == [keep.id]


def _pages_doc(texts: list[str]):
    from ingest.model import Document, Page
    return Document(title="notes", filename="notes.txt", kind="txt", unit="page",
                    pages=[Page(i, None, t) for i, t in enumerate(texts, start=1)],
                    content_hash=str(hash(tuple(texts))), text_hash=str(hash(tuple(texts))))


def _cited_pages(doc, question: str) -> list[str]:
    import re

    from app.answerers.base import AnswerRequest
    from app.answerers.extractive import ExtractiveAnswerer
    done = [e for e in ExtractiveAnswerer().answer(AnswerRequest([doc], question)) if e.kind == "done"]
    return re.findall(r"\[doc 1, p\. (\w+)\]", done[0].text)


@pytest.mark.parametrize("page, question", [
    ("Send your résumé to the hiring committee before Friday.", "resume?"),
    ("Send your resume to the hiring committee before Friday.", "résumé?"),
    ("The conference takes place in Istanbul next spring.", "İSTANBUL"),               # Turkish dotted I
    ("Die Gesellschaft wurde 1829 gegründet.", "gegrundet"),
    ("عاصمة مصر هي القاهرة.", "مَا هِيَ عَاصِمَةُ مِصْرَ"),                            # vocalised Arabic
    ("בירת ישראל היא ירושלים.", "מָה בִּירַת יִשְׂרָאֵל"),                                # Hebrew with niqqud
])
def test_a_question_with_or_without_diacritics_finds_its_page(page, question):
    """Diacritics split words (\\w does not match a combining mark: "İSTANBUL" gave "stanbul",
    a vocalised Arabic question single letters) or kept "resume" apart from "résumé": no page was found."""
    doc = _pages_doc(["The weather report mentions rain and wind over the bay. " * 3, page * 3,
                      "The library opens at nine and closes at six on weekdays. " * 3])
    assert _cited_pages(doc, question)[:1] == ["2"]


@pytest.mark.parametrize("page, question", [
    ("بدأ الامتحـــان في الساعة التاسعة صباحا.", "الامتحان؟"),                          # tatweel on the page
    ("ٱلرَّحْمَٰنِ ٱلرَّحِيمِ", "الرحمن"),                                                 # alef wasla
    ("تأسست الجمعية عام ١٩٢٨ في القاهرة.", "1928"),                                     # Arabic-Indic digits
    ("The society was founded in 1928 in Cairo.", "١٩٢٨"),
    ("ת״א היא עיר גדולה.", 'מה גודלה של ת"א'),                                           # Hebrew acronym
    ('ד"ר כהן מרצה באוניברסיטה.', "ד״ר"),
])
def test_arabic_and_hebrew_spellings_of_one_word_find_its_page(page, question):
    """A tatweel (a stretching stroke), alef wasla or Arabic-Indic digits made a word other than the
    one the question wrote, and a Hebrew acronym ("ת״א") two letters too short to be words: no page
    was found."""
    doc = _pages_doc(["The weather report mentions rain and wind over the bay. " * 3, page * 3,
                      "The library opens at nine and closes at six on weekdays. " * 3])
    assert _cited_pages(doc, question)[:1] == ["2"]


@pytest.mark.parametrize("page, question", [
    ("Библиотека открывается в девять часов утра.", "Часы работы библиотеки"),
    ("المدرسة مغلقة اليوم بسبب العطلة.", "هل مدرسة"),                                   # article, teh marbuta
    ("نقل المريض إلى المستشفى.", "مستشفي"),                                            # alef maqsura typed as yeh
    ("Η βιβλιοθήκη ανοίγει στις εννέα.", "βιβλιοθήκης"),
    ("Новый театр открылся вчера.", "новая сцена"),          # й is not и with a mark: "новый" stems as "новая"
])
def test_an_inflected_russian_arabic_or_greek_word_finds_its_page(page, question):
    """Every word was stemmed in English, which leaves other scripts alone: "библиотеки" did not
    find "библиотека", nor "مدرسة" "المدرسة"."""
    doc = _pages_doc(["The weather report mentions rain and wind over the bay. " * 3, page * 3,
                      "The library opens at nine and closes at six on weekdays. " * 3])
    assert _cited_pages(doc, question)[:1] == ["2"]


@pytest.mark.parametrize("pages, question", [
    (["天气预报说明天会下雨，风很大。", "东京是日本的首都，人口约一千四百万。", "图书馆早上九点开门，晚上六点关门。"],
     "日本的首都是哪里？"),
    (["明日は雨が降るでしょう。風も強いです。", "東京は日本の首都です。人口は約千四百万人です。", "図書館は九時に開きます。"],
     "日本の首都はどこですか"),
    (["내일은 비가 오겠습니다.", "서울은 한국의 수도입니다.", "도서관은 아홉 시에 엽니다."], "한국의 수도는 어디입니까"),
])
def test_a_chinese_japanese_or_korean_question_finds_its_page(pages, question):
    """Text without spaces between words was one word per run of letters: nothing matched."""
    doc = _pages_doc([p * 3 for p in pages])
    assert _cited_pages(doc, question)[:1] == ["2"]


def test_a_japanese_answer_quotes_whole_sentences():
    """Chinese and Japanese write no space after a sentence's 。, so a page was one sentence, cut every
    900 characters wherever that fell: the quote began and ended inside sentences."""
    from app.answerers.base import AnswerRequest
    from app.answerers.extractive import ExtractiveAnswerer

    cities = ["札幌", "仙台", "新潟", "金沢", "静岡", "名古屋", "京都", "大阪", "神戸", "奈良", "岡山", "広島",
              "松山", "高知", "福岡", "長崎", "熊本", "鹿児島", "那覇", "青森"]
    sentences = [f"{city}の{what}は{n}番目に有名です。" for n, city in enumerate(cities, start=1)
                 for what in ("駅前の商店街", "古い寺院", "港の市場", "郷土料理")]
    sentences[45] = "広島の平和記念公園には毎年多くの修学旅行生が訪れます。"
    doc = _pages_doc(["".join(sentences)])
    assert len(doc.pages[0].text) > 1000
    done = [e for e in ExtractiveAnswerer(top_k=1).answer(AnswerRequest([doc], "平和記念公園には誰が訪れますか"))
            if e.kind == "done"]
    quote = re.search(r"\u201c(.*)\u201d", done[0].text)[1]
    assert "平和記念公園" in quote and len(quote) <= 600
    assert quote.endswith("。")                                                  # whole sentences
    assert doc.pages[0].text.startswith(quote) or f"。{quote}" in doc.pages[0].text


def test_a_japanese_document_counts_a_token_a_letter(svc, tmp_path):
    """Japanese puts no space between words: a sentence counted as one token, so the documents
    panel said 2 tokens for this page."""
    path = tmp_path / "tokyo.txt"
    path.write_text("東京は日本の首都です。人口は約千四百万人です。", encoding="utf-8")
    ws = svc.workspaces.create("ja")
    svc.documents.add(ws.id, path)
    assert [d.tokens for d in svc.documents.list(ws.id)] == [21]                # its 21 letters
