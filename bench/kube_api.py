"""Benchmark of the embedded Kubernetes API server (runtime/kube).

Starts ``python -m runtime.kube serve`` on a free loopback port in a temp dir and measures:

- kubectl_get_p50_ms: wall time of ``kubectl get pods`` against it (p50);
- kubectl_floor_p50_ms: ``kubectl version --client`` in the same run (the client's own floor);
- get_rps / list_rps / create_rps: API requests per second (GET one ConfigMap, LIST ConfigMaps
  of a namespace holding 100, POST ConfigMaps), 16 concurrent HTTPS clients;
- mb_per_idle_cluster: growth of the server's RSS after 200 more clusters are created and
  each is loaded (one request each), divided by 200.

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from runtime.kube.controllers.manager import Controllers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import kube_apiserver  # noqa: E402

from runtime.kube.apiserver.provision import create_cluster  # noqa: E402

KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p50_ms(argv: list[str], n: int = 15) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, timeout=60)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


class Client:
    def __init__(self, kubeconfig: str) -> None:
        cfg = yaml.safe_load(kubeconfig)
        cl = cfg["clusters"][0]["cluster"]
        self.base = cl["server"]
        self.sni = cl["tls-server-name"]
        self.token = cfg["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context(cadata=base64.b64decode(cl["certificate-authority-data"]).decode())

    def session(self, limit: int = 16) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ctx, limit=limit),
            headers={"Authorization": f"Bearer {self.token}"},
        )

    async def rate(self, method: str, path: str, body_fn=None, seconds: float = 3.0, conc: int = 16) -> float:
        count = 0
        stop = time.perf_counter() + seconds
        async with self.session(conc) as s:

            async def worker(w: int) -> None:
                nonlocal count
                i = 0
                while time.perf_counter() < stop:
                    data = json.dumps(body_fn(w, i)).encode() if body_fn else None
                    async with s.request(
                        method,
                        self.base + path,
                        data=data,
                        server_hostname=self.sni,
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        await r.read()
                        assert r.status < 300, r.status
                    count += 1
                    i += 1

            t = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(conc)))
            return round(count / (time.perf_counter() - t), 1)


async def touch_all(port: int, configs: list[str]) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=8)) as s:
        for kc in configs:
            cfg = yaml.safe_load(kc)
            cl = cfg["clusters"][0]["cluster"]
            tok = cfg["users"][0]["user"]["token"]
            async with s.get(
                cl["server"] + "/api/v1/namespaces/default/pods",
                headers={"Authorization": f"Bearer {tok}"},
                server_hostname=cl["tls-server-name"],
            ) as r:
                await r.read()
                assert r.status == 200, r.status


def main() -> None:
    with kube_apiserver() as (data, url, proc):
        kc = create_cluster(data, "bench", url, controllers=Controllers)
        kpath = data / "bench.kubeconfig"
        kpath.write_text(kc)
        env_argv = [KUBECTL, "--kubeconfig", str(kpath)]
        subprocess.run(
            [*env_argv, "create", "deployment", "web", "--image=nginx", "--replicas=3"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run([*env_argv, "create", "namespace", "bench"], check=True, capture_output=True, timeout=60)
        get_ms = p50_ms([*env_argv, "get", "pods"])
        print(f"kubectl get pods p50: {get_ms} ms", flush=True)
        floor_ms = p50_ms([KUBECTL, "version", "--client"])
        print(f"kubectl version --client p50: {floor_ms} ms", flush=True)

        c = Client(kc)

        def cm(w: int, i: int) -> dict[str, object]:
            return {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{w}-{i}"},
                "data": {"k": "v"},
            }

        create_rps = asyncio.run(c.rate("POST", "/api/v1/namespaces/bench/configmaps", cm, seconds=2.0))
        print(f"create: {create_rps} req/s", flush=True)
        # keep the namespace at ~100 configmaps for list
        subprocess.run(
            [*env_argv, "delete", "namespace", "bench", "--wait=true"], check=True, capture_output=True, timeout=120
        )
        subprocess.run([*env_argv, "create", "namespace", "listns"], check=True, capture_output=True, timeout=60)
        asyncio.run(c.rate("POST", "/api/v1/namespaces/listns/configmaps", cm, seconds=0.0, conc=1))

        async def fill() -> None:
            async with c.session() as s:
                for i in range(100):
                    async with s.post(
                        c.base + "/api/v1/namespaces/listns/configmaps",
                        data=json.dumps(cm(99, i)),
                        server_hostname=c.sni,
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        await r.read()

        asyncio.run(fill())
        get_rps = asyncio.run(c.rate("GET", "/api/v1/namespaces/listns/configmaps/cm-99-0"))
        print(f"get: {get_rps} req/s", flush=True)
        list_rps = asyncio.run(c.rate("GET", "/api/v1/namespaces/listns/configmaps"))
        print(f"list (100 items): {list_rps} req/s", flush=True)

        before = rss_mb(proc.pid)
        configs = [create_cluster(data, f"idle{i}", url, controllers=Controllers) for i in range(200)]
        asyncio.run(touch_all(int(url.rsplit(":", 1)[1]), configs))
        time.sleep(0.5)
        after = rss_mb(proc.pid)
        per = round((after - before) / 200, 3)
        print(f"RSS {before:.1f} MB -> {after:.1f} MB with 200 more clusters loaded", flush=True)
    print(
        json.dumps(
            {
                "kubectl_get_p50_ms": get_ms,
                "kubectl_floor_p50_ms": floor_ms,
                "get_rps": get_rps,
                "list_rps": list_rps,
                "create_rps": create_rps,
                "mb_per_idle_cluster": per,
            }
        )
    )


if __name__ == "__main__":
    main()
