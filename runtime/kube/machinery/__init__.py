"""k8s.io/apimachinery: the API's building blocks, with no knowledge of any resource.

``apierrors.py``
    ``ApiError`` and the ``metav1.Status`` shapes (field errors, causes) with kube's messages.
``quantity.py``
    Resource quantities, exact, with apimachinery's canonical form (``1000m`` is ``1``).
``selectors.py``
    Label and field selectors (parse, match, print).
``patch.py``
    JSON patch, merge patch, strategic merge patch; list merge keys from ``upstream``, read
    by the patcher, ``ssa`` and the served OpenAPI.
``upstream.py``
    Upstream's generated.proto files (vendored in runtime/kube/upstream): field numbers and
    types, and the patchMergeKey/patchStrategy/listType markers of every served type.
``ssa.py``
    metadata.managedFields (FieldsV1), server-side apply ownership, conflicts, force.
``cel.py``
    The CEL subset of CRD ``x-kubernetes-validations`` (transition rules with ``oldSelf``).
``cron.py``
    CronJob schedules (five fields, names, macros; UTC or the CronJob's timeZone).
``protobuf.py``
    Decoder for the protobuf bodies client-go's typed clients send (``kubectl create ...``,
    ``kubectl auth can-i``); its field table is checked against ``upstream``.
``limits.py``
    What bounds one cluster (objects, bytes, watches, request sizes), with kube-apiserver's
    and etcd's answers when a bound is reached.

Imports only ``runtime.kube.meta`` and itself (tests/runtime/kube/test_layering.py).
"""

from __future__ import annotations
