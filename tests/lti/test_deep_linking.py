"""Deep linking: an instructor picks a course, module or lab; it goes back to the LMS as an
LtiResourceLink content item, signed with the tool's key, and launching it opens the target."""

from __future__ import annotations

import html
import re
from typing import Any

import jwt
import pytest
from django.test import Client

from lti import keys
from tests.lti.platform import INSTRUCTOR, LEARNER, launch

pytestmark = pytest.mark.django_db

DL = "LtiDeepLinkingRequest"
ITEMS = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"


def _form(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'name="(\w+)"\s+value="([^"]*)"', page)}


def test_an_instructor_picks_a_lab_and_the_lms_gets_a_signed_resource_link(lms: Any, course: Any) -> None:
    client = Client()
    picker = launch(client, lms, lms.claims(sub="t-1", roles=INSTRUCTOR, message=DL))
    assert picker.status_code == 200
    text = picker.content.decode()
    assert course.lab_target in text and "course:k8s" in text
    launch_id = _form(text)["launch_id"]
    answer = client.post("/lti/deep-link/", {"launch_id": launch_id, "target": course.lab_target})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert f'action="{lms.base}/deep-link-return"' in page
    token = _form(page)["JWT"]
    tool_key = next(k for k in keys.jwks()["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"])
    body = jwt.decode(token, jwt.PyJWK(tool_key).key, algorithms=["RS256"], audience=lms.issuer)
    assert body["iss"] == lms.client_id
    assert body["https://purl.imsglobal.org/spec/lti/claim/message_type"] == "LtiDeepLinkingResponse"
    assert body["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] == lms.deployment_id
    assert body["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == "opaque-platform-data"
    [item] = body[ITEMS]
    assert item["type"] == "ltiResourceLink"
    assert item["url"] == "http://testserver/lti/launch/"
    assert item["custom"] == {"target": course.lab_target}
    assert item["lineItem"]["scoreMaximum"] == 2 and item["lineItem"]["resourceId"] == f"lab-{course.lab.pk}"
    # The LMS then launches the link it stored, with its custom parameters: the student lands in the lab.
    student = launch(Client(), lms, lms.claims(sub="s-1", roles=LEARNER, link="dl-1", target=item["custom"]["target"]))
    assert student["Location"] == f"/labs/{course.lab.pk}/"


def test_a_deep_link_answer_is_single_use_and_needs_a_real_target(lms: Any, course: Any) -> None:
    client = Client()
    picker = launch(client, lms, lms.claims(sub="t-2", roles=INSTRUCTOR, message=DL))
    launch_id = _form(picker.content.decode())["launch_id"]
    bogus = client.post("/lti/deep-link/", {"launch_id": launch_id, "target": "lab:k8s/../../etc"})
    assert bogus.status_code == 400 and b"exists" in bogus.content
    assert client.post("/lti/deep-link/", {"launch_id": launch_id, "target": "course:k8s"}).status_code == 200
    again = client.post("/lti/deep-link/", {"launch_id": launch_id, "target": "course:k8s"})
    assert again.status_code == 400
