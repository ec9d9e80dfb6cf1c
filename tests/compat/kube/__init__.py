"""The lab cluster's API server seen by real clients: ``kubectl`` 1.37 and the pinned
``kubernetes`` Python client, used as oracles (issue #15).

Each test drives one real client against the real HTTP app (``runtime.kube.apiserver.server``)
and asserts what the client itself makes of the answer: the typed Python client
deserialises every response into its models (so a field the OpenAPI marks required and
the server leaves out fails the test), kubectl prints and exits as against a real
cluster. Expectations come from the Kubernetes API conventions, the official OpenAPI
(the Python client's models are generated from it) and kube-apiserver's behaviour, not
from our implementation.

Counting (``bench/compat.py``): every test module says which client it drives in a
module constant ``CLIENT`` (``"kubectl"`` or ``"kubernetes-python"``); the module names
follow it too (``test_kubectl_*.py``, ``test_pyclient_*.py``).

The server runs in-process (``conftest.py``) with a PodIO whose streams are real host
processes (``tests/runtime/kube/apiserver/test_pod_io.py``), so exec/attach/logs go through the
real WebSocket and chunked-log code paths without a sandbox: nothing here needs root or
the shared test lock.
"""
