"""The classic builder with a real Engine inside a real sandbox (runc, overlayfs, idmapped layers).

Each test sends a context tar to ``build()`` as the API layer does, checks the message
stream dockerd 20.10 would send, then looks at what was built: the image config, its
history and layers, and the files a container of the image sees.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.dockerapi.build.builder import BuildParams, StepFailed, build
from runtime.dockerapi.engine import Engine
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on, output, run

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 45


@pytest.fixture(scope="module")
def sb() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG) as s:
        yield s


@pytest.fixture(scope="module")
def eng(sb: DockerSandbox) -> Iterator[Engine]:
    with engine_on(sb) as e:
        yield e


Files = dict[str, bytes | tuple[bytes, int]]


def context(files: Files, *, gz: bool = False) -> io.BytesIO:
    """A build context tar as the docker CLI sends it (files owned by uid 1000)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, spec in files.items():
            data, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 1000, 1000
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return io.BytesIO(gzip.compress(raw) if gz else raw)


class Result:
    def __init__(self, image_id: str, messages: list[dict[str, Any]]) -> None:
        self.id = image_id
        self.messages = messages

    @property
    def text(self) -> str:
        return "".join(m.get("stream", "") for m in self.messages)


def do_build(eng: Engine, files: Files, **params: Any) -> Result:
    messages: list[dict[str, Any]] = []
    image_id = build(eng, context(files, gz=params.pop("gz", False)), BuildParams(**params), messages.append)
    return Result(image_id, messages)


def failing_build(eng: Engine, files: Files, **params: Any) -> tuple[errors.RuntimeError, list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = []
    with pytest.raises(errors.RuntimeError) as exc:
        build(eng, context(files), BuildParams(**params), messages.append)
    return exc.value, messages


def sh(eng: Engine, image: str, script: str) -> str:
    cid, code = run(eng, {"Image": image, "Entrypoint": ["sh", "-c"], "Cmd": [script]})
    out, err = output(eng, cid)
    eng.remove(cid, force=True)
    assert code == 0, err
    return out


# -- a whole Dockerfile ----------------------------------------------------------------------


GREET = b"""FROM busybox
LABEL org.example.course="docker 101" stage=dev
ENV GREETING=Hello NAME="wide world"
ARG UNUSED_DEFAULT=1
WORKDIR /app
COPY greet.sh ./
RUN chmod +x greet.sh && echo app:x:1001:1001::/app:/bin/sh >> /etc/passwd && echo "$GREETING" > built.txt
EXPOSE 8080 9000-9001/udp
USER app
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD ./greet.sh
ENTRYPOINT ["./greet.sh"]
CMD ["--loud"]
"""


def test_build_streams_docker_messages_and_records_config_and_history(eng: Engine) -> None:
    files: Files = {"Dockerfile": GREET, "greet.sh": (b'#!/bin/sh\necho "$GREETING, $NAME $*"\n', 0o755)}
    r = do_build(eng, files, tags=["greet"], nocache=True)
    lines = r.text.splitlines()
    assert lines[0] == "Step 1/14 : FROM busybox"
    assert lines[1].startswith(" ---> ") and len(lines[1]) == 6 + 12
    assert 'Step 2/14 : LABEL org.example.course="docker 101" stage=dev' in lines
    assert any(line.startswith(" ---> Running in ") for line in lines)
    assert any(line.startswith("Removing intermediate container ") for line in lines)
    assert lines[-2:] == [f"Successfully built {r.id[7:19]}", "Successfully tagged greet:latest"]
    assert {"aux": {"ID": r.id}} in r.messages

    img = eng.store.resolve("greet:latest")
    assert img.id == r.id
    cfg = img.config["config"]
    assert cfg["Env"][-2:] == ["GREETING=Hello", "NAME=wide world"]
    assert cfg["WorkingDir"] == "/app"
    assert cfg["User"] == "app"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}}
    assert cfg["Labels"] == {"org.example.course": "docker 101", "stage": "dev"}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "./greet.sh"], "Interval": 30 * 10**9, "Retries": 2}
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["./greet.sh"], ["--loud"])
    assert not any(e.startswith("UNUSED_DEFAULT") for e in cfg["Env"])  # ARGs do not persist

    base = eng.store.resolve("busybox")
    history = img.config["history"][len(base.config["history"]) :]
    assert [h["created_by"] for h in history] == [
        "/bin/sh -c #(nop)  LABEL org.example.course=docker 101 stage=dev",
        "/bin/sh -c #(nop)  ENV GREETING=Hello NAME=wide world",
        "/bin/sh -c #(nop)  ARG UNUSED_DEFAULT=1",
        "/bin/sh -c #(nop) WORKDIR /app",
        history[4]["created_by"],
        "|1 UNUSED_DEFAULT=1 /bin/sh -c chmod +x greet.sh && echo app:x:1001:1001::/app:/bin/sh >> /etc/passwd "
        '&& echo "$GREETING" > built.txt',
        "/bin/sh -c #(nop)  EXPOSE 8080 9000-9001/udp",
        "/bin/sh -c #(nop)  USER app",
        "/bin/sh -c #(nop)  VOLUME [/data]",
        "/bin/sh -c #(nop)  STOPSIGNAL SIGINT",
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "./greet.sh"] "30s" "0s" "0s" \'\\x02\'}',
        '/bin/sh -c #(nop)  ENTRYPOINT ["./greet.sh"]',
        '/bin/sh -c #(nop)  CMD ["--loud"]',
    ]
    assert history[4]["created_by"].startswith("/bin/sh -c #(nop) COPY file:")
    assert history[4]["created_by"].endswith(" in ./ ")
    # only WORKDIR (a new dir), COPY and RUN add layers; the rest are empty_layer rows
    assert [bool(h.get("empty_layer")) for h in history] == [
        True, True, True, False, False, False, True, True, True, True, True, True, True,
    ]  # fmt: skip
    assert len(img.layers) == len(base.layers) + 3
    assert img.config["container_config"]["Cmd"] == ["/bin/sh", "-c", "#(nop) ", 'CMD ["--loud"]']

    cid, code = run(eng, {"Image": "greet"})
    assert code == 0
    assert output(eng, cid)[0] == "Hello, wide world --loud\n"
    eng.remove(cid, force=True)
    assert sh(eng, "greet", "cat /app/built.txt; id -u; stat -c '%u:%g %a' /app/greet.sh") == "Hello\n1001\n0:0 755\n"


