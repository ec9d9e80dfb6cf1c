"""The lab editor's file access through runtimed (runtime/sandbox/files.py): list, read and
save files under a real sandbox's /root, as its root, and notice changes made meanwhile.

Real runtimed, real runc sandboxes; the sandbox's own shell (exec) is the oracle for what
the files hold. The attacks (links, FIFOs, races, sizes) are in tests/security/test_editor_files.py.
"""

from __future__ import annotations

import pytest

from runtime import errors
from tests.runtime.conftest_daemon import Env


def sh(env: Env, sid: str, script: str) -> str:
    r = env.client.exec(sid, ["sh", "-c", script])
    assert r.exit_code == 0, r.stderr_text
    return r.stdout_text


def test_list_open_edit_save_and_reload_after_an_external_change(runc_env: Env) -> None:
    c = runc_env.client
    sid = runc_env.sandbox()
    sh(
        runc_env,
        sid,
        "mkdir -p /root/app && printf 'kind: Pod\\n' > /root/app/pod.yaml && chmod 640 /root/app/pod.yaml",
    )

    top = c.files_list(sid, "")
    assert {"name": "app", "type": "dir"}.items() <= next(e for e in top["entries"] if e["name"] == "app").items()
    app = c.files_list(sid, "app")
    assert [(e["name"], e["type"], e["size"]) for e in app["entries"]] == [("pod.yaml", "file", 10)]

    opened = c.file_read(sid, "app/pod.yaml")
    assert opened["content"] == "kind: Pod\n"
    saved = c.file_write(sid, "app/pod.yaml", "kind: Pod\nmetadata: {name: web}\n", opened["etag"])
    assert saved["etag"] != opened["etag"]
    # the sandbox sees the new content, still its root's file with the mode it had
    assert sh(runc_env, sid, "cat /root/app/pod.yaml") == "kind: Pod\nmetadata: {name: web}\n"
    assert sh(runc_env, sid, "stat -c '%u:%g %a' /root/app/pod.yaml").strip() == "0:0 640"

    # changed in the terminal: a save based on the old version is refused, nothing lost
    sh(runc_env, sid, "echo '# from the terminal' >> /root/app/pod.yaml")
    with pytest.raises(errors.Conflict, match="changed in the sandbox"):
        c.file_write(sid, "app/pod.yaml", "mine\n", saved["etag"])
    assert sh(runc_env, sid, "tail -n 1 /root/app/pod.yaml") == "# from the terminal\n"
    # reload shows the terminal's version; saving on top of it works, so does an explicit overwrite
    again = c.file_read(sid, "/root/app/pod.yaml")
    assert again["content"].endswith("# from the terminal\n")
    c.file_write(sid, "app/pod.yaml", again["content"] + "spec: {}\n", again["etag"])
    assert sh(runc_env, sid, "tail -n 1 /root/app/pod.yaml") == "spec: {}\n"
    c.file_write(sid, "app/pod.yaml", "overwritten\n", "*")
    assert sh(runc_env, sid, "cat /root/app/pod.yaml") == "overwritten\n"


def test_a_new_file_is_created_once_and_owned_by_the_sandboxs_root(runc_env: Env) -> None:
    c = runc_env.client
    sid = runc_env.sandbox()
    c.file_write(sid, "Dockerfile", "FROM busybox\n", None)
    assert sh(runc_env, sid, "cat /root/Dockerfile; stat -c '%u:%g %a' /root/Dockerfile") == "FROM busybox\n0:0 644\n"
    with pytest.raises(errors.Conflict, match="already exists"):
        c.file_write(sid, "Dockerfile", "FROM alpine\n", None)
    with pytest.raises(errors.BadRequest, match="does not exist"):
        c.file_write(sid, "no/such/dir/f.sh", "x", None)
    # no temporary file is left behind
    assert "kl-save" not in sh(runc_env, sid, "ls -A /root")


def test_a_stopped_or_unknown_sandbox_is_a_clear_error(runc_env: Env) -> None:
    c = runc_env.client
    with pytest.raises(errors.SandboxNotFound):
        c.files_list("no-such-sandbox")
    sid = runc_env.sandbox()
    c.stop_sandbox(sid)
    with pytest.raises(errors.Conflict, match="not running"):
        c.file_read(sid, "x")
