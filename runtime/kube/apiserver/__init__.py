"""kube-apiserver: authentication, the REST verbs, storage, discovery, OpenAPI, admission, RBAC.

``cluster.py``
    ``Cluster``: authentication, impersonation, the routing of the REST verbs (get, list,
    watch, create, update, patch, delete, deletecollection; status and scale subresources;
    dry-run; fieldValidation=Strict) and their writes, Table responses. Transport-free. Its
    create and update paths run each resource's strategy (registry/rest.py); it never calls
    controllers.
``listwatch.py``
    list (selectors, ``limit``/``continue`` paging, Tables) and watch (from a resourceVersion,
    initial events, 410 for an expired one) over the store.
``request.py``
    A request's body (JSON, YAML, protobuf; depth and aliasing limits) and DeleteOptions, decoded
    as kube-apiserver does before it knows the resource; ``decode_body`` runs off the loop.
``subresources.py``
    The subresources with a REST storage of their own (pods/log, exec, attach, portforward,
    eviction, binding; the legacy bindings; serviceaccounts/token), over ``Cluster``'s public
    methods, reached by the strategies through ``Cluster.subresources``.
``allocator.py``
    ClusterIP and NodePort allocation for Services (the Service strategy asks for it).
``auth.py``
    Bearer tokens: tokens.json (SHA-256 only) shared with ``mint-token`` under a flock, the
    token and ServiceAccount-token authenticators. Impersonation is ``Cluster.impersonate``.
``server.py``
    HTTPS listener and cluster routing. The kubeconfig's ``server:`` is
    ``https://HOST:PORT/clusters/NAME`` (client-go keeps a path prefix for every request) and
    ``tls-server-name: NAME.cluster.kubelab`` (SNI), so one socket presents each cluster's own
    serving certificate, signed by its own CA (``pki.py``). Bearer tokens are looked up only in
    the cluster the path names.
``provision.py``
    A cluster on disk: ``create_cluster`` (its CA and serving certificate, cluster.json, its
    nodes, default RBAC and DNS Service), the kubeconfigs that reach it through server.py's
    listener, ``mint_user_token``. Used by ``new-cluster``/``mint-token`` and ``service.py``.
``store.py``
    In-memory objects + append-only JSON log per cluster (``store.jsonl``), one
    resourceVersion counter per cluster, watch fan-out and a short event history (older
    resourceVersions get 410 Gone, as after etcd compaction).
``discovery.py`` / ``openapi.py``
    Legacy and aggregated (v2) discovery; OpenAPI v3 per group-version, upstream's documents
    vendored in runtime/kube/upstream/openapi-v3 (descriptions for
    ``kubectl explain``, patch merge keys for client-side apply, the ``fieldValidation``
    parameter kubectl checks); ``/openapi/v2`` as JSON converted from the same documents.
``admission.py`` / ``podsecurity.py``
    Admission plugins: LimitRanger, ResourceQuota (usage from registry/quota.py),
    PodSecurity (the namespace's enforce/warn/audit levels), and the lab's own refusals.
``rbac.py``
    The RBAC authorizer, default ClusterRoles/Bindings, the access-review APIs, escalation
    prevention on Role/Binding writes.
``dryrun.py``
    Server-side dry-run validation of a list of manifests (the platform's editor).
``podio.py``
    What the API server needs from a kubelet for ``logs``, ``exec``, ``attach`` and
    ``port-forward`` (``PodIO``), and the wire protocols server.py speaks for them.

Client surface: ``controllers/`` and ``node/`` use only ``cluster.Cluster`` (handed to them),
``store.Watcher`` and ``podio.PodIO`` from here (tests/runtime/kube/test_layering.py). The other
way round, nothing here imports ``controllers/``: a ``Cluster`` (and the ``Hub``, ``serve``) is
handed its kube-controller-manager as a factory (``cluster.ControllerManager``) by whoever builds
it (``service.py``, ``cli.py``, tests).
"""

from __future__ import annotations
