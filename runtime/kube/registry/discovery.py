"""Strategies of the discovery.k8s.io group (pkg/registry/discovery/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.registry import printers
from runtime.kube.registry.rest import Printed, Strategy

STRATEGIES: dict[str, Strategy] = {"endpointslices.discovery.k8s.io": Printed(printers.ENDPOINT_SLICE)}
