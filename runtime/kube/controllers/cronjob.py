"""The CronJob controller (pkg/controller/cronjob): Jobs at the schedule's times (machinery/cron.py)."""

from __future__ import annotations

import copy
import datetime

from runtime.kernel.clock import format_ts, parse_time
from runtime.kube.controllers.base import ControllerBase, R, controlled_by, job_finished, owner_ref
from runtime.kube.machinery.cron import CronError, Schedule
from runtime.kube.meta import Obj


class CronJobController(ControllerBase):
    def _cronjobs(self) -> None:

        CJ, JOBS = R["cronjobs.batch"], R["jobs.batch"]
        now = datetime.datetime.now(datetime.UTC)
        for cj in self.c.store.list(CJ.gr):
            meta, spec = cj["metadata"], cj.get("spec") or {}
            if meta.get("deletionTimestamp"):
                continue
            ns, name = meta["namespace"], meta["name"]
            st = cj.get("status") or {}
            jobs = [j for j in self.c.store.list(JOBS.gr, ns) if controlled_by(j, cj)]
            running = [j for j in jobs if not job_finished(j)]
            new_st: Obj = dict(st)
            due = None
            if not spec.get("suspend"):
                try:
                    sched = Schedule(spec.get("schedule", ""), spec.get("timeZone"))
                except CronError:
                    continue
                last = parse_time(st.get("lastScheduleTime")) or parse_time(meta.get("creationTimestamp")) or now
                due = sched.last_between(last, now)
            policy = spec.get("concurrencyPolicy", "Allow")
            if due is not None and not (policy == "Forbid" and running):
                if policy == "Replace":
                    for j in running:  # deleteJob: propagationPolicy Background
                        self.client.delete(JOBS, ns, j["metadata"]["name"], "Background", uid=j["metadata"]["uid"])
                    running = []
                jt = spec.get("jobTemplate") or {}
                jmeta = copy.deepcopy(jt.get("metadata") or {})
                jmeta.pop("creationTimestamp", None)
                jname = f"{name}-{int(due.timestamp()) // 60}"
                jmeta.update({"name": jname, "namespace": ns, "ownerReferences": [owner_ref(cj)]})
                jmeta.setdefault("annotations", {})["batch.kubernetes.io/cronjob-scheduled-timestamp"] = format_ts(due)
                job = {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": jmeta,
                    "spec": copy.deepcopy(jt.get("spec") or {}),
                }
                if self.c.store.get(JOBS.gr, ns, jname) is None:
                    created = self._create(JOBS, job)
                    running.append(created)
                    self.event(cj, "Normal", "SuccessfulCreate", f"Created job {jname}", "cronjob-controller")
                new_st["lastScheduleTime"] = format_ts(due)
            active = [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": j["metadata"]["name"],
                    "namespace": ns,
                    "resourceVersion": j["metadata"].get("resourceVersion", ""),
                    "uid": j["metadata"]["uid"],
                }
                for j in running
            ]
            if active:
                new_st["active"] = active
            else:
                new_st.pop("active", None)
            # history limits for finished jobs
            for kind_, limit in (
                ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                ("Failed", spec.get("failedJobsHistoryLimit", 1)),
            ):
                done = sorted(
                    (j for j in jobs if job_finished(j) == kind_), key=lambda j: j["metadata"]["creationTimestamp"]
                )
                for j in done[: max(0, len(done) - int(limit))]:
                    self.client.delete(JOBS, ns, j["metadata"]["name"], "Background", uid=j["metadata"]["uid"])
            if new_st != st:
                cur = self.c.store.get(CJ.gr, ns, name)
                if cur is not None:
                    n = copy.deepcopy(cur)
                    n["status"] = new_st
                    self.client.update_status(CJ, n)
