"""``[name](editor:path)`` in lesson and step Markdown: an "Open in editor" button for the
lab page's editor, whose path is carried as escaped data and nothing else."""

from __future__ import annotations

from html.parser import HTMLParser

from courses.rendering import render_markdown


def test_an_editor_link_becomes_an_open_in_editor_button() -> None:
    html = render_markdown("Open [pod.yaml](editor:app/pod.yaml) and [docs](https://kubernetes.io/).")
    assert '<button type="button" class="open-in-editor" data-open-in-editor="app/pod.yaml">pod.yaml</button>' in html
    assert '<a href="https://kubernetes.io/" rel="noopener noreferrer" target="_blank">docs</a>' in html


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))


def test_an_editor_path_is_escaped_data() -> None:
    html = render_markdown('[x](editor:%22%3E%3Cscript%3Ealert(1)%3C/script%3E) [y](<editor:a" onclick="b>)')
    tags = Tags()
    tags.feed(html)
    assert [t for t, _ in tags.seen] == ["p", "button", "button"]
    assert [a["data-open-in-editor"] for _, a in tags.seen[1:]] == ['"><script>alert(1)</script>', 'a" onclick="b']
    assert all(set(a) == {"type", "class", "data-open-in-editor"} for _, a in tags.seen[1:])


def test_other_links_and_plain_text_are_unchanged() -> None:
    html = render_markdown("editor:pod.yaml as text, [a](https://example.com/editor:x)")
    assert "<button" not in html
