"""Markdown of lessons and lab steps to safe HTML.

Content is written by instructors, but it is still input: raw HTML in the
Markdown is off, and the HTML produced is sanitised with an allow-list (nh3)
after rendering, so no script, event handler, style or ``javascript:`` URL from
content reaches a page.

Everything that gives the Markdown its meaning here (heading ids, admonitions,
link targets, bare URLs made links) is done on markdown-it's tokens, before
anything is HTML. The HTML is escaped exactly once, by the renderer (or by
Pygments inside a code block), and the sanitiser re-serialises it without
changing its text: the text of a rendered ``<pre><code>`` is the fence's text,
character for character, which is what the Run and Copy buttons send
(tests/courses/test_rendering.py proves it for every block of the bundled
course).

Fenced code blocks carry their role in the info string: the first word is the
language, and the words ``run`` or ``copy`` after it mark the block as
click-to-run (sent to the active terminal) or copy-only (the default)::

    ```bash run
    kubectl get pods
    ```

Admonitions are block quotes that start with ``[!NOTE]``, ``[!TIP]`` or
``[!WARNING]`` (the GitHub spelling; ``[!IMPORTANT]`` and ``[!CAUTION]`` map to
note and warning). They render as ``<blockquote class="admonition
admonition-note"><p><strong>Note</strong> …``.

A link to ``editor:<path>`` is an "Open in editor" button for a file below the lab
sandbox's ``/root``: ``[pod.yaml](editor:app/pod.yaml)``.

h2 and h3 headings get ids (lower-case ASCII words joined by ``-``; a repeated
one gets ``-2``, ``-3``…), which :func:`table_of_contents` lists.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
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
    "*": {"class"},
    "h2": {"id"},
    "h3": {"id"},
    "a": {"href", "title", "rel", "target"},
    "img": {"src", "alt", "title", "width", "height", "loading"},
    "div": {"data-runnable", "data-language"},
    "button": {"type", "data-open-in-editor"},
    "td": {"align"},
    "th": {"align"},
}
ALLOWED_PROTOCOLS = {"http", "https", "mailto"}
ADMONITIONS = {
    "NOTE": "note",
    "TIP": "tip",
    "WARNING": "warning",
    "IMPORTANT": "note",
    "CAUTION": "warning",
}
TOC_LEVELS = ("h2", "h3")
EXTERNAL_REL = "noopener noreferrer"

_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")
_ADMONITION = re.compile(r"\[!(NOTE|TIP|WARNING|IMPORTANT|CAUTION)\]\s*", re.IGNORECASE)
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=ALLOWED_PROTOCOLS,
    strip_comments=True,
    # rel is set on the tokens (external links only), so nh3 must not add its own.
    link_rel=None,
)


# --- code blocks ----------------------------------------------------------------------------------


def _fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    words = token.info.strip().split()
    language = words[0] if words and words[0] not in {"run", "copy"} else ""
    runnable = "run" in words
    code = token.content
    try:
        # stripnl/ensurenl off: Pygments would otherwise drop leading blank lines or add a
        # newline, and the block would no longer be the text the author wrote.
        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False) if language else None
    except ClassNotFound:
        lexer = None
    body = highlight(code, lexer, _FORMATTER) if lexer else html.escape(code)
    return (
        f'<div class="codeblock" data-runnable="{"true" if runnable else "false"}" '
        f'data-language="{html.escape(language)}"><pre><code>{body}</code></pre></div>\n'
    )


# --- core rules over tokens -----------------------------------------------------------------------


def _inline_text(inline: Token) -> str:
    """The text a reader sees in an inline token (what the browser shows of its HTML)."""
    parts: list[str] = []
    for child in inline.children or []:
        if child.type in {"text", "code_inline"}:
            parts.append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            parts.append("\n")
    return "".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _heading_ids(state: StateCore) -> None:
    """h2/h3 get an id from their text; a repeat gets -2, -3… (never an id already given)."""
    seen: dict[str, int] = {}
    used: set[str] = set()
    tokens = state.tokens
    for idx, token in enumerate(tokens):
        if token.type != "heading_open" or token.tag not in TOC_LEVELS:
            continue
        slug = _slug(_inline_text(tokens[idx + 1]))
        seen[slug] = seen.get(slug, 0) + 1
        candidate = slug if seen[slug] == 1 else f"{slug}-{seen[slug]}"
        while candidate in used:
            seen[slug] += 1
            candidate = f"{slug}-{seen[slug]}"
        used.add(candidate)
        token.attrSet("id", candidate)


def _admonitions(state: StateCore) -> None:
    """A block quote whose first paragraph opens with [!KIND] becomes an admonition box."""
    tokens = state.tokens
    for idx, token in enumerate(tokens[:-2]):
        if token.type != "blockquote_open" or tokens[idx + 1].type != "paragraph_open":
            continue
        inline = tokens[idx + 2]
        children = inline.children or []
        if not children or children[0].type != "text":
            continue
        match = _ADMONITION.match(children[0].content)
        if not match:
            continue
        kind = ADMONITIONS[match.group(1).upper()]
        rest = children[0].content[match.end() :]
        tail = children[1:]
        if rest:
            tail.insert(0, _text_token(rest, children[0]))
        elif tail and tail[0].type == "softbreak":
            tail = tail[1:]  # the marker on a line of its own
            if tail and tail[0].type == "text":
                tail[0].content = tail[0].content.lstrip()
        strong_open = Token("strong_open", "strong", 1, markup="**", level=inline.level)
        strong_close = Token("strong_close", "strong", -1, markup="**", level=inline.level)
        inline.children = [
            strong_open,
            _text_token(kind.title(), children[0]),
            strong_close,
            _text_token(" ", children[0]),
            *tail,
        ]
        token.attrSet("class", f"admonition admonition-{kind}")


def _text_token(content: str, like: Token) -> Token:
    return Token("text", "", 0, content=content, level=like.level)


def _external_links(state: StateCore) -> None:
    """Links to other sites open in a new tab, without an opener or a referrer."""
    for token in state.tokens:
        for child in token.children or []:
            if child.type != "link_open":
                continue
            href = str(child.attrGet("href") or "")
            if href.lower().startswith(("http://", "https://")):
                child.attrSet("rel", EXTERNAL_REL)
                child.attrSet("target", "_blank")


def _editor_links(state: StateCore) -> None:
    """``[pod.yaml](editor:app/pod.yaml)`` becomes an "Open in editor" button for the lab
    page's editor (static/js/lab-editor.js), naming a path below the sandbox's /root. The
    path is data: the editor's endpoint refuses anything outside /root (runtime/sandbox/files.py)."""
    for token in state.tokens:
        children = token.children or []
        for i, child in enumerate(children):
            href = str(child.attrGet("href") or "") if child.type == "link_open" else ""
            if not href.lower().startswith("editor:"):
                continue
            close = next((j for j in range(i + 1, len(children)) if children[j].type == "link_close"), None)
            if close is None:
                continue
            child.tag = children[close].tag = "button"
            child.attrs = {
                "type": "button",
                "class": "open-in-editor",
                "data-open-in-editor": unquote(href[len("editor:") :]),
            }


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.enable(["table", "strikethrough", "linkify"])
    # As bleach.linkify did: web addresses become links, e-mail addresses stay text.
    if md.linkify is None:  # pragma: no cover - linkify-it-py is a pinned dependency
        raise ImportError("linkify-it-py is required for auto-linked URLs")
    md.linkify.set({"fuzzy_email": False})
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    # After "linkify" (so auto-links are external links too) and "text_join" (so the
    # [!NOTE] marker is one text token).
    md.core.ruler.push("kubelab_admonitions", _admonitions)
    md.core.ruler.push("kubelab_heading_ids", _heading_ids)
    md.core.ruler.push("kubelab_external_links", _external_links)
    md.core.ruler.push("kubelab_editor_links", _editor_links)
    return md


