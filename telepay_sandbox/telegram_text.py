"""Message text as Telegram sees it: parse modes into plain text + entities, entity detection.

Telegram rejects badly formatted text with "Bad Request: can't parse entities: ...", and that is
a classic production bug (an unescaped "." in a MarkdownV2 price, a "<" in a user's name under
HTML), so the sandbox parses HTML, MarkdownV2 and legacy Markdown and refuses what Telegram
refuses. Entity offsets and lengths count UTF-16 code units, as in the Bot API.
"""

from __future__ import annotations

import re

from telepay_sandbox.telegram_params import bad_request


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


class _Builder:
    """Accumulates plain text and the entities opened and closed along it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0  # UTF-16 units so far
        self.entities: list[dict] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += utf16_len(text)

    def close(self, entity: dict, start: int) -> None:
        if self.length > start:  # Telegram drops empty entities
            self.entities.append({**entity, "offset": start, "length": self.length - start})

    def result(self) -> tuple[str, list[dict]]:
        # Outer entities first; of two with the same span, the one closed last is the outer.
        order = sorted(enumerate(self.entities), key=lambda p: (p[1]["offset"], -p[1]["length"], -p[0]))
        return "".join(self.parts), [entity for _, entity in order]


def _parse_error(detail: str):
    return bad_request(f"can't parse entities: {detail}")


# ---- HTML -------------------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji", "span": "spoiler",
}
_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^>]*)?)>")
_ATTR = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_CHARREF = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def parse_html(source: str) -> tuple[str, list[dict]]:
    out = _Builder()
    stack: list[tuple[str, dict, int]] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char == "<":
            match = _TAG.match(source, i)
            if not match:
                raise _parse_error(f"Unexpected end of name token at byte offset {_byte_offset(source, i)}")
            closing, tag, attrs = match.group(1), match.group(2).lower(), match.group(3)
            if tag not in _HTML_TAGS:
                kind = "end" if closing else "start"
                raise _parse_error(f'Unsupported {kind} tag "{tag}" at byte offset {_byte_offset(source, i)}')
            if closing:
                if not stack or stack[-1][0] != tag:
                    expected = f'expected "</{stack[-1][0]}>", ' if stack else ""
                    raise _parse_error(
                        f"Unmatched end tag at byte offset {_byte_offset(source, i)}, "
                        f'{expected}found "</{tag}>"'
                    )
                _, entity, start = stack.pop()
                inner = out.entities[-1] if out.entities else None
                if tag == "pre" and inner and inner["type"] == "code" and inner["offset"] == start:
                    # <pre><code class="language-x"> is one pre entity with a language.
                    out.entities.pop()
                    entity = {**entity, **({"language": inner["language"]} if "language" in inner else {})}
                elif tag == "code" and not (stack and stack[-1][0] == "pre"):
                    entity = {"type": "code"}  # a language means something only inside <pre>
                out.close(entity, start)
            else:
                stack.append((tag, _html_entity(tag, dict(_attrs(attrs))), out.length))
            i = match.end()
        elif char == "&":
            match = _CHARREF.match(source, i)
            text = _charref(match.group(1)) if match else None
            out.add(text if text is not None else "&")
            i = match.end() if text is not None else i + 1
        else:
            j = i
            while j < len(source) and source[j] not in "<&":
                j += 1
            out.add(source[i:j])
            i = j
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _attrs(text: str):
    for match in _ATTR.finditer(text):
        value = next((g for g in match.groups()[1:] if g is not None), "")
        yield match.group(1).lower(), _CHARREF.sub(lambda m: _charref(m.group(1)) or m.group(), value)


def _charref(name: str) -> str | None:
    if name.startswith("#x"):
        return chr(int(name[2:], 16))
    if name.startswith("#"):
        return chr(int(name[1:]))
    return _HTML_ENTITIES.get(name)


def _html_entity(tag: str, attrs: dict[str, str]) -> dict:
    kind = _HTML_TAGS[tag]
    if tag == "span" and attrs.get("class") != "tg-spoiler":
        raise _parse_error('Tag "span" must have class "tg-spoiler"')
    if kind == "text_link":
        return {"type": "text_link", "url": attrs.get("href", "")}
    if kind in ("pre", "code") and attrs.get("class", "").startswith("language-"):
        return {"type": kind, "language": attrs["class"][len("language-"):]}
    if kind == "blockquote" and "expandable" in attrs:
        return {"type": "expandable_blockquote"}
    if kind == "custom_emoji":
        return {"type": "custom_emoji", "custom_emoji_id": attrs.get("emoji-id", "")}
    return {"type": kind}


# ---- MarkdownV2 and legacy Markdown -----------------------------------------------------------

_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_V2_MARKERS = (("||", "spoiler", "Spoiler"), ("__", "underline", "Underline"),
               ("_", "italic", "Italic"), ("*", "bold", "Bold"), ("~", "strikethrough", "Strikethrough"))


def parse_markdown_v2(source: str) -> tuple[str, list[dict]]:
    out = _Builder()
    stack: list[tuple[str, str, int, int]] = []  # (marker, entity type, start, source index)
    i = 0
    while i < len(source):
        char = source[i]
        code = stack[-1][0] if stack and stack[-1][0] in ("`", "```") else None
        if char == "\\" and i + 1 < len(source):
            out.add(source[i + 1])
            i += 2
            continue
        if code:
            if source.startswith(code, i):
                marker, kind, start, _ = stack.pop()
                out.close({"type": kind}, start)
                i += len(code)
            elif char == "`":
                raise _reserved(char)
            else:
                out.add(char)
                i += 1
            continue
        if source.startswith("```", i):
            newline = source.find("\n", i)
            header = source[i + 3:newline] if newline != -1 else ""
            stack.append(("```", "pre", out.length, i))
            i = newline + 1 if newline != -1 and " " not in header else i + 3
            continue
        if char == "`":
            stack.append(("`", "code", out.length, i))
            i += 1
            continue
        if char == "[":
            stack.append(("[", "text_link", out.length, i))
            i += 1
            continue
        if char == "]" and any(entry[0] == "[" for entry in stack):
            i = _close_link(source, i, stack, out)
            continue
        marker = next((m for m in _V2_MARKERS if source.startswith(m[0], i)), None)
        if marker:
            _toggle(stack, out, marker[0], marker[1], i)
            i += len(marker[0])
            continue
        if char in _V2_RESERVED:
            raise _reserved(char)
        out.add(char)
        i += 1
    if stack:
        marker, kind, _, index = stack[-1]
        names = {m[1]: m[2] for m in _V2_MARKERS} | {"code": "Code", "pre": "Pre", "text_link": "TextUrl"}
        offset = _byte_offset(source, index)
        raise _parse_error(f"Can't find end of {names[kind]} entity at byte offset {offset}")
    return out.result()


def _reserved(char: str):
    return _parse_error(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def _toggle(stack, out: _Builder, marker: str, kind: str, index: int) -> None:
    for position in range(len(stack) - 1, -1, -1):
        if stack[position][0] == marker:
            _, _, start, _ = stack.pop(position)
            out.close({"type": kind}, start)
            return
    stack.append((marker, kind, out.length, index))


def _close_link(source: str, i: int, stack, out: _Builder) -> int:
    """At "]" of "[text](url)": read the URL (where only ")" and "\\" are escaped)."""
    position = max(p for p, entry in enumerate(stack) if entry[0] == "[")
    _, _, start, index = stack.pop(position)
    if not source.startswith("(", i + 1):
        raise _parse_error(f"Can't find end of TextUrl entity at byte offset {_byte_offset(source, index)}")
    j, url = i + 2, []
    while j < len(source) and source[j] != ")":
        if source[j] == "\\" and j + 1 < len(source):
            j += 1
        url.append(source[j])
        j += 1
    if j >= len(source):
        raise _parse_error(f"Can't find end of TextUrl entity at byte offset {_byte_offset(source, index)}")
    out.close({"type": "text_link", "url": "".join(url)}, start)
    return j + 1


_V1 = re.compile(r"\*(.+?)\*|_(.+?)_|```(?:(\w+)\n)?(.+?)```|`(.+?)`|\[(.+?)\]\((.+?)\)", re.S)


def parse_markdown(source: str) -> tuple[str, list[dict]]:
    """Legacy Markdown: non-nesting *bold*, _italic_, `code`, ```pre```, [text](url)."""
    out = _Builder()
    i = 0
    while i < len(source):
        match = _V1.match(source, i)
        if match:
            bold, italic, language, pre, code, label, url = match.groups()
            start = out.length
            out.add(next(g for g in (bold, italic, pre, code, label) if g is not None))
            kind = ("bold" if bold is not None else "italic" if italic is not None
                    else "pre" if pre is not None else "code" if code is not None else "text_link")
            entity = {"type": kind, **({"url": url} if url else {}),
                      **({"language": language} if language else {})}
            out.close(entity, start)
            i = match.end()
        elif source[i] == "\\" and i + 1 < len(source) and source[i + 1] in "_*`[":
            out.add(source[i + 1])
            i += 2
        elif source[i] in "_*`[":
            offset = _byte_offset(source, i)
            raise _parse_error(f"Can't find end of the entity starting at byte offset {offset}")
        else:
            out.add(source[i])
            i += 1
    return out.result()


PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


def format_text(text: str, parse_mode: str | None, entities: list | None) -> tuple[str, list[dict]]:
    """Text and entities as stored for a bot's message; explicit entities override parse_mode."""
    if entities is not None:
        return text, entities
    if not parse_mode:
        return text, []
    parser = PARSERS.get(parse_mode.lower())
    if parser is None:
        raise bad_request("unsupported parse_mode")
    return parser(text)


_AUTO_ENTITIES = re.compile(
    r"(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/]))"
    r"|(?P<url>https?://[^\s]+)"
    r"|(?P<mention>(?<!\w)@[A-Za-z0-9_]{4,32})"
    r"|(?P<hashtag>(?<![\w#])#\w+)"
)


def detect_entities(text: str) -> list[dict]:
    """Entities a Telegram client attaches to what a person types (commands, links, ...)."""
    found = []
    for match in _AUTO_ENTITIES.finditer(text):
        found.append({
            "type": match.lastgroup,
            "offset": utf16_len(text[:match.start()]),
            "length": utf16_len(match.group()),
        })
    return found
