"""Strategies of the storage.k8s.io group (pkg/registry/storage/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.rest import Strategy


class StorageClassStrategy(Strategy):
    printer = printers.STORAGE_CLASS

    def default(self, obj: Obj) -> None:
        kinds.default_storageclass(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_storageclass(obj)


STRATEGIES: dict[str, Strategy] = {"storageclasses.storage.k8s.io": StorageClassStrategy()}
