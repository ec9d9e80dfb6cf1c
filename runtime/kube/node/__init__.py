"""What runs on the node: the kubelet and the node's network services.

``kubelet.py``
    Runs the pods bound to the node as containers of the sandbox's own Docker engine (an
    infra container per pod on the engine network ``kube-pods``), with kubelet's statuses,
    events, restarts and back-off, probes, volumes, graceful deletion; adopts running pods
    after a runtimed restart. ``ClusterHost`` is its thread-safe window on the cluster.
    Split as Kubernetes' kubelet is: kubelet.py keeps the sync loop (lifecycle, engine views,
    sync, deletion, logs/exec/attach/port-forward) and ``Kubelet`` mixes in the parts below.
``containers.py``
    The container runtime part (``ContainerRuntime``): infra container, starting containers.
``volumes.py``
    The volume manager (``VolumeManager``): a pod's volumes and orphan removal.
``prober.py``
    The kubelet's prober (``Prober``): exec, httpGet and tcpSocket probes.
``status.py``
    The kubelet's status manager (``StatusManager``): the pod status it posts.
``podstate.py``
    What the kubelet keeps per pod between syncs, and the engine containers it finds.
``streaming.py``
    Exec and attach sessions (``PodExec``, ``PodAttach``) for pods/exec, pods/attach, probes.
``proxy.py``
    kube-proxy in nftables mode (ClusterIP, NodePort, session affinity, REJECT without
    endpoints).
``dns.py``
    Cluster DNS (CoreDNS's kubernetes plugin) on 10.96.0.10 in the sandbox's netns.
``netpol.py``
    NetworkPolicy enforcement (one nftables table), with ``_netns_probe.py`` for probes.
``ingress.py``
    The ingress controller, as ingress-nginx.
``portforward.py``
    ``kubectl port-forward``: SPDY/3.1 in a WebSocket and the channel protocol, each
    connection dialled on the pod's own loopback.
``_netns_listen.py`` / ``_netns_probe.py`` / ``_netns_sockets.py``
    Helper children that enter a netns (the cluster's listeners and DNS sockets, forked from
    runtime/kernel/forkserver.py's server, which imports it; the connectivity probe; sockets
    for probes and port-forward), modules of ``runtime.kernel.children.HELPERS`` started as
    ``python -m`` (``helper_argv``), never imported by the daemon itself.
"""

from __future__ import annotations
