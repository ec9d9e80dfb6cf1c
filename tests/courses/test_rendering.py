"""Markdown to HTML: a code block shows (and the Run and Copy buttons send) exactly
the text its author wrote; headings, admonitions and links keep their shape; the
output holds nothing a browser would run.

Code blocks are checked the way a browser reads them: the HTML is parsed
(html.parser), the text content of each ``<pre><code>`` is taken (character
references decoded once, as the DOM's ``textContent`` is) and compared with the
fence's text from markdown-it's tokens.
"""

from __future__ import annotations

import html
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from markdown_it import MarkdownIt

from courses.content import CourseDef, read_course
from courses.models import Lesson
from courses.rendering import ALLOWED_PROTOCOLS, ALLOWED_TAGS, render_markdown, table_of_contents
from labs.models import LabSession
from tests.factories import PASSWORD, LabFactory, ModuleFactory, StepFactory, StudentFactory

BUNDLED = Path(__file__).resolve().parents[2] / "content" / "intro-to-kubernetes"
# What broke on every page (issue #14): a redirect, a heredoc, && and a literal entity.
TRICKY = "cat > .dockerignore <<'IGNORE'\na > b && c <<'X' &amp; &lt;\nIGNORE\n"


# --- helpers --------------------------------------------------------------------------------------


def fence_sources(markdown: str) -> list[str]:
    """The text of every fenced and indented code block, from a plain CommonMark parse."""
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(markdown)
    return [t.content for t in tokens if t.type in {"fence", "code_block"}]


