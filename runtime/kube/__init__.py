"""The embedded lab cluster: a Kubernetes API server that the real kubectl 1.37 accepts.

One process (``python -m runtime.kube serve`` or ``python -m runtime kube serve``) serves
every cluster kept under a data directory; ``new-cluster`` creates one and prints its
admin kubeconfig; ``mint-token CLUSTER USER [--group G]... [--ttl 1h]`` prints a kubeconfig
for a named user who has no rights but those RBAC gives it (the platform's per-user
tokens; runtimed mints them with ``POST /v1/sandboxes/{id}/kube-users``). The API server,
the controllers and a scheduler run wherever the server does; in runtimed each sandbox's
cluster also gets a kubelet that runs its pods on the sandbox's own Docker engine
(standalone, without a kubelet, pods are scheduled and stay ``Pending``).

Layout
------
``server.py``
    HTTPS listener and cluster routing. The kubeconfig's ``server:`` is
    ``https://HOST:PORT/clusters/NAME`` (client-go keeps a path prefix for every request,
    discovery and OpenAPI included) and ``tls-server-name: NAME.cluster.kubelab`` (SNI), so one
    socket presents each cluster's own serving certificate, signed by the cluster's own CA.
    Bearer tokens are looked up only in the cluster the path names.
``cli.py``
    ``serve``, ``new-cluster``, ``mint-token``.
``meta.py``
    The shared vocabulary every layer speaks (``Request``, ``User``, ``Reply``, ``WatchReply``,
    generated names) and the package's only time helpers. It imports nothing of ours, so the
    layers above import it at module top; ``tests/runtime/kube/test_layering.py`` keeps the
    package free of import circles.
``apiserver.py``
    ``Cluster``: authentication, impersonation, the REST verbs (get, list, watch, create,
    update, patch, delete, deletecollection; status and scale subresources; dry-run;
    fieldValidation=Strict), continue tokens, Table responses. Transport-free.
``store.py``
    In-memory objects + append-only JSON log per cluster (``store.jsonl``), one
    resourceVersion counter per cluster, watch fan-out and a short event history (older
    resourceVersions get 410 Gone, as after etcd compaction).
``registry.py`` / ``kinds.py`` / ``printers.py``
    What is served (group/version/resource, scope, short names, field selectors), defaulting
    and validation with the real messages, and server-side printing columns.
``discovery.py`` / ``openapi.py``
    Legacy and aggregated (v2) discovery; OpenAPI v3 per group-version, generated lazily from
    the official Python client's model sources (descriptions for ``kubectl explain``, patch
    merge keys for client-side apply, the ``fieldValidation`` parameter kubectl checks);
    ``/openapi/v2`` as JSON Swagger 2.0 converted from the same documents (kubectl 1.37 never
    needs it: it reads v3, and asks v2 only as protobuf for ``explain
    --output=plaintext-openapiv2``, which gets 406).
``patch.py``
    JSON patch, merge patch, strategic merge patch (built-in list merge keys).
``protobuf.py``
    Decoder for the protobuf bodies client-go's typed clients always send (``kubectl create
    deployment|configmap|secret|service|namespace|sa|role|...``, ``kubectl auth can-i``).
``controllers.py``
    Run to quiescence after every write, and on the server's 10 s tick when a clock-driven
    step falls due (``has_timers``/``next_due``: a CronJob's next minute, a progress deadline,
    minReadySeconds):
    namespaces (default ServiceAccount, kube-root-ca.crt, termination), Deployment ->
    ReplicaSet (pod-template-hash, revision bookkeeping, revisionHistoryLimit, rollouts that
    wait for available pods: maxSurge/maxUnavailable, Recreate, pause, progress deadline,
    proportional scaling), ReplicaSet -> Pods (minReadySeconds, kube's scale-down order),
    StatefulSet (ordered names, OrderedReady/Parallel, rolling update from the top one ready
    pod at a time, partition) and DaemonSet (one pod per node, maxUnavailable) with
    ControllerRevision history (``kubectl rollout history|undo sts|ds``), Job -> Pods,
    CronJob -> Jobs (``cron.py``), Endpoints and EndpointSlices (one slice per selecting
    Service), ResourceQuota status, HorizontalPodAutoscaler (min/max), PodDisruptionBudget status,
    PV/PVC binding with a default StorageClass (dynamic provisioning, reclaim, protection
    finalizers), RBAC ClusterRole aggregation, garbage collection by ownerReferences
    (background, foreground, orphan), events.
``scheduler.py``
    Binds pending pods to a node in the reconcile loop (``spec.nodeName``,
    ``PodScheduled``, the ``Scheduled`` event) after kube-scheduler's filters: cordon,
    taints and tolerations, nodeSelector and required node affinity, requests against
    allocatable, topology spread constraints, pod affinity and anti-affinity; among the
    nodes that fit, its default score plugins pick (spreading a controller's pods); a pod
    that fits nowhere waits with kube-scheduler's ``FailedScheduling`` message and is bound
    as soon as a change makes room. A cluster may have several nodes (``new-cluster
    --nodes N``, a lab's ``nodes:``): views of one sandbox, all run by its one kubelet.
``nodetaints.py``
    The node lifecycle controller's NoSchedule pass: ``spec.unschedulable`` (cordon) and
    the ``node.kubernetes.io/unschedulable`` taint go together.
``kubelet.py``
    The node's kubelet (one per sandbox cluster, started by service.py): runs the pods
    bound to the node as containers of the sandbox's own Docker engine (an infra
    container per pod on the engine network ``kube-pods`` 10.244.0.0/24, which the
    pod's containers join), with kubelet's statuses, events, restarts and back-off,
    probes, volumes, graceful deletion; adopts running pods after a runtimed restart.
    ``ClusterHost`` is its thread-safe window on the cluster (everything runs on the API
    server's loop); ``KubeletIO`` serves ``podio.PodIO``.
``proxy.py``
    kube-proxy in nftables mode, one table ``ip kubelab-kube`` in the sandbox's netns,
    rewritten from Services + EndpointSlices after each kubelet sync: ClusterIP and NodePort
    (every local address, 127.0.0.1 included) to a random ready endpoint (ClientIP
    affinity by hash), named targetPorts per endpoint, REJECT without endpoints, masquerade
    for pod-to-service on the shared bridge, ``kubernetes`` (10.96.0.1:443) to the
    sandbox's API listener.
``dns.py``
    Cluster DNS (CoreDNS's kubernetes plugin): 10.96.0.10:53 UDP+TCP on the sandbox's
    ``lo``, served on the loop from the store: services, headless endpoints, StatefulSet
    pod names, SRV, pod A records, PTR; NXDOMAIN under cluster.local; other names forwarded
    to the sandbox's resolvers (SERVFAIL without). The ``kube-system/kube-dns`` Service.
``ingress.py``
    The ingress controller, as ingress-nginx: the default IngressClass ``nginx``; with the
    first Ingress, the Deployment ``ingress-nginx/ingress-nginx-controller`` (the catalog's
    nginx, hostPorts 80/443 of the sandbox); a runtimed-side controller woken by watch events
    renders nginx.conf from Ingresses, Services, EndpointSlices and TLS Secrets and pushes it
    into the nginx container (``nginx -t``, then reload); statuses and Warning events.
``podio.py``
    What the API server needs from a kubelet for ``kubectl logs``, ``exec`` and
    ``attach`` (``Cluster.pod_io``), and the wire protocol server.py speaks for them:
    chunked logs, exec/attach over WebSocket (``v5.channel.k8s.io``, ``v4``; no SPDY).
``ssa.py``
    metadata.managedFields (FieldsV1), server-side apply ownership, conflicts, force.
``crd.py`` / ``cel.py``
    CustomResourceDefinitions per cluster: the kinds they define are served (discovery,
    OpenAPI v3 for ``kubectl explain``, CRUD, watch, status subresource, scale subresource
    at the CRD's specReplicasPath/statusReplicasPath/labelSelectorPath), defaulted, pruned
    and validated against the version's openAPIV3Schema and its ``x-kubernetes-validations``
    CEL rules (a small evaluator of the common subset, transition rules with ``oldSelf``,
    ratcheting of unchanged values; rules it cannot compile make the CRD invalid), and
    printed with their additionalPrinterColumns. Every served version is reachable
    (preferred version by kube-aware priority); objects are stored in the storage version
    and converted with strategy None (apiVersion rewritten, then pruned by the read
    version's schema); deprecated versions send their ``Warning:``. Deleting a CRD deletes
    its resources.
``service.py``
    The ``kubernetes`` sandbox service: runtimed serves these clusters itself, one per
    sandbox, on a listener inside the sandbox's network namespace (127.0.0.1:6443, its
    ``/root/.kube/config``) and on a host loopback port for graders
    (``GET /v1/sandboxes/{id}/kubeconfig``).
``rbac.py``
    The RBAC authorizer, default ClusterRoles/Bindings (admin/edit/view aggregated), the
    access-review APIs (SelfSubjectAccessReview, SubjectAccessReview, SelfSubjectRulesReview,
    SelfSubjectReview), escalation prevention on Role/Binding writes (``escalate``/``bind``).
``aggregator.py``
    apiregistration.k8s.io APIServices: the local ones a real server keeps for its
    group-versions (and CRDs'), Available/Local; one backed by a Service is refused (no
    aggregation layer, so no proxy).
``portforward.py``
    ``kubectl port-forward``: SPDY/3.1 tunnelled in a WebSocket (``SPDY/3.1+portforward.k8s.io``),
    and the channel protocol (``v4.channel.k8s.io``, the Python client's); each forwarded
    connection dialled on the pod's own loopback (``PodIO.port_forward``).
``admission.py`` / ``quantity.py``
    The LimitRanger (defaults, min/max/ratio) and ResourceQuota (usage, "exceeded quota",
    "must specify") admission plugins with kube-apiserver's messages; resource quantities
    with apimachinery's canonical form (``1000m`` is stored as ``1``).

Kinds served
------------
core/v1: Namespace, ConfigMap, Secret, ServiceAccount (+token: TokenRequest with expiry),
Pod, Service, Endpoints, Node, Event, LimitRange, ResourceQuota, PersistentVolume(Claim),
ReplicationController (the ReplicaSet controller runs it, scale subresource);
apiregistration.k8s.io/v1: APIService (local ones only, ``aggregator.py``); apps/v1:
Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision; batch/v1: Job,
CronJob; autoscaling/v2: HorizontalPodAutoscaler; policy/v1: PodDisruptionBudget;
discovery.k8s.io/v1: EndpointSlice; networking.k8s.io/v1: Ingress, IngressClass,
NetworkPolicy; storage.k8s.io/v1: StorageClass; scheduling.k8s.io/v1: PriorityClass;
coordination.k8s.io/v1: Lease; rbac.authorization.k8s.io/v1: Role, RoleBinding, ClusterRole,
ClusterRoleBinding; authorization.k8s.io/v1 and authentication.k8s.io/v1 reviews;
apiextensions.k8s.io/v1: CustomResourceDefinition (and the kinds CRDs define).

Data layout: ``DIR/clusters/NAME/{cluster.json, ca.crt, ca.key, tls.crt, tls.key,
tokens.json (SHA-256 of each token, expiry of TokenRequest and minted tokens; written by
the server and ``mint-token`` under the flock of tokens.lock, re-read by the server when an
unknown token shows up), store.jsonl}``. Clusters load on first request, so a
cluster made by ``new-cluster`` while the server runs is served at once. An idle loaded
cluster costs about 0.4 MB.

TODO (later sessions), roughly in course order
-----------------------------------------------
- Part 2 left: SPDY for old clients (bare SPDY upgrades of exec/attach/port-forward are
  refused with the reason),
  sidecar init containers (``restartPolicy: Always`` in initContainers run as plain
  ones), ``subPath``, startup and grpc probes (treated as passed), CronJob history
  limits in practice.
- CRDs: conversion webhooks (strategy Webhook is refused: only None), CEL beyond cel.py's
  subset (map literals, the Kubernetes libraries: quantity, url, ip, lists; optionalOldSelf;
  cost limits), static type-checking of rules against the schema at CRD creation (a rule
  naming an undeclared field fails when evaluated, not when the CRD is written), transition
  rules inside lists (listType=map/set correlation), warnings on watch responses of
  deprecated versions, schema keywords beyond
  type/required/enum/min/max/length/pattern/items/properties.
- Rollouts: status.terminatingReplicas, the ReplicaFailure condition, adoption of orphan
  ReplicaSets by a Deployment, StatefulSet maxUnavailable and minReadySeconds waits,
  DaemonSet maxSurge; minReadySeconds and progress deadlines are seen on the 10 s tick.
- Kinds not served yet: events.k8s.io/v1, autoscaling/v1, VolumeAttachment, CSI objects.
  The HPA only clamps replicas to [min, max] (no metrics server); PDBs are reported, not
  enforced by an eviction API. EndpointSlices are IPv4 only, one per Service (no 100-endpoint
  split, no topology hints, no mirroring of selector-less Endpoints).
- ResourceQuota: PriorityClass and CrossNamespacePodAffinity scopes, scopeSelector,
  extended resources; quota and LimitRange are checked on create only (real admission also
  checks updates, e.g. a Service turned LoadBalancer or a PVC resized).
- OpenAPI: schemas of core types used by other groups are named after the using group
  (``io.k8s.api.apps.v1.PodSpec``), consistent inside each document but not real names;
  /openapi/v2 is not served as protobuf.
- protobuf.py covers the bodies of kubectl's generators for the kinds served; a protobuf
  body of any other kind gets 415 UnsupportedMediaType.
- Server-side apply: "." markers for maps and subresource ("scale") entries in
  managedFields; kubectl scale/label etc. are recorded under the User-Agent manager name.
- RBAC: the full set of system: roles, non-resource URL rules in SelfSubjectRulesReview.
- Tokens: TokenRequest boundObjectRef (pod-bound tokens that die with the pod), audiences are
  recorded but not checked; minted per-user tokens cannot be revoked one by one (they die
  with their ttl or the cluster).
- Watch: periodic bookmarks while events flow (sent only when idle today),
  resourceVersionMatch=Exact for lists.
- Evict idle clusters from memory (LRU) when thousands exist; store compaction runs only
  on write.
"""

from __future__ import annotations