def test_copied_files_are_owned_by_the_sandbox_range_on_the_host(eng: Engine, sb: DockerSandbox) -> None:
    files: Files = {
        "Dockerfile": (
            b"FROM busybox\nRUN echo app:x:1234:1234::/:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group\n"
            b"COPY --chown=app a.txt /srv/owned/\nCOPY b.txt /srv/\n"
        ),
        "a.txt": b"a",
        "b.txt": (b"b", 0o600),
    }
    r = do_build(eng, files)
    img = eng.store.resolve(r.id)
    base = sb.ctx.uid_base
    owned = img.layers[-2].path / "srv/owned/a.txt"
    plain = img.layers[-1].path / "srv/b.txt"
    assert (owned.stat().st_uid, owned.stat().st_gid) == (base + 1234, base + 1234)
    assert (plain.stat().st_uid, plain.stat().st_gid, plain.stat().st_mode & 0o777) == (base, base, 0o600)
    # /srv did not exist in busybox: the --chown COPY created it for its user (as dockerd does),
    # and the next COPY's layer carries it up with that owner; /srv/owned is new and 0755
    assert (img.layers[-2].path / "srv").stat().st_uid == base + 1234
    assert (img.layers[-1].path / "srv").stat().st_uid == base + 1234
    assert (img.layers[-2].path / "srv/owned").stat().st_mode & 0o777 == 0o755
    assert sh(eng, r.id, "stat -c '%U %u:%g' /srv/owned/a.txt; stat -c '%u %a' /srv/b.txt") == "app 1234:1234\n0 600\n"
    err, _ = failing_build(eng, {"Dockerfile": b"FROM busybox\nCOPY --chown=nobody:nogroupx a /\n", "a": b""})
    assert str(err) == (
        "unable to convert uid/gid chown string to host mapping: can't find gid for group nogroupx: "
        "no such group: nogroupx"
    )


# -- cache -----------------------------------------------------------------------------------


CACHED = b"""FROM busybox
ENV A=1
COPY one.txt /one.txt
RUN cat /one.txt > /copy.txt
COPY two.txt /two.txt
CMD ["cat", "/copy.txt"]
"""


