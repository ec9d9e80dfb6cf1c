"""Markdown of lessons and lab steps to safe HTML.

Content is written by instructors, but it is still input: the HTML produced
here is sanitised with an allow-list (bleach) after rendering, so no script,
event handler or ``javascript:`` URL from content reaches a page.

Fenced code blocks carry their role in the info string: the first word is the
language, and the words ``run`` or ``copy`` after it mark the block as
click-to-run (sent to the active terminal) or copy-only (the default)::

    ```bash run
    kubectl get pods
    ```

Admonitions are block quotes that start with ``[!NOTE]``, ``[!TIP]`` or
``[!WARNING]`` (the GitHub spelling).
"""

from __future__ import annotations

import html
import re
from typing import Any

import bleach
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
    "button",
    "details",
    "summary",
}
ALLOWED_ATTRIBUTES = {
    "*": ["class"],
    "h2": ["id"],
    "h3": ["id"],
    "a": ["href", "title", "rel", "target"],
    "img": ["src", "alt", "title", "width", "height", "loading"],
    "div": ["class", "data-runnable", "data-language"],
    "td": ["align"],
    "th": ["align"],
}
ALLOWED_PROTOCOLS = ["http", "https", "mailto"]
ADMONITIONS = {
    "NOTE": "note",
    "TIP": "tip",
    "WARNING": "warning",
    "IMPORTANT": "note",
    "CAUTION": "warning",
}
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")


def _fence(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    words = token.info.strip().split()
    language = words[0] if words and words[0] not in {"run", "copy"} else ""
    runnable = "run" in words
    code = token.content
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    body = highlight(code, lexer, _FORMATTER) if lexer else html.escape(code)
    return (
        f'<div class="codeblock" data-runnable="{"true" if runnable else "false"}" '
        f'data-language="{html.escape(language)}"><pre><code>{body}</code></pre></div>\n'
    )


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    return md


_MD = _markdown()
_ADMONITION = re.compile(r"<blockquote>\s*<p>\[!(NOTE|TIP|WARNING|IMPORTANT|CAUTION)\]\s*", re.IGNORECASE)
_HEADING = re.compile(r"<h([23])>(.*?)</h\1>", re.DOTALL)


def _admonitions(text: str) -> str:
    def open_box(match: re.Match[str]) -> str:
        kind = ADMONITIONS[match.group(1).upper()]
        return f'<blockquote class="admonition admonition-{kind}"><p><strong>{kind.title()}</strong> '

    return _ADMONITION.sub(open_box, text)


def _slug(text: str) -> str:
    plain = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^a-z0-9]+", "-", html.unescape(plain).lower()).strip("-") or "section"


def render_markdown(source: str) -> str:
    """Markdown → sanitised HTML (headings get ids for the table of contents)."""
    rendered = _admonitions(_MD.render(source))
    seen: dict[str, int] = {}

    def anchor(match: re.Match[str]) -> str:
        slug = _slug(match.group(2))
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        return f'<h{match.group(1)} id="{slug}">{match.group(2)}</h{match.group(1)}>'

    rendered = _HEADING.sub(anchor, rendered)
    cleaned = bleach.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        protocols=ALLOWED_PROTOCOLS,
        strip=True,
    )
    return bleach.linkify(cleaned, callbacks=[_external_links], skip_tags={"pre", "code"})


def _external_links(attrs: dict[Any, str], new: bool = False) -> dict[Any, str]:
    href = attrs.get((None, "href"), "")
    if href.startswith(("http://", "https://")):
        attrs[(None, "rel")] = "noopener noreferrer"
        attrs[(None, "target")] = "_blank"
    return attrs


def table_of_contents(rendered: str) -> list[dict[str, str]]:
    """[{level, id, title}] of the h2/h3 headings in rendered HTML."""
    return [
        {
            "level": m.group(1),
            "id": m.group(2),
            "title": html.unescape(re.sub(r"<[^>]+>", "", m.group(3))),
        }
        for m in re.finditer(r'<h([23]) id="([^"]+)">(.*?)</h\1>', rendered, re.DOTALL)
    ]
