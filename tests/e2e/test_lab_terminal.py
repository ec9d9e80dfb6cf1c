"""A student's lab in a real browser: Debian's Chromium under Playwright,
against daphne, a real Celery worker, Redis and runtimed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from labs.models import LabSession
from tests.factories import PASSWORD, LabFactory, StepFactory, StudentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREEN = """() => {
  const term = window.kubelab && window.kubelab.terminals[1];
  if (!term) return "";
  const buffer = term.buffer.active, lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state("networkidle")


def wait_connected(page: Any) -> None:
    page.wait_for_selector('#terminal-1[data-state="connected"]', timeout=90_000)


def wait_screen(page: Any, pattern: str, timeout: int = 60_000) -> None:
    page.wait_for_function(
        "([script, pattern]) => new RegExp(pattern, 'm').test(eval(script)())",
        arg=[SCREEN, pattern],
        timeout=timeout,
    )


def type_line(page: Any, text: str) -> None:
    page.click("#terminal-1")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def start_lab_at_step_one(page: Any, base: str, username: str, lab_pk: int) -> None:
    """Log in, start the lab, wait for the shell's prompt, and go from the intro to step 1."""
    login(page, base, username)
    page.goto(f"{base}/labs/{lab_pk}/")
    page.click("#start-lab")
    page.wait_for_url(re.compile(r"/labs/[0-9a-f-]{36}/$"))
    wait_connected(page)
    wait_screen(page, r"[#$] $")
    page.click("[data-step-next]")


@pytest.fixture
def lab_stack(runtime_socket: str, celery_worker: object, asgi_server: str) -> str:
    return asgi_server


def test_student_works_in_a_lab_terminal_and_a_classmate_cannot_see_it(
    lab_stack: str, page: Any, chromium: Any
) -> None:
    base = lab_stack
    student = StudentFactory.create()
    classmate = StudentFactory.create()
    lab = LabFactory.create(title="Terminal basics")
    StepFactory.create(lab=lab, title="Say hello", body="Run:\n\n```sh run\necho hello\n```\n")

    login(page, base, student.username)
    page.goto(f"{base}/labs/{lab.pk}/")
    page.click("#start-lab")
    page.wait_for_url(re.compile(r"/labs/[0-9a-f-]{36}/$"))
    session_url = page.url.split("#", 1)[0]
    wait_connected(page)
    wait_screen(page, r"[#$] $")  # the prompt

    type_line(page, "echo $((6*7))")
    wait_screen(page, r"^42$")

    # A reload finds the same shell: its history holds the command.
    page.reload()
    wait_connected(page)
    type_line(page, "history")
    wait_screen(page, r"echo \$\(\(6\*7\)\)")

    # A flood of output: the page stays usable and the end arrives.
    before = page.inner_text("#font-size")
    type_line(page, "seq 1 2000000")
    page.click("#font-larger")  # the main thread answers while output streams
    assert page.inner_text("#font-size") != before
    wait_screen(page, r"^2000000$", timeout=180_000)
    type_line(page, "echo after-$((1+1))")
    wait_screen(page, r"^after-2$")

    session = LabSession.objects.get(user=student, lab=lab)
    assert session.status == "ready" and session.terminals.get("1")

    # A classmate gets neither the page nor the terminal socket.
    other = chromium.new_context()
    try:
        spy = other.new_page()
        login(spy, base, classmate.username)
        response = spy.goto(session_url)
        assert response.status == 404
        outcome = spy.evaluate(
            """(url) => new Promise((resolve) => {
                const ws = new WebSocket(url);
                let frames = 0;
                ws.onmessage = () => { frames += 1; };
                ws.onclose = (event) => resolve({code: event.code, frames: frames});
            })""",
            session_url.replace("http", "ws", 1).replace("/labs/", "/ws/labs/") + "term/1/",
        )
        # Refused with "not found" before a single byte of the terminal flowed.
        assert outcome == {"code": 4404, "frames": 0}
    finally:
        other.close()


def test_student_builds_an_image_in_the_browser_and_the_check_grades_their_engine(lab_stack: str, page: Any) -> None:
    """The Docker lab end to end: the sandbox's own engine behind the terminal's `docker`,
    and the Celery worker's image check asking that same engine (runtimed's host socket)."""
    from tests.grader.helpers import ExerciseFactory

    base = lab_stack
    student = StudentFactory.create()
    lab = LabFactory.create(
        title="Build an image",
        environment={"image": "lab-base", "memory": 512 * 2**20, "pids": 512, "services": ["docker"]},
    )
    step = StepFactory.create(lab=lab, title="Build", body="Build `hello:v1`.\n")
    exercise = ExerciseFactory.create(
        step=step,
        title="hello:v1 says hi",
        checks=[{"type": "image", "name": "hello:v1 runs echo hi", "image": "hello:v1", "cmd": ["echo", "hi"]}],
    )

    start_lab_at_step_one(page, base, student.username, lab.pk)
    card = page.locator(f"#exercise-{exercise.pk}")
    card.locator('[data-role="check"]').click()
    page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="failed"]', timeout=60_000)
    assert "no image hello:v1" in card.locator(".check-output").inner_text().lower()

    type_line(page, """printf 'FROM busybox:1.35\\nCMD ["echo", "hi"]\\n' > Dockerfile""")
    type_line(page, "docker build -t hello:v1 . && docker run --rm hello:v1 && echo built-$((1+1))")
    wait_screen(page, r"^Successfully tagged hello:v1$", timeout=120_000)
    wait_screen(page, r"^built-2$", timeout=60_000)
    assert re.search(r"^hi$", page.evaluate(SCREEN), re.M)

    card.locator('[data-role="check"]').click()
    page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="passed"]', timeout=60_000)


