"""Strategies of the coordination.k8s.io group (pkg/registry/coordination/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.registry import printers
from runtime.kube.registry.rest import Printed, Strategy

STRATEGIES: dict[str, Strategy] = {"leases.coordination.k8s.io": Printed(printers.LEASE)}
