"""Messages from the live class view in Chromium (issue #18): the instructor picks a student
with the keyboard and sends a hint; it appears on that student's open lab page (another
browser context, over the events socket) and nowhere else; a broadcast reaches the whole
class, and a student who was not in a lab sees it when they open one; the student dismisses
with the keyboard and the message stays gone after a reload.

daphne serves both pages and carries the push over the real channel layer (Redis). The
sandboxes are made up: the lab page's events socket, not a terminal, is what is tested.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from courses.models import ClassMessage
from labs.models import LabSession
from tests.e2e.test_lab_terminal import login
from tests.factories import CourseFactory, InstructorFactory, LabFactory, ModuleFactory, StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> try `kubectl get pods -A`'


def _in_lab(user: Any, lab: Any) -> LabSession:
    now = timezone.now()
    return LabSession.objects.create(
        user=user,
        lab=lab,
        status=LabSession.Status.READY,
        sandbox_id="sb-e2e-none",
        created_at=now,
        ready_at=now,
        expires_at=now + timedelta(hours=1),
    )


def _open_lab(chromium: Any, base: str, user: Any, session: LabSession) -> Any:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    login(page, base, user.username)
    page.goto(f"{base}/labs/{session.pk}/")
    page.wait_for_selector('#lab-app[data-events="open"]', timeout=20_000)
    return page


def test_a_hint_and_a_broadcast_reach_the_students_lab_pages_live(
    asgi_server: str, page: Any, chromium: Any, tmp_path: Any
) -> None:
    base = asgi_server
    course = CourseFactory.create()
    lab = LabFactory.create(module=ModuleFactory.create(course=course), title="Pods")
    ExerciseFactory.create(step=StepFactory.create(lab=lab, order=1), title="Make a pod")
    teacher = InstructorFactory.create(first_name="Grace", last_name="Hopper")
    course.instructors.add(teacher)
    ada = StudentFactory.create(username="ada")
    bob = StudentFactory.create(username="bob")
    late = StudentFactory.create(username="late")  # in the class, not in a lab yet
    ada_page = _open_lab(chromium, base, ada, _in_lab(ada, lab))
    bob_page = _open_lab(chromium, base, bob, _in_lab(bob, lab))
    try:
        assert ada_page.locator("#class-messages").is_hidden()

        login(page, base, teacher.username)
        page.goto(f"{base}/instructor/courses/{course.slug}/live/")
        # Pick Ada from the "In a lab now" table with the keyboard: focus moves to the text box.
        button = page.locator(f'[data-testid="in-lab"] tr[data-student="ada"] [data-message-to="{ada.pk}"]')
        button.focus()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "message-text"
        assert page.locator("#message-to").input_value() == str(ada.pk)
        page.keyboard.type(XSS)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "message-send"
        page.keyboard.press("Enter")
        page.wait_for_selector("#class-message-status:has-text('Sent to 1 student.')", timeout=20_000)
        assert page.locator("#message-text").input_value() == ""

        # Ada's page shows it without a reload, as text; Bob's shows nothing.
        item = ada_page.locator("#class-message-list .class-message")
        item.first.wait_for(timeout=20_000)
        assert item.count() == 1
        assert item.first.locator(".class-message-text").text_content() == XSS
        assert "Grace Hopper" in (item.first.locator(".class-message-meta").text_content() or "")
        assert ada_page.locator("#class-message-list img, #class-message-list script").count() == 0
        assert ada_page.evaluate("window.pwned === undefined")
        # announced to a screen reader by a live region that was in the page before
        assert ada_page.locator("#class-messages-announce").text_content() == f"New message from Grace Hopper: {XSS}"
        ada_page.screenshot(path=str(tmp_path / "lab-page-message.png"))

        # A broadcast: both open pages, and the latecomer's first lab page.
        page.locator("#message-to").select_option("all")
        page.fill("#message-text", "Break in five minutes.")
        page.click("#message-send")
        page.wait_for_selector("#class-message-status:has-text('Sent to 3 students.')", timeout=20_000)
        for student_page in (ada_page, bob_page):
            student_page.wait_for_selector(
                "#class-message-list .class-message-text:has-text('Break in five minutes.')", timeout=20_000
            )
        assert bob_page.locator("#class-message-list .class-message").count() == 1  # not Ada's hint
        assert "to the class" in (bob_page.locator(".class-message-meta").text_content() or "")
        late_page = _open_lab(chromium, base, late, _in_lab(late, lab))
        assert late_page.locator("#class-message-list .class-message-text").all_text_contents() == [
            "Break in five minutes."
        ]
        late_page.context.close()

        # Ada dismisses the hint with the keyboard; focus moves to the next message's button.
        hint = ada_page.locator("#class-message-list .class-message").first
        hint.locator("[data-dismiss]").focus()
        ada_page.keyboard.press("Enter")
        ada_page.wait_for_function(
            "document.querySelectorAll('#class-message-list .class-message').length === 1", timeout=20_000
        )
        assert ada_page.evaluate("document.activeElement.closest('.class-message') !== null")
        assert ClassMessage.objects.get(recipient=ada, broadcast=False).read_at is not None
        ada_page.reload()
        ada_page.wait_for_selector('#lab-app[data-events="open"]', timeout=20_000)
        assert ada_page.locator("#class-message-list .class-message-text").all_text_contents() == [
            "Break in five minutes."
        ]
    finally:
        ada_page.context.close()
        bob_page.context.close()
