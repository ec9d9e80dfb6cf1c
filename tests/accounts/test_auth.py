"""Sign-up, log-in, log-out and passwords, through the Django test client."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from accounts.roles import is_instructor, is_student
from tests.factories import PASSWORD, StudentFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-much-longer-new-passphrase"


def _logged_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.filter(pk=user_id).first() if user_id else None


def test_signup_creates_a_student_and_logs_in(client: Client) -> None:
    response = client.post(
        "/accounts/signup/",
        {
            "username": "ada",
            "email": "ada@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    user = User.objects.get(username="ada")
    assert user.email == "ada@example.com"
    assert user.check_password(PASSWORD)
    assert is_student(user)
    assert not is_instructor(user)
    assert not user.is_staff
    assert _logged_in_user(client) == user
    page = client.get("/")
    assert "Welcome, ada!" in page.content.decode()


def test_signup_follows_a_safe_next_but_not_an_offsite_one(client: Client) -> None:
    form = {"email": "b@example.com", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post("/accounts/signup/?next=/progress/", {**form, "username": "b"})
    assert response["Location"] == "/progress/"
    client.logout()
    form["email"] = "c@example.com"
    response = client.post("/accounts/signup/", {**form, "username": "c", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_signup_rejects_a_taken_username_or_email_and_a_weak_password(client: Client) -> None:
    StudentFactory.create(username="taken", email="taken@example.com")
    response = client.post(
        "/accounts/signup/",
        {
            "username": "Taken",
            "email": "new@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "new",
            "email": "TAKEN@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert "An account with this e-mail address already exists." in response.content.decode()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "new",
            "email": "new@example.com",
            "password1": "12345678",
            "password2": "12345678",
        },
    )
    assert response.status_code == 200
    assert "too common" in response.content.decode()
    assert not User.objects.filter(username__in=["Taken", "new"]).exists()
    assert _logged_in_user(client) is None


def test_closed_signup_is_hidden_and_refused(client: Client, settings: SettingsWrapper) -> None:
    settings.SIGNUP_OPEN = False
    home = client.get("/").content.decode()
    assert "/accounts/signup/" not in home
    assert client.get("/accounts/signup/").status_code == 403
    response = client.post(
        "/accounts/signup/",
        {
            "username": "eve",
            "email": "eve@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 403
    assert "Sign-up is closed" in response.content.decode()
    assert not User.objects.filter(username="eve").exists()


def test_open_signup_is_linked_from_the_navigation(client: Client, settings: SettingsWrapper) -> None:
    settings.SIGNUP_OPEN = True
    assert 'href="/accounts/signup/"' in client.get("/").content.decode()


def test_login_and_post_logout(client: Client) -> None:
    user = StudentFactory.create()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()

    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _logged_in_user(client) == user
    home = client.get("/").content.decode()
    assert user.username in home
    assert 'action="/accounts/logout/"' in home

    # A link (GET) cannot log anyone out.
    assert client.get("/accounts/logout/").status_code == 405
    assert _logged_in_user(client) == user

    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert _logged_in_user(client) is None
    assert "You are logged out." in client.get("/").content.decode()


def test_login_with_a_wrong_password_fails(client: Client) -> None:
    user = StudentFactory.create()
    response = client.post("/accounts/login/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert _logged_in_user(client) is None


def test_login_redirects_to_next(client: Client) -> None:
    user = StudentFactory.create()
    response = client.post(
        "/accounts/login/",
        {"username": user.username, "password": PASSWORD, "next": "/progress/"},
    )
    assert response["Location"] == "/progress/"


def test_logout_needs_csrf(client: Client) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    user = StudentFactory.create()
    csrf_client.force_login(user)
    assert csrf_client.post("/accounts/logout/").status_code == 403
    assert _logged_in_user(csrf_client) == user


def test_password_change(client: Client) -> None:
    user = StudentFactory.create()
    client.force_login(user)
    assert client.get("/accounts/password/change/").status_code == 200
    response = client.post(
        "/accounts/password/change/",
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.check_password(PASSWORD)

    response = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # The session survives the change (update_session_auth_hash).
    assert _logged_in_user(client) == user


def test_password_change_needs_login(client: Client) -> None:
    response = client.get("/accounts/password/change/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_password_reset_mails_a_link_that_sets_a_new_password(client: Client, settings: SettingsWrapper) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_NAME = "TestLab"
    user = StudentFactory.create(email="reset@example.com")

    response = client.post("/accounts/password/reset/", {"email": "reset@example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["reset@example.com"]
    assert message.subject == "Reset your TestLab password"
    match = re.search(r"http://testserver(/accounts/password/reset/\S+/)", str(message.body))
    assert match, message.body

    # The link redirects to a token-less URL that shows the form.
    response = client.get(match.group(1), follow=True)
    assert response.status_code == 200
    assert response.context["validlink"]
    form_url = response.redirect_chain[-1][0]
    response = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/done/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)

    # Used once, the link is dead.
    response = client.get(match.group(1), follow=True)
    assert not response.context["validlink"]


def test_password_reset_for_an_unknown_address_sends_nothing(client: Client, settings: SettingsWrapper) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    # Same answer as for a known address: no account enumeration.
    assert response.status_code == 302
    assert mail.outbox == []
