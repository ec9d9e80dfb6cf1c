"""Benchmark: one hostile lab cluster against the API server that serves the others.

Starts ``python -m runtime.kube serve`` (the same server runtimed runs) on a free loopback
port with two clusters, ``victim`` (the attacker's own) and ``bystander``, and measures:

- rss_before_mb / rss_after_mb / rss_peak_mb: the server's RSS before the flood, after it,
  and its high-water mark (VmHWM) over the whole run;
- bystander_p50_ms / bystander_p95_ms before and during the flood: a ``kubectl get pods``
  request of the bystander (GET pods of a namespace as a Table), one at a time;
- the flood, from a separate process (so the bench's own CPU does not skew the
  bystander's figures): max-size ConfigMaps (1.4 MiB) until the byte quota refuses, small
  ConfigMaps until the count quota refuses, then 10 watches that are never read while one
  large ConfigMap is updated 80 times; and what the server made of it (objects stored,
  refusals, watches ended with 410, the victim's log on disk).

Prints progress lines on stderr, then one JSON object on the last line. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from runtime.kube.controllers.manager import Controllers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import kube_apiserver, log, pct  # noqa: E402

from runtime.kube.apiserver.provision import create_cluster  # noqa: E402

MiB = 1024 * 1024
TAG = "kube_limits"


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        cfg = yaml.safe_load(kubeconfig)
        cl = cfg["clusters"][0]["cluster"]
        self.base = cl["server"]
        self.sni = cl["tls-server-name"]
        self.token = cfg["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context(cadata=base64.b64decode(cl["certificate-authority-data"]).decode())

    def session(self, limit: int = 8) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ctx, limit=limit),
            headers={"Authorization": f"Bearer {self.token}"},
        )

    async def call(self, s: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        async with s.request(
            method, self.base + path, data=data, server_hostname=self.sni, headers={"Content-Type": "application/json"}
        ) as r:
            await r.read()
            return r.status


def cm(name: str, size: int, fill: str = "x") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": fill * size}}


CMS = "/api/v1/namespaces/default/configmaps"


async def unread_watch(c: Cluster, rv: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A watch whose client never reads (a socket with a small buffer, left alone)."""
    host, port = c.base.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, ssl=c.ctx, server_hostname=c.sni, limit=64 * 1024)
    path = c.base.split("//", 1)[1].split("/", 1)[1]
    writer.write(
        f"GET /{path}{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=600 HTTP/1.1\r\n"
        f"Host: {c.sni}\r\nAuthorization: Bearer {c.token}\r\nAccept: application/json\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def flood(kubeconfig: str) -> dict[str, Any]:
    c = Cluster(kubeconfig)
    out: dict[str, Any] = {}
    async with c.session() as s:
        big_ok = big_refused = 0
        i = 0
        while big_refused == 0 and i < 200:
            st = await c.call(s, "POST", CMS, cm(f"big-{i}", 1400 * 1024))
            big_ok += st == 201
            big_refused += st == 403
            i += 1
        log(TAG, f"flood: {big_ok} max-size objects stored, then refused ({big_refused})")
        out["max_size_objects_stored"] = big_ok
        small_ok = small_refused = 0
        i = 0

        async def small(w: int) -> None:
            nonlocal small_ok, small_refused, i
            while small_refused < 50 and i < 8000:
                i += 1
                st = await c.call(s, "POST", CMS, cm(f"s-{w}-{i}", 10))
                small_ok += st == 201
                small_refused += st == 403

        await asyncio.gather(*(small(w) for w in range(8)))
        log(TAG, f"flood: {small_ok} small objects stored, then {small_refused} refused")
        out["small_objects_stored"] = small_ok
        out["refused_creates"] = big_refused + small_refused
        async with s.get(c.base + CMS + "?limit=1", server_hostname=c.sni) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        watches = [await unread_watch(c, rv) for _ in range(10)]
        codes = []
        for n in range(80):
            fill = "xyzw"[n % 4]
            codes.append(await c.call(s, "PUT", f"{CMS}/big-0", cm("big-0", 1400 * 1024, fill)))
        out["large_updates_ok"] = codes.count(200)
        log(TAG, f"flood: 80 updates of a 1.4 MiB ConfigMap under 10 unread watches: {codes.count(200)} ok")
        expired = 0
        for reader, writer in watches:
            tail = b""
            try:
                while True:
                    chunk = await asyncio.wait_for(reader.read(1 << 20), timeout=20)
                    if not chunk:
                        break
                    tail = (tail + chunk)[-4096:]
                    if b'"type":"ERROR"' in tail and b'"code":410' in tail:
                        expired += 1
                        break
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass
            writer.close()
        out["unread_watches_ended_410"] = expired
    return out


async def bystander(c: Cluster, seconds: float, stop: asyncio.Event | None = None) -> list[float]:
    times: list[float] = []
    end = time.perf_counter() + seconds
    async with c.session(1) as s:
        while time.perf_counter() < end and not (stop is not None and stop.is_set()):
            t = time.perf_counter()
            async with s.get(
                c.base + "/api/v1/namespaces/default/pods?limit=500",
                server_hostname=c.sni,
                headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
            ) as r:
                await r.read()
            times.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.01)
    return times


