"""Parse modes and entity detection, in UTF-16 offsets as the Bot API counts them."""

from __future__ import annotations

import pytest

from telepay_sandbox.telegram_params import ApiError
from telepay_sandbox.telegram_text import (
    detect_entities, format_text, parse_html, parse_markdown, parse_markdown_v2,
)


def test_html_nesting_entities_and_utf16_offsets():
    source = '😀 <b>bold <i>both</i></b> <code>x&lt;y</code> <pre><code class="language-py">p</code></pre>'
    text, entities = parse_html(source)
    assert text == "😀 bold both x<y p"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 9},
        {"type": "italic", "offset": 8, "length": 4},
        {"type": "code", "offset": 13, "length": 3},
        {"type": "pre", "offset": 17, "length": 1, "language": "py"},
    ]


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ("<br>", 'Unsupported start tag "br" at byte offset 0'),
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler"'),
    ],
)
def test_html_errors(source, detail):
    with pytest.raises(ApiError) as refused:
        parse_html(source)
    assert refused.value.description == f"Bad Request: can't parse entities: {detail}"


def test_html_spoilers_links_and_plain_ampersands():
    text, entities = parse_html('a & b <tg-spoiler>s</tg-spoiler> <a href="https://x.org/?a=1&amp;b=2">l</a>')
    assert text == "a & b s l"
    assert entities == [{"type": "spoiler", "offset": 6, "length": 1},
                        {"type": "text_link", "offset": 8, "length": 1, "url": "https://x.org/?a=1&b=2"}]


def test_markdown_v2():
    source = r"*bold _both_* __under__ ~s~ ||sp|| `c\`` [site](https://x.org/a\)b) 1\.5"
    text, entities = parse_markdown_v2(source)
    assert text == "bold both under s sp c` site 1.5"
    kinds = [(e["type"], e["offset"], e["length"]) for e in entities]
    assert kinds == [("bold", 0, 9), ("italic", 5, 4), ("underline", 10, 5), ("strikethrough", 16, 1),
                     ("spoiler", 18, 2), ("code", 21, 2), ("text_link", 24, 4)]
    assert entities[-1]["url"] == "https://x.org/a)b"


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ("Price: 4.99", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("Hi!", "Character '!' is reserved and must be escaped with the preceding '\\'"),
        ("*open", "Can't find end of Bold entity at byte offset 0"),
        ("é _open", "Can't find end of Italic entity at byte offset 3"),
    ],
)
def test_markdown_v2_errors(source, detail):
    with pytest.raises(ApiError) as refused:
        parse_markdown_v2(source)
    assert refused.value.description == f"Bad Request: can't parse entities: {detail}"


def test_legacy_markdown():
    text, entities = parse_markdown("*b* _i_ `c` [l](https://x.org) 4.99!")
    assert text == "b i c l 4.99!"
    assert [e["type"] for e in entities] == ["bold", "italic", "code", "text_link"]
    with pytest.raises(ApiError, match="Can't find end of the entity starting at byte offset 2"):
        parse_markdown("a *b")


def test_format_text_prefers_explicit_entities_and_rejects_unknown_modes():
    given = [{"type": "bold", "offset": 0, "length": 1}]
    assert format_text("<b>", "HTML", given) == ("<b>", given)
    assert format_text("plain <b>", None, None) == ("plain <b>", [])
    with pytest.raises(ApiError, match="unsupported parse_mode"):
        format_text("x", "BBCode", None)


def test_detected_entities_of_what_people_type():
    entities = detect_entities("/start@telepay_bot go to https://x.org #tag @someone a/b")
    assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
        ("bot_command", 0, 18), ("url", 25, 13), ("hashtag", 39, 4), ("mention", 44, 8)]
