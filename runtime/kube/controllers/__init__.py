"""kube-controller-manager: the controllers and the manager that runs them."""

from __future__ import annotations