class _CodeText(HTMLParser):
    """The text content of each <pre><code> (character references decoded once)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._stack: list[str] = []
        self._inside: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "code" and self._stack[-1:] == ["pre"]:
            self._inside = []
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if tag == "code" and self._inside is not None:
            self.blocks.append("".join(self._inside))
            self._inside = None

    def handle_data(self, data: str) -> None:
        if self._inside is not None:
            self._inside.append(data)


def code_texts(rendered: str) -> list[str]:
    parser = _CodeText()
    parser.feed(rendered)
    parser.close()
    return parser.blocks


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def markup(rendered: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Markup()
    parser.feed(rendered)
    parser.close()
    return parser.tags


def course_texts(course: CourseDef) -> dict[str, str]:
    """Every Markdown text of a course that a page renders, by where it comes from."""
    texts: dict[str, str] = {}
    for module in course.modules:
        for lesson in module.lessons:
            texts[f"{module.slug}/{lesson.slug}"] = lesson.body
        for lab in module.labs:
            where = f"{module.slug}/{lab.slug}"
            texts[f"{where}/intro"] = lab.intro
            texts[f"{where}/finish"] = lab.finish
            for step in lab.steps:
                texts[f"{where}/step-{step.order}"] = step.body
                for exercise in step.exercises:
                    for number, hint in enumerate(exercise.hints):
                        texts[f"{where}/{exercise.slug}/hint-{number}"] = str(hint)
                    texts[f"{where}/{exercise.slug}/solution"] = exercise.solution
    return {where: text for where, text in texts.items() if text}


# --- code blocks ----------------------------------------------------------------------------------


def test_every_code_block_of_the_bundled_course_renders_as_its_source() -> None:
    texts = course_texts(read_course(BUNDLED))
    compared = 0
    special = 0
    for where, markdown in texts.items():
        sources = fence_sources(markdown)
        assert code_texts(render_markdown(markdown)) == sources, where
        compared += len(sources)
        special += sum(1 for source in sources if set(source) & set("<>&\"'"))
    # The course is what the check is about: it has many blocks, and many with markup characters.
    assert compared > 100 and special > 20, (compared, special)


def test_the_comparison_catches_text_escaped_twice() -> None:
    """The old bug's output, as the browser saw it, fails the comparison; today's output passes."""
    twice = f'<div class="codeblock"><pre><code>{html.escape(html.escape(TRICKY))}</code></pre></div>'
    assert code_texts(twice) != [TRICKY]
    assert code_texts(twice) == [html.escape(TRICKY)]  # the text a Run button would have sent
    for fence in ("```bash run\n", "```\n", "```run\n", "```nosuchlanguage copy\n"):
        assert code_texts(render_markdown(f"{fence}{TRICKY}```\n")) == [TRICKY], fence


@pytest.mark.parametrize(
    "markdown",
    [
        "```bash\n\n\nleading blank lines\n\ttab\ntrailing spaces   \n\n```\n",
        "```bash\n```\n",
        '```yaml\nkey: "<value>" # & comment\n```\n',
        "```python\nprint('a' if x < 1 and y > 2 else \"&\")\n```\n",
        "~~~console\n$ echo '</code></pre><b>x</b>'\n~~~\n",
        "    indented <code> && block\n",
        "1. In a list:\n\n   ```sh run\n   echo a > /tmp/a && cat </tmp/a\n   ```\n",
        "> In a quote:\n>\n> ```sh\n> x >> y\n> ```\n",
        "```bash\necho https://example.com/?a=1&b=2 [x](y) **not bold**\n```\n",
    ],
)
def test_code_block_text_is_the_fence_text(markdown: str) -> None:
    sources = fence_sources(markdown)
    assert sources and code_texts(render_markdown(markdown)) == sources


def test_inline_code_is_escaped_once() -> None:
    rendered = render_markdown("Chain with `a && b > c`.")
    assert "<code>a &amp;&amp; b &gt; c</code>" in rendered


def test_fence_info_words_set_language_run_and_highlighting() -> None:
    rendered = render_markdown("```bash run\nls -l | wc\n```\n\n```yaml copy\na: 1\n```\n\n```run\nls\n```\n")
    blocks = [attrs for tag, attrs in markup(rendered) if tag == "div" and "codeblock" in attrs.get("class", "")]
    assert [(b["data-language"], b["data-runnable"]) for b in blocks] == [
        ("bash", "true"),
        ("yaml", "false"),
        ("", "true"),
    ]
    spans = [attrs.get("class", "") for tag, attrs in markup(rendered) if tag == "span"]
    assert spans and all(cls.startswith("hl-") for cls in spans)


# --- headings, table of contents, admonitions, links ----------------------------------------------


def test_h2_and_h3_get_ids_and_the_table_of_contents_lists_them() -> None:
    rendered = render_markdown(
        "# Top\n\n## A & B\n\ntext\n\n### `kubectl` *get*\n\n## A & B\n\n#### Deep\n\n## !!!\n\n## A B 2\n"
    )
    assert "<h1>Top</h1>" in rendered and "<h4>Deep</h4>" in rendered
    assert '<h2 id="a-b">A &amp; B</h2>' in rendered
    assert table_of_contents(rendered) == [
        {"level": "2", "id": "a-b", "title": "A & B"},
        {"level": "3", "id": "kubectl-get", "title": "kubectl get"},
        {"level": "2", "id": "a-b-2", "title": "A & B"},
        {"level": "2", "id": "section", "title": "!!!"},
        {"level": "2", "id": "a-b-2-2", "title": "A B 2"},  # never the id of another heading
    ]


def test_a_heading_in_a_code_block_is_not_a_heading() -> None:
    rendered = render_markdown("```md\n## not a heading\n```\n")
    assert table_of_contents(rendered) == []


def test_admonitions_become_boxes() -> None:
    rendered = render_markdown(
        "> [!NOTE]\n> Read **this** & that.\n\n> [!warning] Inline marker.\n\n> [!CAUTION]\n\n> [!TIP]\n> `x > y`\n"
    )
    boxes = [attrs["class"] for tag, attrs in markup(rendered) if tag == "blockquote"]
    assert boxes == [
        "admonition admonition-note",
        "admonition admonition-warning",
        "admonition admonition-warning",
        "admonition admonition-tip",
    ]
    assert "<p><strong>Note</strong> Read <strong>this</strong> &amp; that.</p>" in rendered
    assert "<p><strong>Warning</strong> Inline marker.</p>" in rendered
    assert "<p><strong>Tip</strong> <code>x &gt; y</code></p>" in rendered
    assert "[!" not in rendered


def test_other_quotes_and_markers_elsewhere_stay_as_written() -> None:
    rendered = render_markdown("> Just a quote [!NOTE]\n\nText [!NOTE]\n\n```\n> [!NOTE]\n```\n\n> [!OTHER] x\n")
    assert "admonition" not in rendered
    assert rendered.count("[!NOTE]") == 3 and "&gt; [!NOTE]" in rendered and "[!OTHER] x" in rendered


def test_external_links_open_in_a_new_tab_and_bare_urls_become_links() -> None:
    rendered = render_markdown(
        "[docs](https://kubernetes.io/docs/) [asset](/courses/c/assets/x.png) [top](#top)\n\n"
        "See https://example.com/a?b=1&c=2 or kubernetes.io; mail ops@example.com.\n\n"
        "`https://not.a/link` and\n\n```\nhttps://not.a/link\n```\n"
    )
    links = [attrs for tag, attrs in markup(rendered) if tag == "a"]
    assert links == [
        {"href": "https://kubernetes.io/docs/", "rel": "noopener noreferrer", "target": "_blank"},
        {"href": "/courses/c/assets/x.png"},
        {"href": "#top"},
        {"href": "https://example.com/a?b=1&c=2", "rel": "noopener noreferrer", "target": "_blank"},
        {"href": "http://kubernetes.io", "rel": "noopener noreferrer", "target": "_blank"},
    ]
    assert "ops@example.com" in rendered


# --- sanitisation ---------------------------------------------------------------------------------


HOSTILE = [
    "<script>alert(1)</script>",
    "<div onclick=alert(1)>raw block</div>",
    'Inline <img src=x onerror="alert(2)"> html',
    "[a](javascript:alert(3)) [b](JAVASCRIPT:alert(4)) [c](vbscript:x) [d](data:text/html,x)",
    "![i](javascript:alert(5)) <https://ok.example/>",
    '<p style="color:red">styled</p>',
    '```bash" onmouseover="alert(6)\ncode\n```',
    "<iframe src=https://evil.example></iframe>",
    '[x](https://ok.example "t\\" onmouseover=\\"alert(7)")',
]


@pytest.mark.parametrize("markdown", HOSTILE)
def test_output_holds_nothing_a_browser_would_run(markdown: str) -> None:
    rendered = render_markdown(markdown)
    for tag, attrs in markup(rendered):
        assert tag in ALLOWED_TAGS, rendered
        assert not any(name.startswith("on") or name == "style" for name in attrs), rendered
        for name in ("href", "src"):
            if ":" in attrs.get(name, ""):
                assert attrs[name].split(":", 1)[0].lower() in ALLOWED_PROTOCOLS, rendered


def test_raw_html_is_shown_as_text() -> None:
    rendered = render_markdown("<script>alert(1)</script>\n\nHello <b onclick=x>there</b>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "&lt;b onclick=x&gt;there&lt;/b&gt;" in rendered
    assert all(tag != "b" for tag, _ in markup(rendered))


# --- through the pages ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_lesson_and_lab_pages_show_code_as_written(client: Client) -> None:
    student = StudentFactory.create()
    assert client.login(username=student.username, password=PASSWORD)
    module = ModuleFactory.create()
    body = f"## Make the file\n\n```bash run\n{TRICKY}```\n"
    Lesson.objects.create(module=module, slug="files", title="Files", order=1, body=body)
    lab = LabFactory.create(module=module, intro=f"```\n{TRICKY}```\n")
    StepFactory.create(lab=lab, title="Write", body=body)

    lesson = client.get(f"/courses/{module.course.slug}/{module.slug}/files/")
    assert lesson.status_code == 200
    assert code_texts(lesson.content.decode()) == [TRICKY]
    assert '<a href="#make-the-file">Make the file</a>' in lesson.content.decode()
    now = timezone.now()
    session = LabSession.objects.create(
        user=student,
        lab=lab,
        status=LabSession.Status.READY,
        sandbox_id="sb-not-contacted",  # the page is rendered from the database alone
        ready_at=now,
        expires_at=now + timedelta(hours=1),
    )
    lab_page = client.get(f"/labs/{session.pk}/")
    assert lab_page.status_code == 200
    assert code_texts(lab_page.content.decode()) == [TRICKY, TRICKY]  # the intro, the step


def test_the_same_source_is_rendered_once_and_a_large_one_each_time() -> None:
    """A lab page renders its steps on every view: the HTML is kept per source text
    (bounded in entries and in source size), and a changed source is rendered anew."""
    from courses import rendering

    rendering._render_cached.cache_clear()
    first = render_markdown("## Deploy it\n\nRun `kubectl get pods`.\n")
    again = render_markdown("## Deploy it\n\nRun `kubectl get pods`.\n")
    changed = render_markdown("## Deploy it\n\nRun `kubectl get deploy`.\n")
    assert again == first and "kubectl get deploy" in changed
    assert rendering._render_cached.cache_info()[:2] == (1, 2)  # (hits, misses)
    big = "x" * (rendering.RENDER_CACHE_MAX_SOURCE + 1)
    assert render_markdown(big) == render_markdown(big) == "<p>" + big + "</p>\n"
    assert rendering._render_cached.cache_info().currsize == 2
    assert rendering._render_cached.cache_info().maxsize == rendering.RENDER_CACHE_ENTRIES
