"""The clusterrole-aggregation controller (pkg/controller/clusterroleaggregation)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from runtime.kube import registry
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.apiserver.client import Client
    from runtime.kube.apiserver.cluster import Cluster


def aggregate(cluster: Cluster, client: Client) -> None:
    """The clusterrole-aggregation controller: rules of an aggregated ClusterRole are the
    union of the rules of every ClusterRole its aggregationRule selects."""
    gr = "clusterroles.rbac.authorization.k8s.io"
    rdef = registry.BY_GR[gr]
    roles = cluster.store.list(gr)
    for role in roles:
        agg = role.get("aggregationRule")
        if not isinstance(agg, dict):
            continue
        preds = [selector_from_match(s) for s in agg.get("clusterRoleSelectors") or []]
        rules: list[Obj] = []
        for other in roles:
            if other["metadata"]["name"] == role["metadata"]["name"]:
                continue
            if any(p(other) for p in preds):
                for r in other.get("rules") or []:
                    if r not in rules:
                        rules.append(r)
        if rules != (role.get("rules") or []):

            def set_rules(n: Obj, rules: list[Obj] = rules) -> bool:
                n["rules"] = copy.deepcopy(rules)
                return True

            client.modify(rdef, "", role["metadata"]["name"], set_rules)
