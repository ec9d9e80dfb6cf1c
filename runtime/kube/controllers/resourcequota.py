"""The ResourceQuota controller (pkg/controller/resourcequota): status.used of each quota."""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import ControllerBase, R
from runtime.kube.registry.quota import quota_status


class ResourceQuotaController(ControllerBase):
    def _quotas(self) -> None:
        """The resource quota controller: status.hard from spec.hard, status.used recounted."""
        RQ = R["resourcequotas"]
        for q in self.c.store.list(RQ.gr):
            st = quota_status(self.c, q)
            if q.get("status") != st:
                n = copy.deepcopy(q)
                n["status"] = st
                self.client.update_status(RQ, n)