_MD = _markdown()


# A lab page renders its intro and every step on each view: a class of 50 opening the same lab
# at once rendered the same few sources hundreds of times (~2.5 ms of daphne's CPU per view of
# "Deploy, scale, update, roll back"). The HTML is a function of the source alone, so it is
# kept per source text: a changed lesson is a new key. Bounded: 128 entries of at most 32 KiB
# of source (larger ones are rendered each time), a few MB per process at worst.
RENDER_CACHE_ENTRIES = 128
RENDER_CACHE_MAX_SOURCE = 32 * 1024


def render_markdown(source: str) -> str:
    """Markdown → sanitised HTML (h2/h3 headings get ids for the table of contents)."""
    if len(source) > RENDER_CACHE_MAX_SOURCE:
        return _render(source)
    return _render_cached(source)


def _render(source: str) -> str:
    return _CLEANER.clean(_MD.render(source))


_render_cached = functools.lru_cache(maxsize=RENDER_CACHE_ENTRIES)(_render)


# --- table of contents ----------------------------------------------------------------------------


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, str]] = []
        self._open: dict[str, str] | None = None
        self._title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag in TOC_LEVELS and ident and self._open is None:
            self._open = {"level": tag[1], "id": ident}
            self._title = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._title.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == f"h{self._open['level']}":
            self.found.append({**self._open, "title": "".join(self._title)})
            self._open = None


def table_of_contents(rendered: str) -> list[dict[str, str]]:
    """[{level, id, title}] of the h2/h3 headings in HTML from :func:`render_markdown`.

    The ids were given on the tokens; this reads them back with a real HTML
    parser, so callers that only hold the rendered HTML can build a TOC.
    """
    parser = _Headings()
    parser.feed(rendered)
    parser.close()
    return parser.found