def test_rebuild_uses_cache_for_every_step_and_a_changed_file_invalidates_from_its_step(eng: Engine) -> None:
    files: Files = {"Dockerfile": CACHED, "one.txt": b"first\n", "two.txt": b"2\n"}
    first = do_build(eng, files, tags=["cached:v1"])
    again = do_build(eng, files, tags=["cached:v1"])
    assert again.id == first.id
    assert again.text.count(" ---> Using cache") == 5  # every step after FROM
    assert "Running in" not in again.text

    changed = do_build(eng, {**files, "one.txt": b"second\n"}, tags=["cached:v2"])
    steps = changed.text.split("Step ")[1:]
    assert [" ---> Using cache" in s for s in steps] == [False, True, False, False, False, False]
    assert changed.id != first.id
    assert sh(eng, "cached:v2", "cat /copy.txt") == "second\n"
    assert sh(eng, "cached:v1", "cat /copy.txt") == "first\n"

    # the file's mode is part of the key, its mtime is not
    moded = do_build(eng, {**files, "two.txt": (b"2\n", 0o600)})
    assert [" ---> Using cache" in s for s in moded.text.split("Step ")[1:]] == [False, True, True, True, False, False]

    nocache = do_build(eng, files, nocache=True)
    assert "Using cache" not in nocache.text
    assert nocache.id != first.id


def test_build_args_are_part_of_the_run_key_and_env(eng: Engine) -> None:
    df = b"""ARG REPO=busy
ARG BASE=${REPO}box
FROM ${BASE}
ARG VERSION=1.0
ARG EMPTY
ENV FIXED=f
RUN echo "v=$VERSION e=$EMPTY fixed=$FIXED" > /v.txt
"""
    r1 = do_build(eng, {"Dockerfile": df})
    assert sh(eng, r1.id, "cat /v.txt") == "v=1.0 e= fixed=f\n"
    img = eng.store.resolve(r1.id)
    assert img.config["container_config"]["Cmd"][:2] == ["|1", "VERSION=1.0"]
    assert not any(e.startswith("VERSION=") for e in img.config["config"]["Env"])

    r2 = do_build(eng, {"Dockerfile": df}, buildargs={"VERSION": "2.0", "EMPTY": "x", "NOPE": "1"})
    assert sh(eng, r2.id, "cat /v.txt") == "v=2.0 e=x fixed=f\n"
    steps = r2.text.split("Step ")[1:]
    assert " ---> Using cache" not in steps[-1]  # a build-arg changed the RUN key
    assert "[Warning] One or more build-args [NOPE] were not consumed\n" in r2.text
    assert (
        eng.store.resolve(r2.id)
        .config["history"][-1]["created_by"]
        .startswith("|2 EMPTY=x VERSION=2.0 /bin/sh -c echo")
    )
    again = do_build(eng, {"Dockerfile": df}, buildargs={"VERSION": "2.0", "EMPTY": "x"})
    assert again.id == r2.id


# -- multi-stage -----------------------------------------------------------------------------


MULTI = b"""FROM busybox AS build
WORKDIR /src
COPY main.sh .
RUN mkdir /out && sed 's/NAME/world/' main.sh > /out/app.sh && chmod 755 /out/app.sh

FROM busybox AS test
COPY --from=build /out/app.sh /bin/app
RUN app | grep -q world && echo tested > /tested

FROM busybox
COPY --from=0 /out /usr/local/bin/
COPY --from=build /src/main.sh /
CMD ["app.sh"]
"""


def test_multi_stage_copy_from_and_target(eng: Engine) -> None:
    files: Files = {"Dockerfile": MULTI, "main.sh": b"#!/bin/sh\necho hello NAME\n"}
    full = do_build(eng, files, tags=["multi"])
    assert [m["aux"]["ID"] for m in full.messages if "aux" in m][-1] == full.id
    assert sum(1 for m in full.messages if "aux" in m) == 3  # one per stage
    assert 'Step 11/11 : CMD ["app.sh"]' in full.text
    assert sh(eng, "multi", "app.sh; ls /tested 2>&1 || true; cat /main.sh") == (
        "hello world\nls: /tested: No such file or directory\n#!/bin/sh\necho hello NAME\n"
    )
    busybox_layers = len(eng.store.resolve("busybox").layers)
    assert len(eng.store.resolve("multi").layers) == busybox_layers + 2

    target = do_build(eng, files, target="test", tags=["multi:test"])
    assert "Step 7/7 : RUN app | grep -q world" in target.text  # stages after the target are cut
    assert target.text.count("Using cache") == 5  # everything was built before
    assert sh(eng, "multi:test", "cat /tested") == "tested\n"
    err, _ = failing_build(eng, files, target="nope")
    assert str(err) == "failed to reach build target nope in Dockerfile"


