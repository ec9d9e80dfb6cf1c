"""The node: kubelet, kube-proxy, cluster DNS, NetworkPolicy, the ingress controller, port-forward."""

from __future__ import annotations
