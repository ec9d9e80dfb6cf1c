"""The engine's containers on real runc, inside a real sandbox with the docker service's disk.

Every test drives ``Engine`` directly (the API layer is tested elsewhere) and checks what
happened in the sandbox or on the host: uids, cgroups, nftables, mounts, runc state.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.dockerapi.engine import Engine, Stream
from runtime.dockerapi.images.store import Forbidden
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on, output, run

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 41
SANDBOX_MEMORY = 256 * 2**20


@pytest.fixture(scope="module")
def sb() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG, memory=SANDBOX_MEMORY) as s:
        yield s


@pytest.fixture
def eng(sb: DockerSandbox) -> Iterator[Engine]:
    with engine_on(sb) as e:
        yield e


def read_all(stream: Stream, until: bytes | None = None, timeout: float = 30) -> bytes:
    """Read a stream to its end (or until ``until`` appears)."""
    data = b""
    while True:
        item = stream.read(timeout=timeout)
        if item is None:
            return data
        data += item[1]
        if until is not None and until in data:
            return data


def cgroup_dir(sb: DockerSandbox, controller: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / sb.ctx.cgroup_path.lstrip("/")


def _pids_refused(sb: DockerSandbox, cid: str = "") -> int:
    """How many forks the kernel refused for the pids limit (pids.events "max"), counted in
    the sandbox's cgroup and, with ``cid``, in that container's (below the sandbox's): which of
    the two counts a fork refused at the sandbox's limit depends on the kernel (the forking
    task's cgroup before Linux 6.12's hierarchical events, every level up to the limit after)."""
    total = 0
    dirs = [cgroup_dir(sb, "pids")] + ([cgroup_dir(sb, "pids") / f"docker-{cid[:12]}"] if cid else [])
    for d in dirs:
        with contextlib.suppress(OSError):
            for line in (d / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    total += int(value)
    return total


# -- running, logs, exit codes --------------------------------------------------------------


def test_run_keeps_stdout_and_stderr_apart_and_records_the_exit_code(eng: Engine) -> None:
    cid, code = run(eng, {"Image": "busybox", "Cmd": ["sh", "-c", "echo out; echo err >&2; hostname; exit 3"]})
    assert code == 3
    out, err = output(eng, cid)
    assert out == f"out\n{cid[:12]}\n"
    assert err == "err\n"
    state = eng.inspect(cid)["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 3, False)
    stamped = list(eng.logs(cid, follow=False, stdout=True, stderr=False, timestamps=True, tail=1))
    assert len(stamped) == 1 and stamped[0][1].endswith(cid[:12].encode() + b"\n")
    assert stamped[0][1][:4].isdigit()  # RFC 3339 timestamp first


def test_container_root_is_the_sandbox_root_and_its_cgroup_is_below_the_sandbox(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sleep", "300"]})
    eng.start(cid)
    pid = eng.inspect(cid)["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(sb.ctx.uid_base)] * 4
    procs = (cgroup_dir(sb, "pids") / f"docker-{cid[:12]}" / "cgroup.procs").read_text().split()
    assert str(pid) in procs
    eng.stop(cid, timeout=1)
    assert eng.inspect(cid)["State"]["Running"] is False


def test_follow_logs_end_when_the_container_exits(eng: Engine) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo one; read x; echo two"], "OpenStdin": True})
    eng.start(cid)
    s = eng.attach(cid, stdin=True, stdout=False, stderr=False, logs=False, stream=True)
    got: list[bytes] = []
    follower = threading.Thread(
        target=lambda: got.extend(d for _, d in eng.logs(cid, follow=True, stdout=True, stderr=True))
    )
    follower.start()
    s.write(b"go\n")
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert b"".join(got) == b"one\ntwo\n"


def test_auto_remove_removes_the_container_after_exit(eng: Engine) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": True}})
    eng.start(cid)
    assert eng.wait(cid, condition="removed") == 0
    with pytest.raises(errors.RuntimeError, match="No such container"):
        eng.inspect(cid)


def test_user_and_workdir_follow_dockers_rules(eng: Engine) -> None:
    cid, code = run(
        eng, {"Image": "busybox", "User": "nobody", "WorkingDir": "/made/here", "Cmd": ["sh", "-c", "id -u; pwd"]}
    )
    assert code == 0
    assert output(eng, cid)[0] == "65534\n/made/here\n"
    cid, _ = run(eng, {"Image": "busybox", "User": "1234:5678", "Cmd": ["sh", "-c", "id -u; id -g"]})
    assert output(eng, cid)[0] == "1234\n5678\n"
    cid, _ = eng.create({"Image": "busybox", "User": "nosuchuser", "Cmd": ["true"]})
    with pytest.raises(errors.BadRequest, match="unable to find user nosuchuser"):
        eng.start(cid)


# -- exec, attach, TTY ----------------------------------------------------------------------


def test_exec_runs_in_the_container_with_user_env_and_workdir(eng: Engine) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sleep", "300"], "Env": ["A=from-create"]})
    eng.start(cid)
    eid = eng.exec_create(
        cid,
        {
            "Cmd": ["sh", "-c", "echo $A $B; id -u; pwd; cat /proc/1/cmdline; exit 7"],
            "Env": ["B=from-exec"],
            "User": "nobody",
            "WorkingDir": "/tmp",
            "AttachStdout": True,
            "AttachStderr": True,
        },
    )
    stream = eng.exec_start(eid, detach=False, tty=False)
    assert stream is not None
    assert read_all(stream) == b"from-create from-exec\n65534\n/tmp\nsleep\x00300\x00"
    info = eng.exec_inspect(eid)
    assert (info["Running"], info["ExitCode"], info["ContainerID"]) == (False, 7, cid)


def test_stdin_attach_reaches_cat_and_closing_it_ends_the_container(eng: Engine) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["cat"], "OpenStdin": True, "StdinOnce": True, "AttachStdin": True})
    s = eng.attach(cid, stdin=True, stdout=True, stderr=True, logs=False, stream=True)
    eng.start(cid)
    s.write(b"hello cat\n")
    assert read_all(s, until=b"hello cat\n") == b"hello cat\n"
    s.close_stdin()
    assert eng.wait(cid) == 0
    assert read_all(s) == b""  # the stream ends with the container


def test_tty_container_gets_a_terminal_and_follows_resizes(eng: Engine) -> None:
    cid, _ = eng.create(
        {"Image": "busybox", "Tty": True, "OpenStdin": True, "Cmd": ["sh", "-c", "tty; read x; stty size"]}
    )
    s = eng.attach(cid, stdin=True, stdout=True, stderr=True, logs=False, stream=True)
    assert s.tty
    eng.start(cid)
    assert b"/dev/pts/0" in read_all(s, until=b"/dev/pts/0")
    eng.resize(cid, height=40, width=123)
    s.write(b"go\r")
    assert b"40 123" in read_all(s, until=b"40 123")
    assert eng.wait(cid) == 0
    assert all(st == 1 for st, _ in eng.logs(cid, follow=False, stdout=True, stderr=True))


def test_exec_with_tty(eng: Engine) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sleep", "300"]})
    eng.start(cid)
    eid = eng.exec_create(cid, {"Cmd": ["sh", "-c", "tty; stty size"], "Tty": True, "ConsoleSize": [30, 90]})
    stream = eng.exec_start(eid, detach=False, tty=True)
    assert stream is not None
    data = read_all(stream)
    assert b"/dev/pts/" in data and b"30 90" in data
    assert eng.exec_inspect(eid)["ExitCode"] == 0


# -- limits ---------------------------------------------------------------------------------


def test_container_memory_counts_in_the_sandbox_cgroup(eng: Engine, sb: DockerSandbox) -> None:
    mem = cgroup_dir(sb, "memory")
    before = int((mem / "memory.usage_in_bytes").read_text())
    cid, _ = eng.create(
        {
            "Image": "busybox",
            "Cmd": ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 && echo filled && sleep 300"],
        }
    )
    s = eng.attach(cid, stdin=False, stdout=True, stderr=False, logs=True, stream=True)
    eng.start(cid)
    assert b"filled" in read_all(s, until=b"filled")
    container = int((mem / f"docker-{cid[:12]}" / "memory.usage_in_bytes").read_text())
    sandbox = int((mem / "memory.usage_in_bytes").read_text())
    assert container >= 48 * 2**20
    assert sandbox >= before + 40 * 2**20


def test_container_cannot_use_more_memory_than_the_sandbox(eng: Engine, sb: DockerSandbox) -> None:
    cid, code = run(
        eng,
        {
            "Image": "busybox",
            "Cmd": ["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=600"],
            "HostConfig": {"ShmSize": 2**30, "Memory": 2**31},  # -m above the sandbox's is clamped
        },
    )
    assert code != 0
    limit = int((cgroup_dir(sb, "memory") / "memory.limit_in_bytes").read_text())
    assert limit == SANDBOX_MEMORY
    assert eng.inspect(cid)["State"]["OOMKilled"] is True
    assert sb.sh("echo alive")[1] == "alive\n"  # the OOM killer chose the container, not the sandbox


def test_memory_flag_above_the_sandbox_warns(eng: Engine) -> None:
    _, warnings = eng.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 2**33}})
    assert any("sandbox's limit applies" in w for w in warnings)


# -- ports ----------------------------------------------------------------------------------

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]


def fetch(sb: DockerSandbox, url: str) -> str:
    code, out, err = sb.sh(f"for i in $(seq 100); do wget -qO- {url} && exit 0; sleep 0.1; done; exit 1")
    assert code == 0, err
    return out


def nft_table(sb: DockerSandbox) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/proc/{sb.ctx.pid}/ns/net", "nft", "list", "table", "ip", "kubelab-docker"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def test_published_port_answers_on_localhost_and_the_sandbox_address(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create(
        {
            "Image": "busybox",
            "Cmd": HTTPD,
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
        }
    )
    eng.start(cid)
    assert eng.port(cid) == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert fetch(sb, "http://127.0.0.1:8080/") == f"hello-from-{cid[:12]}\n"
    assert fetch(sb, f"http://{sb.ctx.ip}:8080/") == f"hello-from-{cid[:12]}\n"
    ip = eng.inspect(cid)["NetworkSettings"]["IPAddress"]
    assert fetch(sb, f"http://{ip}:80/") == f"hello-from-{cid[:12]}\n"  # docker0 from the sandbox
    # a second container on the same host port is refused with Docker's message
    other, _ = eng.create(
        {"Image": "busybox", "Cmd": HTTPD, "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}}
    )
    with pytest.raises(errors.Conflict, match=r"Bind for 0.0.0.0:8080 failed: port is already allocated"):
        eng.start(other)
    assert "8080" in nft_table(sb)
    eng.stop(cid, timeout=1)
    assert "8080" not in nft_table(sb)


def test_random_host_port_and_a_port_the_sandbox_already_uses(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create(
        {"Image": "busybox", "Cmd": HTTPD, "ExposedPorts": {"80/tcp": {}}, "HostConfig": {"PublishAllPorts": True}}
    )
    eng.start(cid)
    port = eng.port(cid)["80/tcp"][0]["HostPort"]
    assert 32768 <= int(port) <= 60999
    assert fetch(sb, f"http://localhost:{port}/") == f"hello-from-{cid[:12]}\n"
    sp = sb.mgr.spawn(sb.sid, ["nc", "-l", "-p", "9091"], tty=False)
    try:
        code, _, _ = sb.sh(
            "for i in $(seq 100); do netstat -ltn | grep -q ':9091 ' && exit 0; sleep 0.05; done; exit 1"
        )
        assert code == 0
        busy, _ = eng.create(
            {"Image": "busybox", "Cmd": HTTPD, "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "9091"}]}}}
        )
        with pytest.raises(errors.Conflict, match="9091 failed: port is already allocated"):
            eng.start(busy)
    finally:
        sp.kill_tree()


# -- refusals -------------------------------------------------------------------------------

REFUSED = {
    "privileged": {"Privileged": True},
    "cap-add": {"CapAdd": ["NET_ADMIN"]},
    "device": {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]},
    "gpus": {"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]},
    "pid-host": {"PidMode": "host"},
    "ipc-host": {"IpcMode": "host"},
    "uts-host": {"UTSMode": "host"},
    "userns-host": {"UsernsMode": "host"},
    "net-host": {"NetworkMode": "host"},
    "net-container": {"NetworkMode": "container:abc"},
    "pid-container": {"PidMode": "container:abc"},
    "cgroupns-host": {"CgroupnsMode": "host"},
    "seccomp-unconfined": {"SecurityOpt": ["seccomp=unconfined"]},
    "apparmor-unconfined": {"SecurityOpt": ["apparmor=unconfined"]},
    "label-disable": {"SecurityOpt": ["label=disable"]},
    "sysctl-kernel": {"Sysctls": {"kernel.shmmax": "1"}},
    "bind-etc": {"Binds": ["/etc:/x"]},
    "bind-root-fs": {"Binds": ["/:/host"]},
    "mount-bind-var": {"Mounts": [{"Type": "bind", "Source": "/var", "Target": "/x"}]},
    "bind-dotdot": {"Binds": ["/root/../etc:/x"]},
}


@pytest.mark.parametrize("host_config", REFUSED.values(), ids=REFUSED.keys())
def test_unsafe_requests_are_refused_with_a_reason(eng: Engine, host_config: dict[str, object]) -> None:
    with pytest.raises(Forbidden) as exc:
        eng.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": host_config})
    assert "not available in this lab" in str(exc.value)
    assert eng.list(all=True) == []


def test_privileged_refusal_explains_why(eng: Engine) -> None:
    with pytest.raises(Forbidden, match="--privileged is not available in this lab: your containers run inside"):
        eng.create({"Image": "busybox", "HostConfig": {"Privileged": True}})


def test_net_sysctls_are_allowed(eng: Engine) -> None:
    cid, code = run(
        eng,
        {
            "Image": "busybox",
            "Cmd": ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
            "HostConfig": {"Sysctls": {"net.ipv4.ip_unprivileged_port_start": "80"}},
        },
    )
    assert (code, output(eng, cid)[0]) == (0, "80\n")


# -- binds and volumes ----------------------------------------------------------------------


def test_bind_mount_of_the_workspace_works_both_ways(eng: Engine, sb: DockerSandbox) -> None:
    assert sb.sh("mkdir -p /root/x && echo from-sandbox > /root/x/in && rm -f /root/x/out")[0] == 0
    cid, code = run(
        eng,
        {
            "Image": "busybox",
            "Cmd": ["sh", "-c", "cat /data/in && echo from-container > /data/out && ls -ln /data/out"],
            "HostConfig": {"Binds": ["/root/x:/data"]},
        },
    )
    assert code == 0
    out = output(eng, cid)[0]
    assert out.startswith("from-sandbox\n")
    assert " 0 " in out.splitlines()[1]  # owned by root of the container
    assert sb.sh("cat /root/x/out")[1] == "from-container\n"
    cid, code = run(
        eng,
        {
            "Image": "busybox",
            "Cmd": ["sh", "-c", "echo nope > /data/out2"],
            "HostConfig": {"Binds": ["/root/x:/data:ro"]},
        },
    )
    assert code != 0 and "Read-only file system" in output(eng, cid)[1]


@pytest.mark.parametrize("target", ["/etc", "../../etc", "/", "../.."])
def test_symlink_out_of_the_workspace_is_refused(eng: Engine, sb: DockerSandbox, target: str) -> None:
    assert sb.sh(f"rm -f /root/evil && ln -s {target} /root/evil")[0] == 0
    with pytest.raises(Forbidden, match="only paths inside /root"):
        eng.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["/root/evil:/x"]}})


def test_a_symlink_swapped_in_after_create_is_refused_at_start(eng: Engine, sb: DockerSandbox) -> None:
    assert sb.sh("rm -rf /root/swap && mkdir /root/swap")[0] == 0
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["ls", "/x"], "HostConfig": {"Binds": ["/root/swap:/x"]}})
    assert sb.sh("rmdir /root/swap && ln -s /etc /root/swap")[0] == 0
    with pytest.raises(Forbidden):
        eng.start(cid)


def test_missing_bind_source_is_a_bad_request(eng: Engine) -> None:
    with pytest.raises(errors.BadRequest, match="bind source path does not exist"):
        eng.create({"Image": "busybox", "HostConfig": {"Binds": ["/root/does-not-exist:/x"]}})


def test_named_volume_survives_container_removal(eng: Engine, sb: DockerSandbox) -> None:
    cid, code = run(
        eng, {"Image": "busybox", "Cmd": ["sh", "-c", "echo kept > /v/file"], "HostConfig": {"Binds": ["keepme:/v"]}}
    )
    assert code == 0
    eng.remove(cid, volumes=True)
    assert [v["Name"] for v in eng.volumes()] == ["keepme"]
    data = sb.ctx.engine_root / "volumes" / "keepme" / "_data"
    assert data.stat().st_uid == sb.ctx.uid_base
    cid, code = run(
        eng,
        {
            "Image": "busybox",
            "Cmd": ["cat", "/v/file"],
            "HostConfig": {"Mounts": [{"Type": "volume", "Source": "keepme", "Target": "/v"}]},
        },
    )
    assert (code, output(eng, cid)[0]) == (0, "kept\n")
    with pytest.raises(errors.Conflict, match="volume is in use"):
        eng.volume_remove("keepme")
    eng.remove(cid)
    eng.volume_remove("keepme")
    assert eng.volumes() == []


# -- persistence, cleanup -------------------------------------------------------------------


def test_a_second_engine_readopts_a_running_container(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create(
        {
            "Image": "busybox",
            "Cmd": ["sleep", "300"],
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8181"}]}},
        }
    )
    eng.start(cid)
    pid = eng.inspect(cid)["State"]["Pid"]
    eng2 = Engine(sb.ctx, sb.mgr.images)  # type: ignore[arg-type]
    state = eng2.inspect(cid)["State"]
    assert (state["Running"], state["Pid"]) == (True, pid)
    assert eng2.port(cid) == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8181"}]}
    assert [c["Id"] for c in eng2.list()] == [cid]
    eng2.stop(cid, timeout=1)
    assert eng2.inspect(cid)["State"]["Running"] is False
    eng2.remove(cid)


def test_close_with_remove_leaves_no_mount_runc_state_or_cgroup(sb: DockerSandbox) -> None:
    eng = Engine(sb.ctx, sb.mgr.images)  # type: ignore[arg-type]
    assert sb.sh("mkdir -p /root/x")[0] == 0
    cid, _ = eng.create(
        {
            "Image": "busybox",
            "Cmd": HTTPD,
            "HostConfig": {"Binds": ["/root/x:/data"], "PortBindings": {"80/tcp": [{"HostPort": "8282"}]}},
        }
    )
    eng.start(cid)
    root = str(sb.ctx.engine_root)
    with open("/proc/self/mountinfo") as fh:
        assert any(root in line for line in fh)
    eng.close(remove=True)
    with open("/proc/self/mountinfo") as fh:
        assert not [line for line in fh if root in line]
    runc_list = subprocess.run(
        [sb.ctx.runc, "--root", f"{root}/runc", "list", "-q"], capture_output=True, text=True, check=True
    ).stdout
    assert runc_list.strip() == ""
    for controller in ("memory", "pids", "cpu"):
        assert not list(cgroup_dir(sb, controller).glob("docker-*"))
    assert "8282" not in nft_table(sb)
    assert not Path(f"/proc/{sb.ctx.pid}/net/dev").read_text().count("kdv")
    # a new engine after close sees the container as exited and can remove it
    with engine_on(sb) as again:
        assert again.inspect(cid)["State"]["Running"] is False
        again.remove(cid)


# -- the builder's step ---------------------------------------------------------------------


def test_run_step_streams_output_and_returns_its_upper_dir(eng: Engine, sb: DockerSandbox) -> None:
    image = eng.store.resolve("busybox")
    chunks: list[bytes] = []
    code, upper = eng.run_step(
        image,
        ["/bin/sh", "-c", "echo building in $PWD as $(id -u); echo made > /made.txt; rm /bin/echo"],
        env=["PATH=/bin:/usr/bin"],
        workdir="/work",
        user="",
        output=chunks.append,
    )
    try:
        assert code == 0
        assert b"".join(chunks) == b"building in /work as 0\n"
        assert (upper / "made.txt").read_text() == "made\n"
        assert (upper / "made.txt").stat().st_uid == sb.ctx.uid_base
        wh = os.lstat(upper / "bin" / "echo")
        assert wh.st_rdev == 0 and (wh.st_mode & 0o170000) == 0o020000  # overlay whiteout
        assert not (upper / "etc" / "hosts").exists()  # the init layer kept mount points out
        assert eng.list(all=True) == []
        layer = eng.store.add_layer(upper)
        assert layer.diff_id.startswith("sha256:")
    finally:
        with contextlib.suppress(FileNotFoundError):
            if upper.exists():
                subprocess.run(["rm", "-rf", str(upper)], check=False)


def test_info_and_df_report_the_sandbox(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = run(eng, {"Image": "busybox", "Cmd": ["true"]})
    info = eng.info()
    assert info["MemTotal"] == SANDBOX_MEMORY
    assert info["Containers"] == 1 and info["ContainersRunning"] == 0
    df = eng.system_df()
    assert [c["Id"] for c in df["Containers"]] == [cid]
    assert any(i["RepoTags"] == ["busybox:1.35", "busybox:latest"] and i["Containers"] == 1 for i in df["Images"])
    json.dumps(df)  # serialisable as the API returns it


# -- lifecycle details ----------------------------------------------------------------------


def test_restart_rename_list_filters_and_prune(eng: Engine) -> None:
    cid, _ = eng.create(
        {"Image": "busybox", "Cmd": ["sh", "-c", "echo run; sleep 300"], "Labels": {"app": "web"}}, name="web1"
    )
    eng.start(cid)
    for _, data in eng.logs(cid, follow=True, stdout=True, stderr=False):
        if b"run\n" in data:
            break  # the first run has written (a restart before that would leave one "run")
    eng.restart(cid, timeout=0)
    info = eng.inspect(cid)
    assert info["State"]["Running"] and info["RestartCount"] == 0  # a restart by hand resets it (dockerd)
    seen = b""
    for _, data in eng.logs(cid, follow=True, stdout=True, stderr=False):
        seen += data
        if seen.count(b"run\n") == 2:
            break
    assert seen == b"run\nrun\n"  # the log spans both runs
    eng.rename("web1", "web2")
    assert eng.resolve("/web2") == cid and eng.resolve(cid[:6]) == cid
    with pytest.raises(errors.RuntimeError, match="No such container: web1"):
        eng.resolve("web1")
    done, _ = run(eng, {"Image": "busybox", "Cmd": ["false"]})
    assert [c["Id"] for c in eng.list()] == [cid]
    assert [c["Id"] for c in eng.list(all=True, filters={"status": ["exited"]})] == [done]
    assert [c["Id"] for c in eng.list(all=True, filters={"label": ["app=web"]})] == [cid]
    assert [c["Id"] for c in eng.list(all=True, filters={"exited": ["1"]})] == [done]
    assert eng.list(all=True, filters={"name": ["web2"]})[0]["Names"] == ["/web2"]
    with pytest.raises(errors.Conflict, match="already in use"):
        eng.create({"Image": "busybox"}, name="web2")
    with pytest.raises(errors.Conflict, match="cannot remove a running container"):
        eng.remove(cid)
    assert eng.container_prune()["ContainersDeleted"] == [done]
    eng.kill(cid, signal="KILL")
    assert eng.wait(cid) == 137


def test_entrypoint_and_cmd_combine_like_docker(eng: Engine) -> None:
    cid, _ = run(eng, {"Image": "busybox", "Entrypoint": ["echo", "ep"], "Cmd": ["arg"]})
    assert output(eng, cid)[0] == "ep arg\n"
    cid, _ = run(eng, {"Image": "busybox", "Entrypoint": ["echo"]})  # image Cmd is dropped
    assert output(eng, cid)[0] == "\n"
    info = eng.inspect(cid)
    assert (info["Path"], info["Args"]) == ("echo", [])
    with pytest.raises(errors.BadRequest, match="No command specified"):
        eng.create({"Image": "busybox", "Entrypoint": [""], "Cmd": []})


def test_empty_volume_gets_a_copy_of_the_image_content(eng: Engine) -> None:
    cid, code = run(eng, {"Image": "busybox", "Cmd": ["ls", "/etc"], "HostConfig": {"Binds": ["etccopy:/etc"]}})
    assert code == 0
    eng.remove(cid)
    cid, code = run(eng, {"Image": "busybox", "Cmd": ["cat", "/v/passwd"], "HostConfig": {"Binds": ["etccopy:/v"]}})
    assert code == 0 and "root:" in output(eng, cid)[0]
    eng.remove(cid)
    eng.volume_remove("etccopy")


def test_a_new_engine_marks_containers_that_died_meanwhile_exited(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sleep", "300"]})
    eng.start(cid)
    state_file = sb.ctx.engine_root / "containers" / cid / "state.json"
    saved = json.loads(state_file.read_text())
    eng.stop(cid, timeout=0)
    state_file.write_text(json.dumps(saved))  # as if the engine had gone before the exit
    again = Engine(sb.ctx, sb.mgr.images)  # type: ignore[arg-type]
    state = again.inspect(cid)["State"]
    assert state["Status"] == "exited" and not state["Running"]
    assert state["ExitCode"] == 255 and "engine was not running" in state["Error"]


def test_loopback_only_publish_and_container_to_container_traffic(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create(
        {
            "Image": "busybox",
            "Cmd": HTTPD,
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8383"}]}},
        }
    )
    eng.start(cid)
    assert fetch(sb, "http://127.0.0.1:8383/") == f"hello-from-{cid[:12]}\n"
    code, _, _ = sb.sh(f"wget -T 2 -qO- http://{sb.ctx.ip}:8383/")
    assert code != 0  # published on the sandbox's loopback only
    ip = eng.inspect(cid)["NetworkSettings"]["IPAddress"]
    client, code = run(
        eng,
        {
            "Image": "busybox",
            "Cmd": ["sh", "-c", f"for i in $(seq 50); do wget -qO- http://{ip}/ && exit 0; sleep 0.1; done; exit 1"],
        },
    )
    assert (code, output(eng, client)[0]) == (0, f"hello-from-{cid[:12]}\n")


def test_per_container_limits_apply_below_the_sandbox(eng: Engine, sb: DockerSandbox) -> None:
    cid, _ = eng.create(
        {
            "Image": "busybox",
            "Cmd": ["sleep", "300"],
            "HostConfig": {"Memory": 32 * 2**20, "PidsLimit": 20, "NanoCpus": 500_000_000},
        }
    )
    eng.start(cid)
    name = f"docker-{cid[:12]}"
    assert int((cgroup_dir(sb, "memory") / name / "memory.limit_in_bytes").read_text()) == 32 * 2**20
    assert (cgroup_dir(sb, "pids") / name / "pids.max").read_text().strip() == "20"
    assert int((cgroup_dir(sb, "cpu") / name / "cpu.cfs_quota_us").read_text()) == 50_000


def test_top_and_stats_read_the_containers_cgroup(eng: Engine) -> None:
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sleep", "300"], "HostConfig": {"Memory": 64 * 2**20}})
    eng.start(cid)
    top = eng.top(cid)
    assert [p[0] for p in top["Processes"]] == ["0"] and top["Processes"][0][2] == "sleep 300"
    assert top["Processes"][0][1] == "1", "the pid as the container sees it, not the host's"
    stats = eng.stats_once(cid)
    assert stats["memory_stats"]["limit"] == 64 * 2**20
    assert 0 < stats["memory_stats"]["usage"] < 64 * 2**20
    assert stats["pids_stats"]["current"] == 1
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0


# -- the sandbox's disk and pids limits bound its containers ---------------------------------


def test_container_writes_count_against_the_sandbox_disk_quota() -> None:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(42, disk=64 * 2**20) as small, engine_on(small) as eng:
        cid, code = run(eng, {"Image": "busybox", "Cmd": ["dd", "if=/dev/zero", "of=/big", "bs=1M", "count=200"]})
        assert code != 0
        assert "No space left on device" in output(eng, cid)[1]
        # the sandbox's own disk is the one that filled: its shell cannot write either
        code, _out, err = small.sh("echo x > /root/more && dd if=/dev/zero of=/root/fill bs=1M count=8")
        assert code != 0 and "No space left on device" in err
        eng.remove(cid, force=True)
        code, _out, err = small.sh("rm -f /root/fill && dd if=/dev/zero of=/root/fill bs=1M count=8")
        assert code == 0, err  # removing the container gave the space back


def test_a_fork_bomb_in_a_container_stops_at_the_sandbox_pids_limit(eng: Engine, sb: DockerSandbox) -> None:
    limit = int((cgroup_dir(sb, "pids") / "pids.max").read_text())
    refused_before = _pids_refused(sb)
    # more children than the limit allows, none of which exits while the test looks
    cid, _ = eng.create({"Image": "busybox", "Cmd": ["sh", "-c", "for i in $(seq 2000); do sleep 3600 & done; wait"]})
    eng.start(cid)
    pids = cgroup_dir(sb, "pids") / f"docker-{cid[:12]}" / "pids.current"
    total = cgroup_dir(sb, "pids") / "pids.current"
    own_limit = (cgroup_dir(sb, "pids") / f"docker-{cid[:12]}" / "pids.max").read_text().strip()
    # The wall is the sandbox's: what else runs in it (earlier tests' containers, shells)
    # counts too. The kernel counts each fork it refused at the sandbox's limit (pids.events
    # "max"): the loop ends when that happens, however slowly a loaded machine forks.
    deadline = time.monotonic() + 240
    peak = peak_total = 0
    while time.monotonic() < deadline and _pids_refused(sb, cid) == refused_before:
        with contextlib.suppress(OSError):
            peak = max(peak, int(pids.read_text()))
            peak_total = max(peak_total, int(total.read_text()))
        time.sleep(0.01)
    with contextlib.suppress(OSError):
        peak = max(peak, int(pids.read_text()))
        peak_total = max(peak_total, int(total.read_text()))
    # the container's cgroup has no limit of its own: the refused forks met the sandbox's
    assert own_limit == "max"
    assert _pids_refused(sb, cid) > refused_before, "the fork bomb reached the sandbox's pids limit"
    assert peak > limit // 2, "the container did the forking"
    assert peak <= limit  # never above the sandbox's pids.max, however many the container asks for
    assert int((cgroup_dir(sb, "pids") / "pids.current").read_text()) <= limit
    eng.remove(cid, force=True)
    assert sb.sh("echo alive")[1] == "alive\n"