# -- context handling ------------------------------------------------------------------------


def test_dockerignore_is_honoured_by_copy_dot(eng: Engine) -> None:
    files: Files = {
        "Dockerfile": b"FROM busybox\nWORKDIR /app\nCOPY . .\nRUN find . | sort\n",
        ".dockerignore": b"# ignore\n*.log\nsecrets\n!secrets/public.pem\n**/node_modules\nDockerfile\n",
        "app.py": b"print()\n",
        "debug.log": b"x",
        "secrets/key": b"k",
        "secrets/public.pem": b"p",
        "web/node_modules/lib.js": b"j",
        "web/index.js": b"i",
    }
    r = do_build(eng, files)
    listed = sh(eng, r.id, "cd /app && find . -type f | sort").split()
    assert listed == ["./.dockerignore", "./app.py", "./secrets/public.pem", "./web/index.js"]


def test_dockerfile_location_and_missing_files(eng: Engine) -> None:
    r = do_build(
        eng, {"build/Dockerfile.dev": b"FROM busybox\nCOPY a.txt /\n", "a.txt": b"a"}, dockerfile="build/Dockerfile.dev"
    )
    assert sh(eng, r.id, "cat /a.txt") == "a"
    err, messages = failing_build(eng, {"Dockerfile": b"FROM busybox\n"}, dockerfile="Dockerfile.slow")
    assert str(err) == "Cannot locate specified Dockerfile: Dockerfile.slow"
    assert messages[-1] == {
        "errorDetail": {"message": "Cannot locate specified Dockerfile: Dockerfile.slow"},
        "error": "Cannot locate specified Dockerfile: Dockerfile.slow",
    }
    err, _ = failing_build(eng, {"Dockerfile": b"FROM busybox\nCOPY x /x\n", ".dockerignore": b"x\n", "x": b""})
    assert str(err) == (
        "COPY failed: file not found in build context or excluded by .dockerignore: stat x: file does not exist"
    )
    err, _ = failing_build(eng, {"Dockerfile": b"FROM busybox\nRUNN true\n"})
    assert isinstance(err, errors.BadRequest)
    assert str(err) == "Dockerfile parse error line 2: unknown instruction: RUNN"
    err, _ = failing_build(eng, {"Dockerfile": b"FROM busybox\nCOPY --chmod=755 a /\n", "a": b""})
    assert str(err).startswith("the --chmod option requires BuildKit.")
    err, _ = failing_build(eng, {"Dockerfile": b"FROM busybox\nADD https://example.com/x.tgz /\n"})
    assert "no internet access" in str(err)


def test_copy_semantics_wildcards_dirs_and_destinations(eng: Engine) -> None:
    files: Files = {
        "Dockerfile": (
            b"FROM busybox\nWORKDIR /w\nCOPY *.txt dir/\nCOPY conf /etc/myconf\nCOPY single.cfg renamed.cfg\n"
            b"COPY single.cfg /bin\n"
        ),
        "a.txt": b"a",
        "b.txt": b"b",
        "conf/x.conf": b"x",
        "conf/sub/y.conf": b"y",
        "single.cfg": b"s",
    }
    r = do_build(eng, files)
    out = sh(eng, r.id, "ls /w/dir /etc/myconf /etc/myconf/sub; cat /w/renamed.cfg /bin/single.cfg")
    assert out == "/etc/myconf:\nsub\nx.conf\n\n/etc/myconf/sub:\ny.conf\n\n/w/dir:\na.txt\nb.txt\ns" + "s"
    err, _ = failing_build(eng, {"Dockerfile": b"FROM busybox\nCOPY a b /nodir\n", "a": b"", "b": b""})
    assert (
        str(err)
        == "When using COPY with more than one source file, the destination must be a directory and end with a /"
    )


