"""kube-apiserver: the cluster (authentication, the REST verbs), its store, discovery, OpenAPI,
admission plugins, RBAC, the HTTPS server and the pod I/O it relays."""

from __future__ import annotations
