"""The embedded lab cluster: a Kubernetes API server that the real kubectl 1.37 accepts.

One process (``python -m runtime.kube serve`` or ``python -m runtime kube serve``) serves
every cluster kept under a data directory; ``new-cluster`` creates one and prints its
admin kubeconfig; ``mint-token CLUSTER USER [--group G]... [--ttl 1h]`` prints a kubeconfig
for a named user who has no rights but those RBAC gives it (the platform's per-user
tokens; runtimed mints them with ``POST /v1/sandboxes/{id}/kube-users``). The API server,
the controllers and a scheduler run wherever the server does; in runtimed each sandbox's
cluster also gets a kubelet that runs its pods on the sandbox's own Docker engine
(standalone, without a kubelet, pods are scheduled and stay ``Pending``). What is served,
the data directory and the known gaps: docs/lab-cluster.md.

Layout
------
Laid out like Kubernetes' own tree, so a reader who knows it finds their room; each
subpackage's docstring says what its modules do.

``meta.py``
    The shared vocabulary (``Obj``, ``Request``, ``User``, ``Reply``, ``WatchReply``, generated
    names; timestamps are runtime/kernel/clock.py's). Imports nothing of ours.
``machinery/``
    k8s.io/apimachinery: API errors, quantities, label/field selectors, JSON/merge/strategic
    patches, server-side apply, CEL, cron schedules, protobuf bodies, size limits.
``registry/``
    What is served (``ResourceDef``, the table in ``registry/__init__.py``) and per-kind
    behaviour: one strategy per resource (rest.py, the group modules core.py, apps.py, ...,
    looked up by strategies.py) with the defaulting and validation it calls (kinds.py), table
    columns (printers.py), CRDs (crd.py), APIServices (apiservice.py), quota usage (quota.py).
``apiserver/``
    kube-apiserver: the ``Cluster`` and its REST verbs (cluster.py), the Service IP and port
    allocators (allocator.py), bearer tokens (auth.py),
    the store, discovery, OpenAPI, admission plugins (admission, podsecurity), RBAC, dry-run
    validation, the HTTPS server and routing (server.py), the pod I/O it relays (podio.py),
    certificates (pki.py), provisioning a cluster on disk and its kubeconfigs (provision.py).
``scheduler.py``
    kube-scheduler's filters and scores, run in the reconcile loop.
``controllers/``
    kube-controller-manager: one module per controller, ``manager.Controllers`` runs them.
``node/``
    What runs on the node: kubelet, kube-proxy, cluster DNS, NetworkPolicy, the ingress
    controller, port-forward, and the helper children that enter the sandbox's netns.
``service.py`` / ``cli.py``
    The ``kubernetes`` sandbox service runtimed runs, and the command line.

Imports go downwards only: ``meta`` <- ``machinery`` <- ``registry`` <- ``apiserver``,
``scheduler``, ``controllers``, ``node`` <- ``service``, ``cli``. ``controllers/`` and ``node/``
reach the API server only through its client surface: the ``Cluster`` they are handed (a
type), ``apiserver.store.Watcher`` and the ``apiserver.podio.PodIO`` protocol a kubelet
serves. No module imports another subpackage's private names, and there is no import
circle; tests/runtime/kube/test_layering.py holds all of this.
"""

from __future__ import annotations