def test_student_uses_kubectl_in_the_browser_and_the_check_grades_their_cluster(lab_stack: str, page: Any) -> None:
    """A Kubernetes lab end to end: `kubectl` in the terminal talks to the sandbox's own
    lab cluster, and the Celery worker's kube and rbac checks ask that same cluster
    (through the kubeconfig runtimed hands the grader)."""
    from tests.grader.helpers import ExerciseFactory

    base = lab_stack
    student = StudentFactory.create()
    lab = LabFactory.create(
        title="First contact",
        environment={"image": "lab-base", "memory": 512 * 2**20, "pids": 512, "services": ["kubernetes"]},
    )
    step = StepFactory.create(lab=lab, title="Objects", body="Create the namespace `hello`.\n")
    exercise = ExerciseFactory.create(
        step=step,
        title="hello exists, labelled, and jane may read its pods",
        checks=[
            {
                "type": "kube",
                "kind": "Namespace",
                "name": "hello",
                "expect": [{"path": ".metadata.labels.course", "equals": "intro"}],
            },
            {"type": "rbac", "user": "jane", "verb": "list", "resource": "pods", "namespace": "hello", "allowed": True},
        ],
    )

    start_lab_at_step_one(page, base, student.username, lab.pk)
    card = page.locator(f"#exercise-{exercise.pk}")
    card.locator('[data-role="check"]').click()
    page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="failed"]', timeout=60_000)
    outputs = card.locator(".check-output").all_inner_texts()
    assert outputs == ["There is no Namespace hello.", "jane may not list pods in namespace hello."]

    type_line(page, "kubectl create namespace hello && kubectl label namespace hello course=intro")
    wait_screen(page, r"^namespace/hello labeled$")
    type_line(page, "kubectl create rolebinding jane-views --clusterrole=view --user=jane -n hello")
    wait_screen(page, r"^rolebinding.rbac.authorization.k8s.io/jane-views created$")
    type_line(page, "kubectl auth can-i list pods -n hello --as=jane && echo asked-$((1+1))")
    wait_screen(page, r"^asked-2$")
    assert re.search(r"^yes$", page.evaluate(SCREEN), re.M)

    card.locator('[data-role="check"]').click()
    page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="passed"]', timeout=60_000)
