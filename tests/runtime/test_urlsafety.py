"""runtime/urlsafety.py: which preview paths name something inside the app, and which could not."""

from __future__ import annotations

import itertools

import pytest

from runtime.urlsafety import UnsafePath, app_path, query_string

SAFE = [
    "",
    "index.html",
    "api/v1/items",
    "static/app.js",
    "a/b/",
    "a//b",  # an empty segment stays inside the app
    "caf%C3%A9",  # UTF-8, encoded
    "with%20space",
    "...",  # not a dot segment
    "..../x",
    "..;/x",  # Tomcat's path parameter trick: a plain segment to every other server
    "a/b:c",
    "~user/",
    "a%3Fb",  # an encoded '?' is part of the path
    "x.y/z.w",
]

TRAVERSALS = [
    "..",
    "../",
    "../x",
    "a/../../x",
    "a/./b",
    ".",
    "%2e%2e/x",
    "%2E%2E/x",
    ".%2e/x",
    "%2e./x",
    "..%2fx",
    "..%2Fx",
    "a%2f..%2f..%2fx",
    "..%5cx",
    "..\\x",
    "a\\b",
    "..%252fx",
    "%252e%252e/x",
    "%25%32%65",
    "%c0%ae%c0%ae/x",
    "%c0%ae%c0%ae%c0%afx",
    "%e0%80%ae%e0%80%ae/x",
    "%c0%2e%c0%2e/x",
    "/x",
    "//evil.example/x",
    "http://runtimed/v1/sandboxes",
    "HTTP://x",
    "unix:/run/x",
    "v1:batch",  # a colon in the first segment makes it a scheme (RFC 3986 §4.2)
    "x%0d%0aHost:%20evil",
    "x\r\nHost: evil",
    "x%00",
    "x\x00",
    "x y",
    "caf\u00e9",
    "x%zz",
    "x%2",
    "x#frag",
    "x?q",
]


@pytest.mark.parametrize("path", SAFE)
def test_paths_inside_the_app_pass_unchanged(path: str) -> None:
    assert app_path(path) == path


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_that_could_leave_the_app_are_refused(path: str) -> None:
    with pytest.raises(UnsafePath):
        app_path(path)


def test_every_encoding_of_dot_dot_slash_at_every_depth_is_refused() -> None:
    dots = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae", "%e0%80%ae%e0%80%ae"]
    slashes = ["/", "%2f", "%2F", "%252f", "\\", "%5c", "%5C", "%c0%af"]
    for dot, slash, depth in itertools.product(dots, slashes, range(1, 5)):
        path = (dot + slash) * depth + "v1/sandboxes"
        with pytest.raises(UnsafePath):
            app_path(path)


def test_a_long_path_is_refused() -> None:
    with pytest.raises(UnsafePath, match="longer"):
        app_path("a/" * 5000)


def test_query_strings_pass_unless_they_could_split_a_request() -> None:
    assert query_string("a=1&b=%2e%2e%2f") == "a=1&b=%2e%2e%2f"
    for bad in ("a=1%0d%0aX: y", "a=\r\n", "a=%00", "a=%0A"):
        with pytest.raises(UnsafePath):
            query_string(bad)
