"""The Job controller (pkg/controller/job): pods to completions, parallelism, backoffLimit."""

from __future__ import annotations

import copy

from runtime.kernel.clock import now_ts
from runtime.kube.controllers.base import PODS, ControllerBase, R, controlled_by, job_finished, owner_ref
from runtime.kube.meta import Obj


class JobController(ControllerBase):
    def _jobs(self) -> None:
        JOBS = R["jobs.batch"]
        for job in self.c.store.list(JOBS.gr):
            meta, spec = job["metadata"], job.get("spec") or {}
            if meta.get("deletionTimestamp"):
                continue
            ns = meta["namespace"]
            st = job.get("status") or {}
            pods = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, job)]
            succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
            failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
            active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            completions = spec.get("completions")
            parallelism = int(spec.get("parallelism", 1))
            want = parallelism
            if completions is not None:
                want = min(parallelism, int(completions) - succeeded)
            finished = job_finished(job)
            if spec.get("suspend") or finished or (completions is None and succeeded):
                want = 0
            for _ in range(max(0, want - len(active))):
                tmpl = spec.get("template") or {}
                pmeta = copy.deepcopy(tmpl.get("metadata") or {})
                pmeta.pop("creationTimestamp", None)
                pmeta["generateName"] = meta["name"] + "-"
                pmeta["namespace"] = ns
                pmeta["ownerReferences"] = [owner_ref(job)]
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": pmeta,
                    "spec": copy.deepcopy(tmpl.get("spec") or {}),
                }
                created = self._create_pod(job, pod, "job-controller")
                if created is None:
                    break
                active.append(created)
                self.event(
                    job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", "job-controller"
                )
            cur = self.c.store.get(JOBS.gr, ns, meta["name"])
            if cur is None:
                continue
            new_st: Obj = dict(cur.get("status") or {})
            if not spec.get("suspend"):
                new_st.setdefault("startTime", now_ts())
            new_st.update({"ready": 0, "terminating": 0, "uncountedTerminatedPods": {}})
            for k, v in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
                if v:
                    new_st[k] = v
                else:
                    new_st.pop(k, None)
            # pod phases come from the kubelet: the job-controller's terminal conditions
            done = ""
            if not finished and not active and succeeded >= int(completions if completions is not None else 1):
                done, reason, msg = "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
            elif not finished and failed > int(spec.get("backoffLimit", 6)):
                done, reason, msg = "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            if done:
                ts = now_ts()
                first = "SuccessCriteriaMet" if done == "Complete" else "FailureTarget"
                new_st["conditions"] = [*(new_st.get("conditions") or [])] + [
                    {"type": t, "status": "True", "lastProbeTime": ts, "lastTransitionTime": ts}
                    | {"reason": reason, "message": msg}
                    for t in (first, done)
                ]
                if done == "Complete":
                    new_st["completionTime"] = ts
            if new_st != st:
                n = copy.deepcopy(cur)
                n["status"] = new_st
                self.client.update_status(JOBS, n)
