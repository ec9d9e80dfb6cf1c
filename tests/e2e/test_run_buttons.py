"""The Run button in a real browser: Debian's Chromium under Playwright, against
daphne, a real Celery worker, Redis and runtimed. What the shell receives is the
command as the author wrote it, redirects, heredocs, ``&&`` and entities included
(issue #14: it used to receive ``&gt;`` and ``&amp;&amp;``)."""

from __future__ import annotations

from typing import Any

import pytest

from labs.models import LabSession
from runtime.client import Client as RuntimeClient
from tests.e2e.test_lab_terminal import lab_stack, start_lab_at_step_one, wait_screen
from tests.factories import LabFactory, StepFactory, StudentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

__all__ = ["lab_stack"]  # the fixture, shared with the terminal's e2e tests

NOTES = "a > b && c < d\n&amp; &lt;tag&gt; $HOME \"q\" 'x'\n"
HIGHLIGHTED = f"""mkdir -p /root/t && cat > /root/t/notes.txt <<'EOF'
{NOTES}EOF
test -s /root/t/notes.txt && echo "wrote-$(wc -l < /root/t/notes.txt)-lines"
"""
PLAIN = """printf '%s\\n' 'x<y>z' >> /root/t/notes.txt && echo "plain-$(grep -c 'x<y>z' /root/t/notes.txt)-ok"
"""
STEP = f"""Write the notes:

```bash run
{HIGHLIGHTED}```

Then add a line:

```run
{PLAIN}```
"""


def test_run_buttons_send_redirects_heredocs_and_ampersands_as_written(
    lab_stack: str, page: Any, runtime_socket: str
) -> None:
    student = StudentFactory.create()
    lab = LabFactory.create(title="Run buttons")
    StepFactory.create(lab=lab, title="Notes", body=STEP)

    start_lab_at_step_one(page, lab_stack, student.username, lab.pk)
    step = page.locator('article[data-step="1"]')
    # What the page shows, and what the button reads (textContent), is the fence's text.
    assert step.locator('.codeblock[data-language="bash"] code').text_content() == HIGHLIGHTED
    assert step.locator('.codeblock[data-language=""] code').text_content() == PLAIN

    step.locator('.codeblock[data-language="bash"] .code-run').click()
    wait_screen(page, r"^wrote-2-lines$")
    step.locator('.codeblock[data-language=""] .code-run').click()
    wait_screen(page, r"^plain-1-ok$")

    session = LabSession.objects.get(user=student, lab=lab)
    with RuntimeClient(runtime_socket) as rt:
        result = rt.exec(session.sandbox_id, ["cat", "/root/t/notes.txt"], timeout=10)
    assert result.stdout_text == NOTES + "x<y>z\n"
