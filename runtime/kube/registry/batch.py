"""Strategies of the batch group (pkg/registry/batch/<resource>/strategy.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.rest import Strategy, WorkloadStatusReset

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster


def generate_job_selector(obj: Obj) -> None:
    """job/strategy.go generateSelector: unless spec.manualSelector, the Job's pods carry its
    uid and name as labels and the selector is its uid (the object's labels default to them)."""
    spec = obj.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    uid, name = obj["metadata"]["uid"], obj["metadata"].get("name", "")
    gen = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), **gen}
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    if not obj["metadata"].get("labels"):
        obj["metadata"]["labels"] = dict(tmeta["labels"])


class JobStrategy(Strategy):
    printer = printers.JOB
    pod_template_path = ("spec", "template")

    def default(self, obj: Obj) -> None:
        kinds.default_job(obj)

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        obj["status"] = {}
        generate_job_selector(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_job(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_job_update(new, old)


class CronJobStrategy(WorkloadStatusReset):
    printer = printers.CRON_JOB
    pod_template_path = ("spec", "jobTemplate", "spec", "template")

    def default(self, obj: Obj) -> None:
        kinds.default_cronjob(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_cronjob(obj)


STRATEGIES: dict[str, Strategy] = {
    "jobs.batch": JobStrategy(),
    "cronjobs.batch": CronJobStrategy(),
}
