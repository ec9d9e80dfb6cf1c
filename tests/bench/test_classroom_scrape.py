"""bench/classroom.py reads the CSRF token and flash messages off our real pages with an HTML parser."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
from django.contrib.messages import constants
from django.contrib.messages.storage.base import Message
from django.template.loader import render_to_string
from django.test import Client

pytestmark = pytest.mark.django_db

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def classroom(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # the bench imports its _common as a sibling
    return importlib.import_module("classroom")


def test_reads_the_login_forms_csrf_token(classroom: ModuleType, client: Client) -> None:
    page = client.get("/accounts/login/").content.decode()
    token = classroom.PageScrape.of(page).csrf_token
    assert len(token) >= 32 and token in page


def test_reads_the_flash_messages_text(classroom: ModuleType) -> None:
    messages = [
        Message(constants.ERROR, "You already have 2 labs running: stop one first."),
        Message(constants.INFO, "Tom & Jerry <b>"),
    ]
    page = render_to_string("base.html", {"messages": messages})
    assert classroom.PageScrape.of(page).messages == [
        "You already have 2 labs running: stop one first.",
        "Tom & Jerry <b>",
    ]
    assert classroom.PageScrape.of(render_to_string("base.html", {})).messages == []