def test_add_extracts_a_local_tar_gz(eng: Engine) -> None:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        for name, data, uid in (("pkg/bin/tool", b"#!/bin/sh\necho tool\n", 0), ("pkg/README", b"read me", 42)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o755, uid, uid
            tf.addfile(info, io.BytesIO(data))
    files: Files = {
        "Dockerfile": b"FROM busybox\nADD pkg.tar.gz /opt/\nADD plain.txt /opt/plain.txt\nCOPY pkg.tar.gz /raw/\n",
        "pkg.tar.gz": inner.getvalue(),
        "plain.txt": b"plain",
    }
    r = do_build(eng, files)
    out = sh(eng, r.id, "/opt/pkg/bin/tool; stat -c %u /opt/pkg/README; cat /opt/plain.txt; ls /raw")
    assert out == "tool\n42\nplainpkg.tar.gz\n"


# -- failures and output options -------------------------------------------------------------


def test_failing_run_stops_with_dockerds_message(eng: Engine) -> None:
    df = b"FROM busybox\nRUN echo before\nRUN echo oops >&2; false\nRUN echo never\n"
    err, messages = failing_build(eng, {"Dockerfile": df})
    assert isinstance(err, StepFailed)
    message = "The command '/bin/sh -c echo oops >&2; false' returned a non-zero code: 1"
    assert messages[-1] == {"errorDetail": {"message": message, "code": 1}, "error": message}
    text = "".join(m.get("stream", "") for m in messages)
    assert "oops\n" in text and "Step 4/4" not in text
    err, _ = failing_build(eng, {"Dockerfile": b'FROM busybox\nRUN ["sh", "-c", "exit 3"]\n'})
    assert str(err) == "The command 'sh -c exit 3' returned a non-zero code: 3"


def test_quiet_sends_only_the_id_and_labels_become_a_step(eng: Engine) -> None:
    files: Files = {"Dockerfile": b"FROM busybox\nRUN echo noisy\n"}
    r = do_build(eng, files, quiet=True, labels={"b": "2", "a": "x y"}, nocache=True)
    streams = [m["stream"] for m in r.messages if "stream" in m]
    assert streams == [r.id + "\n"]
    assert eng.store.resolve(r.id).config["config"]["Labels"] == {"a": "x y", "b": "2"}
    loud = do_build(eng, files, labels={"b": "2", "a": "x y"})
    assert "Step 3/3 : LABEL \"a\"='x y' \"b\"='2'\n" in loud.text
    assert loud.id == r.id  # the cache is shared with the quiet build

    kept = do_build(eng, files, rm=False, nocache=True)
    assert "Removing intermediate container" not in kept.text


def test_onbuild_triggers_run_in_the_child_build(eng: Engine) -> None:
    parent = do_build(eng, {"Dockerfile": b"FROM busybox\nONBUILD COPY hello /hello\n"}, tags=["onbuild-base"])
    assert eng.store.resolve(parent.id).config["config"]["OnBuild"] == ["COPY hello /hello"]
    child = do_build(eng, {"Dockerfile": b"FROM onbuild-base\nCMD cat /hello\n", "hello": b"triggered"})
    assert "# Executing 1 build trigger\n" in child.text
    assert eng.store.resolve(child.id).config["config"]["OnBuild"] is None
    assert sh(eng, child.id, "cat /hello") == "triggered"


def test_only_steps_that_change_files_add_layers(eng: Engine) -> None:
    df = b"FROM busybox\nRUN true\nWORKDIR /etc\nWORKDIR /new/dir\nRUN echo x > /tmp/x\n"
    r = do_build(eng, {"Dockerfile": df})
    img = eng.store.resolve(r.id)
    base = eng.store.resolve("busybox")
    rows = img.config["history"][len(base.config["history"]) :]
    assert [bool(h.get("empty_layer")) for h in rows] == [True, True, False, False]
    assert len(img.layers) == len(base.layers) + 2
    assert sorted(p.name for p in img.layers[-2].path.iterdir()) == ["new"]
    assert sh(eng, r.id, "pwd; cat /tmp/x") == "/new/dir\nx\n"


def test_from_scratch_and_shell_instruction(eng: Engine, tmp_path: Path) -> None:
    r = do_build(eng, {"Dockerfile": b"FROM scratch\nCOPY f /f\nLABEL x=y\n", "f": b"data"})
    img = eng.store.resolve(r.id)
    assert len(img.layers) == 1
    assert (img.layers[0].path / "f").read_bytes() == b"data"
    assert r.text.startswith("Step 1/3 : FROM scratch\n ---> \n")
    s = do_build(eng, {"Dockerfile": b'FROM busybox\nSHELL ["/bin/sh", "-ec"]\nRUN echo $0-$-\n'})
    assert "/bin/sh-" in s.text
    assert eng.store.resolve(s.id).config["config"]["Shell"] == ["/bin/sh", "-ec"]
    assert os.path.isdir(tmp_path)
