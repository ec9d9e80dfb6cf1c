"""The lab page's editor tab in a real browser (Debian's Chromium under Playwright), against
daphne, a real Celery worker, Redis and runtimed: open a file of /root from the tree, type,
Ctrl-S, and the sandbox's file changes; a change made in the sandbox is reloaded; a planted
link to /etc/shadow is neither opened nor saved through the editor. In a Kubernetes lab, a
manifest is validated against the lab cluster as the student types: a red mark at the line
of the error, gone when fixed, and the saved file applies with kubectl in the terminal."""

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


KUBE_LAB = {"image": "lab-base", "memory": 512 * 2**20, "pids": 512, "services": ["kubernetes"]}
POD = (
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n"
    '    image: busybox\n    command: [sleep, "3600"]\n'
)
# the 1-based line of each rendered line holding a lint mark (.cm-lintRange-error), and the
# lines whose lint gutter shows an error marker (the gutter's elements line up with the lines)
ERROR_LINES = """() => {
    const box = document.querySelector('.editor-box:not([hidden])');
    const lines = Array.from(box.querySelectorAll('.cm-content > .cm-line'));
    const marked = lines.flatMap((l, i) => l.querySelector('.cm-lintRange-error') ? [i + 1] : []);
    const tops = lines.map((l) => Math.round(l.getBoundingClientRect().top));
    const gutter = Array.from(box.querySelectorAll('.cm-gutter-lint .cm-gutterElement'))
        .filter((g) => g.querySelector('.cm-lint-marker-error'))
        .map((g) => tops.indexOf(Math.round(g.getBoundingClientRect().top)) + 1);
    return {marked, gutter};
}"""


def test_a_manifest_is_validated_against_the_lab_cluster_as_the_student_types(
    lab_stack: str, runtime_socket: str, page: Any
) -> None:
    student = StudentFactory.create()
    lab = LabFactory.create(title="Manifests", environment=KUBE_LAB)
    StepFactory.create(lab=lab, title="Write a Pod", body="Edit [pod.yaml](editor:pod.yaml), then apply it.")
    start_lab_at_step_one(page, lab_stack, student.username, lab.pk)
    sandbox = LabSession.objects.get(user=student, lab=lab).sandbox_id
    with RuntimeClient(runtime_socket) as rt:
        made = rt.exec(sandbox, ["sh", "-c", 'printf "%s" "$1" > /root/pod.yaml', "sh", POD], timeout=10)
    assert made.exit_code == 0, made.stderr_text

    page.click('.steps-body button.open-in-editor[data-open-in-editor="pod.yaml"]')
    page.wait_for_function(f"() => ({EDITOR_TEXT})().includes('name: web')")
    page.wait_for_selector('#editor-status[data-kind="ok"]')  # the cluster accepts the file as it is
    assert page.evaluate(ERROR_LINES) == {"marked": [], "gutter": []}

    # a typo in a field name on line 8: the cluster's strict decoding refuses it, marked there
    page.click(".editor-box:not([hidden]) .cm-content")
    page.keyboard.press("Control+Home")
    for _ in range(7):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("End")  # line 8, "    image: busybox"
    for _ in range(len(": busybox")):
        page.keyboard.press("ArrowLeft")
    page.keyboard.type("e")  # imagee
    page.wait_for_function(f"() => ({ERROR_LINES})().marked.length > 0")
    assert page.evaluate(ERROR_LINES) == {"marked": [8], "gutter": [8]}
    # the message: on hover, and in the Problems panel reached from the keyboard
    page.hover(".editor-box:not([hidden]) .cm-lintRange-error")
    tooltip = page.wait_for_selector(".cm-tooltip-lint")
    assert 'unknown field "spec.containers[0].imagee"' in tooltip.inner_text()
    page.focus("#editor-problems")
    page.keyboard.press("Enter")
    panel = page.wait_for_selector(".cm-panel-lint")
    assert 'unknown field "spec.containers[0].imagee"' in panel.inner_text()
    assert page.evaluate("document.activeElement.closest('.cm-panel-lint') !== null")  # focus in the list
    page.keyboard.press("Escape")  # closes the panel, back to the text
    page.wait_for_selector(".cm-panel-lint", state="detached")

    # fixed: the mark goes; saved; kubectl apply in the terminal takes the file
    page.click(".editor-box:not([hidden]) .cm-lintRange-error")
    page.keyboard.press("End")
    for _ in range(len(": busybox")):
        page.keyboard.press("ArrowLeft")
    page.keyboard.press("Backspace")
    page.wait_for_function(f"() => ({ERROR_LINES})().marked.length === 0")
    assert page.evaluate(ERROR_LINES) == {"marked": [], "gutter": []}
    page.keyboard.press("Control+s")
    page.wait_for_selector('#editor-status[data-kind="ok"]')
    page.click("#editor-toggle")  # back to the terminal
    type_line(page, "kubectl apply -f /root/pod.yaml")
    wait_screen(page, r"^pod/web created$")

    # the validation created nothing of its own: only the applied Pod is there
    type_line(page, "kubectl get pods -A -o name | wc -l | sed 's/^/pods-/'")
    wait_screen(page, r"^pods-1$")
