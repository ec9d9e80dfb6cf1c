"""The lab page's editor tab in a real browser (Debian's Chromium under Playwright), against
daphne, a real Celery worker, Redis and runtimed: open a file of /root from the tree, type,
Ctrl-S, and the sandbox's file changes; a change made in the sandbox is reloaded; a planted
link to /etc/shadow is neither opened nor saved through the editor."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labs.models import LabSession
from runtime.client import Client as RuntimeClient
from tests.e2e.test_lab_terminal import start_lab_at_step_one, type_line, wait_screen
from tests.factories import LabFactory, StepFactory, StudentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EDITOR_TEXT = (
    "() => { const c = document.querySelector('.editor-box:not([hidden]) .cm-content'); return c ? c.innerText : ''; }"
)


@pytest.fixture
def lab_stack(runtime_socket: str, celery_worker: object, asgi_server: str) -> str:
    return asgi_server


def test_student_edits_a_manifest_saves_with_ctrl_s_and_sees_terminal_changes(
    lab_stack: str, runtime_socket: str, page: Any
) -> None:
    student = StudentFactory.create()
    lab = LabFactory.create(title="Editor")
    StepFactory.create(lab=lab, title="Edit", body="Edit [pod.yaml](editor:pod.yaml).")
    start_lab_at_step_one(page, lab_stack, student.username, lab.pk)
    type_line(page, "printf 'kind: Pod\\n' > /root/pod.yaml && ln -s /etc/shadow /root/x && echo plant-$((1+1))")
    wait_screen(page, r"^plant-2$")
    sandbox = LabSession.objects.get(user=student, lab=lab).sandbox_id

    def in_sandbox(script: str) -> str:
        with RuntimeClient(runtime_socket) as rt:
            r = rt.exec(sandbox, ["sh", "-c", script], timeout=10)
        assert r.exit_code == 0, r.stderr_text
        return r.stdout_text

    page.click("#editor-toggle")
    assert page.get_attribute("#editor-toggle", "aria-pressed") == "true"
    page.click('#editor-tree [data-path="pod.yaml"]')
    page.wait_for_function(f"() => ({EDITOR_TEXT})().includes('kind: Pod')")
    # keyboard only: the editor has focus and a label
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Editing /root/pod.yaml"
    page.keyboard.press("Control+End")
    page.keyboard.type("metadata:\n  name: web")
    page.keyboard.press("Control+s")
    page.wait_for_selector('#editor-status[data-kind="ok"]')
    assert in_sandbox("cat /root/pod.yaml") == "kind: Pod\nmetadata:\n  name: web"

    # changed in the sandbox: coming back to the file reloads it (nothing unsaved here)
    in_sandbox("echo '# from the terminal' >> /root/pod.yaml")
    page.click("#editor-toggle")  # to the terminals
    page.click("#editor-toggle")  # and back: the file is checked
    page.wait_for_function(f"() => ({EDITOR_TEXT})().includes('# from the terminal')")

    # the planted link: not openable from the tree, refused by the endpoint, file untouched
    assert page.is_disabled('#editor-tree [data-path="x"]')
    answers = page.evaluate(
        """async (session) => {
            const token = JSON.parse(document.getElementById('lab-config').textContent).csrf_token;
            const read = await fetch(`/labs/${session}/files/content/?path=x`);
            const write = await fetch(`/labs/${session}/files/content/`, {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
                body: JSON.stringify({path: 'x', content: 'owned', etag: '*'})});
            return [read.status, await read.text(), write.status];
        }""",
        str(LabSession.objects.get(user=student, lab=lab).pk),
    )
    assert answers[0] == 403 and answers[2] == 403, answers
    assert "root:" not in json.loads(answers[1]).get("content", "")
    assert in_sandbox("test -L /root/x && echo link") == "link\n"

    # "Open in editor" in the step: from the terminals, straight to the file's tab
    page.click("#editor-toggle")
    assert page.is_hidden("#editor-pane")
    page.click('.steps-body button.open-in-editor[data-open-in-editor="pod.yaml"]')
    page.wait_for_selector("#editor-pane:not([hidden])")
    assert page.get_attribute('#editor-tabs [title="/root/pod.yaml"]', "aria-selected") == "true"

    # edited on both sides: Ctrl-S does not overwrite the sandbox's newer file; the prompt
    # offers a reload (accepted here), which shows the sandbox's version
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.click(".editor-box:not([hidden]) .cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# mine")
    in_sandbox("echo '# theirs' >> /root/pod.yaml")
    page.keyboard.press("Control+s")
    page.wait_for_function(f"() => ({EDITOR_TEXT})().includes('# theirs')")
    assert dialogs and "changed in the sandbox" in dialogs[0]
    assert in_sandbox("tail -n 1 /root/pod.yaml") == "# theirs\n"
    assert "# mine" not in page.evaluate(EDITOR_TEXT)
