"""What one engine holds in runtimed stays bounded, whatever its containers and clients do.

Real runc in a real sandbox, ``Engine`` driven directly (as test_engine.py does):

* a container that writes as fast as it can, attached by a client that stops reading:
  runtimed holds at most ``STREAM_HIGH`` (plus a chunk) for it, the container is paused
  on its full pipe (its log stops growing), and once the client reads again the output
  flows again;
* the count quotas (``EngineLimits``), here set small: past them a 403 that says what limit
  and what to remove; finished exec instances make room for new ones.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest

from runtime.dockerapi.engine import Engine
from runtime.dockerapi.engine.streams import STREAM_HIGH
from runtime.dockerapi.images.store import Forbidden
from runtime.dockerapi.limits import EngineLimits
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 43
CHUNK = 65536  # what one read of a pump takes at most


@pytest.fixture(scope="module")
def sb() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG) as s:
        yield s


@contextlib.contextmanager
def engine(sb: DockerSandbox, limits: EngineLimits | None = None) -> Iterator[Engine]:
    eng = Engine(sb.ctx, sb.mgr.images, limits=limits)  # type: ignore[arg-type]
    try:
        yield eng
    finally:
        for c in eng.list(all=True):
            with contextlib.suppress(Exception):
                eng.remove(c["Id"], force=True, volumes=True)
        eng.close(remove=False)


def until(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


def test_a_stalled_attach_client_pauses_the_container_instead_of_filling_runtimed(sb: DockerSandbox) -> None:
    with engine(sb) as eng:
        cid, _ = eng.create({"Image": "busybox", "Cmd": ["yes", "a fast writer"]})
        stream = eng.attach(cid, stdin=False, stdout=True, stderr=True, logs=False, stream=True)
        eng.start(cid)
        log = sb.ctx.engine_root / "containers" / cid / "container.log"
        until(lambda: stream._queued > STREAM_HIGH, "the stalled client's stream filled up")
        # nobody reads: once what runtimed may hold is full, the container's output is no
        # longer taken (its log stops growing) and what is held stays bounded
        sizes = [log.stat().st_size]

        def log_stopped() -> bool:
            time.sleep(0.2)
            sizes.append(log.stat().st_size)
            return sizes[-1] == sizes[-2]

        until(log_stopped, "the container's output stopped being read")
        size = sizes[-1]
        for _ in range(5):
            time.sleep(0.2)
            assert stream._queued <= STREAM_HIGH + CHUNK
        assert log.stat().st_size == size, "the pump read again for nobody"
        assert size < 4 * STREAM_HIGH  # this stream and the subscriber feeding it: 2 x HIGH
        # the client reads again: the output flows again, well past what was buffered
        got = 0
        while got < 4 * STREAM_HIGH:
            item = stream.read(timeout=30)
            assert item is not None
            got += len(item[1])
        assert log.stat().st_size > size + STREAM_HIGH
        stream.close()
        eng.kill(cid)


def test_count_quotas_refuse_with_the_limit_and_the_remedy(sb: DockerSandbox) -> None:
    with engine(sb, EngineLimits(containers=2, volumes=1, execs=2)) as eng:
        a, _ = eng.create({"Image": "busybox", "Cmd": ["sleep", "300"]})
        eng.create({"Image": "busybox", "Cmd": ["true"]})
        with pytest.raises(Forbidden) as refused:
            eng.create({"Image": "busybox", "Cmd": ["true"]})
        assert "keeps at most 2 containers per sandbox" in str(refused.value)
        assert "docker rm" in str(refused.value)

        eng.volume_create({"Name": "one"})
        with pytest.raises(Forbidden, match="at most 1 volumes"):
            eng.volume_create({"Name": "two"})

        eng.start(a)
        first = eng.exec_create(a, {"Cmd": ["true"]})
        eng.exec_create(a, {"Cmd": ["true"]})
        with pytest.raises(Forbidden, match="at most 2 exec instances"):
            eng.exec_create(a, {"Cmd": ["true"]})
        eng.exec_start(first, detach=True, tty=False)
        until(lambda: eng.exec_inspect(first)["ExitCode"] == 0, "the first exec finished")
        eng.exec_create(a, {"Cmd": ["true"]})  # a finished one made room