async def during(c: Cluster, proc: subprocess.Popen[bytes]) -> list[float]:
    stop = asyncio.Event()

    async def watch_proc() -> None:
        while proc.poll() is None:
            await asyncio.sleep(0.1)
        stop.set()

    waiter = asyncio.create_task(watch_proc())
    times = await bystander(c, 3600, stop)
    await waiter
    return times


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--flood":
        print(json.dumps(asyncio.run(flood(Path(sys.argv[2]).read_text()))), flush=True)
        return
    with kube_apiserver() as (data, url, proc):
        victim_kc = create_cluster(data, "victim", url, controllers=Controllers)
        (data / "victim.kubeconfig").write_text(victim_kc)
        by = Cluster(create_cluster(data, "bystander", url, controllers=Controllers))
        victim = Cluster(victim_kc)

        async def load() -> None:
            async with victim.session() as s:
                await victim.call(s, "GET", CMS)

        asyncio.run(load())
        before = asyncio.run(bystander(by, 5.0))
        rss_before = proc_kb(proc.pid, "VmRSS") / 1024
        p50, p95 = pct(before, 50), pct(before, 95)
        log(TAG, f"before: bystander p50 {p50:.1f} ms, p95 {p95:.1f} ms; RSS {rss_before:.0f} MB")
        attacker = subprocess.Popen(
            [sys.executable, __file__, "--flood", str(data / "victim.kubeconfig")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        flood_times = asyncio.run(during(by, attacker))
        out, _ = attacker.communicate(timeout=60)
        result = json.loads(out.decode().strip().splitlines()[-1])
        rss_after = proc_kb(proc.pid, "VmRSS") / 1024
        rss_peak = proc_kb(proc.pid, "VmHWM") / 1024
        disk = (data / "clusters" / "victim" / "store.jsonl").stat().st_size / MiB
        log(
            TAG,
            f"during: bystander p50 {pct(flood_times, 50):.1f} ms, p95 {pct(flood_times, 95):.1f} ms; "
            f"RSS {rss_after:.0f} MB after, peak {rss_peak:.0f} MB; victim log {disk:.1f} MiB",
        )
    print(
        json.dumps(
            {
                "rss_before_mb": round(rss_before, 1),
                "rss_after_mb": round(rss_after, 1),
                "rss_peak_mb": round(rss_peak, 1),
                "bystander_p50_ms_before": round(pct(before, 50), 1),
                "bystander_p95_ms_before": round(pct(before, 95), 1),
                "bystander_p50_ms_during": round(pct(flood_times, 50), 1),
                "bystander_p95_ms_during": round(pct(flood_times, 95), 1),
                "bystander_requests_during": len(flood_times),
                "victim_log_mib": round(disk, 1),
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
