"""Job records and the AWS Batch job state machine, without any I/O.

Everything here is plain data and decisions: which job moves to which state
at a given time, which job may start on which compute environment, whether a
failed attempt is retried, how an array parent summarises its children.
Processes, HTTP and moto are handled elsewhere (``runner``, ``api``,
``server``); they call into :class:`JobStore` under one lock and carry out
the :class:`StartAction` values it returns. This keeps the scheduling rules
testable without starting a single process.

States follow https://docs.aws.amazon.com/batch/latest/userguide/job_states.html:
SUBMITTED -> PENDING -> RUNNABLE -> STARTING -> RUNNING -> SUCCEEDED | FAILED,
with a non-zero exit and attempts left going back to RUNNABLE.

Known simplifications: CancelJob fails a PENDING job at once (AWS waits until
its dependencies finish); every job passes through PENDING, even without
dependencies; each ``advance`` walks all unfinished jobs once (linear in their number).
An array parent keeps counters of its children's states, updated on every child status
change, so summarising or refreshing it never scans its children (only its final
``startedAt`` does, once).
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any, Callable, Iterable, Mapping

SUBMITTED = "SUBMITTED"
PENDING = "PENDING"
RUNNABLE = "RUNNABLE"
STARTING = "STARTING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
STATES = (SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED, FAILED)
FINAL = frozenset((SUCCEEDED, FAILED))
NOT_STARTED = frozenset((SUBMITTED, PENDING, RUNNABLE))

# AWS wording, as seen in DescribeJobs.
REASON_EXITED = "Essential container in task exited"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
REASON_DEPENDENCY = "Dependent Job failed"
REASON_START_FAILED = "Task failed to start"
REASON_TOO_BIG = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement "
    "(vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the job queue."
)

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_DESCRIBE = 100
MAX_DEPENDS_ON = 20
MAX_ARRAY_SIZE = 10000


class ClientError(Exception):
    """A request AWS would refuse with ``ClientException`` (HTTP 400)."""


def now_ms(clock: float) -> int:
    return int(clock * 1000)


def validate_job_name(name: Any) -> None:
    """AWS: 1-128 chars, first alphanumeric, then letters, digits, '-' and '_'."""
    if not isinstance(name, str) or not JOB_NAME_RE.match(name):
        raise ClientError(
            "Error executing request, Exception : Job name should match valid pattern"
        )


def glob_match(pattern: str, value: str | None) -> bool:
    """evaluateOnExit patterns: exact text, or a prefix when ending in ``*``."""
    if value is None:
        return False
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def retry_decision(
    rules: Iterable[Mapping[str, str]],
    exit_code: int | None,
    status_reason: str | None,
    reason: str | None,
) -> str:
    """Return "RETRY" or "EXIT" for a failed attempt.

    The first rule whose given conditions all match decides; if none matches
    the job is retried (AWS documents this, hence its advice to end with a
    catch-all EXIT rule).
    """
    for rule in rules or ():
        checks = []
        if "onExitCode" in rule:
            checks.append(glob_match(rule["onExitCode"], None if exit_code is None else str(exit_code)))
        if "onStatusReason" in rule:
            checks.append(glob_match(rule["onStatusReason"], status_reason))
        if "onReason" in rule:
            checks.append(glob_match(rule["onReason"], reason))
        if all(checks):
            return str(rule.get("action", "RETRY")).upper()
    return "RETRY"


def substitute_parameters(command: list[str], parameters: Mapping[str, str]) -> list[str]:
    """Replace ``Ref::name`` placeholders; longer names first so ``Ref::ab`` beats ``Ref::a``."""
    names = sorted(parameters, key=len, reverse=True)
    out = []
    for arg in command:
        for name in names:
            arg = arg.replace(f"Ref::{name}", str(parameters[name]))
        out.append(arg)
    return out


@dataclasses.dataclass
class Attempt:
    """One try of a job: what DescribeJobs shows in ``attempts[]``."""

    task_id: str
    task_arn: str
    container_instance_arn: str
    log_stream_name: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    status_reason: str | None = None

    def container_fields(self) -> dict[str, Any]:
        """What this attempt contributes to a ``container`` block (attempt's or job's)."""
        container: dict[str, Any] = {
            "containerInstanceArn": self.container_instance_arn,
            "taskArn": self.task_arn,
            "networkInterfaces": [],
        }
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.reason:
            container["reason"] = self.reason
        if self.log_stream_name:
            container["logStreamName"] = self.log_stream_name
        return container

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"container": self.container_fields()}
        if self.started_at is not None:
            out["startedAt"] = self.started_at
        if self.stopped_at is not None:
            out["stoppedAt"] = self.stopped_at
        if self.status_reason:
            out["statusReason"] = self.status_reason
        return out


@dataclasses.dataclass
class JobSpec:
    """A validated SubmitJob request with every entity already resolved."""

    name: str
    queue_name: str
    queue_arn: str
    ce_order: list[str]  # compute environment names, in the queue's order
    jobdef_name: str
    jobdef_arn: str
    command: list[str]
    environment: dict[str, str]  # job definition + overrides, user-visible
    vcpus: float = 1.0
    memory: int | None = None
    image: str = ""
    container_extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    timeout: int | None = None
    retry_strategy: dict[str, Any] | None = None
    depends_on: list[dict[str, str]] = dataclasses.field(default_factory=list)
    array_size: int | None = None
    propagate_tags: bool | None = None


@dataclasses.dataclass
class JobRecord:
    """Everything we know about one job (an array child is a job too)."""

    job_id: str
    spec: JobSpec
    arn: str
    created_at: int
    status: str = SUBMITTED
    state_since: float = 0.0  # emulator clock (seconds) of the last change
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    current: Attempt | None = None
    is_cancelled: bool = False
    is_terminated: bool = False
    # array bookkeeping
    parent_id: str | None = None
    array_index: int | None = None
    children: list[str] = dataclasses.field(default_factory=list)
    child_counts: dict[str, int] = dataclasses.field(default_factory=dict)  # status -> n
    # scheduling bookkeeping
    waits_for: set[str] = dataclasses.field(default_factory=set)
    ce_name: str | None = None
    kill_reason: str | None = None  # set when a running attempt must be stopped
    kill_kind: str | None = None  # "terminate" or "timeout"
    deadline: float | None = None  # emulator clock; attempt timeout
    history: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    seq: int = 0  # submission order, for FIFO scheduling

    @property
    def attempt_number(self) -> int:
        return len(self.attempts)

    @property
    def is_array_parent(self) -> bool:
        return self.spec.array_size is not None and self.parent_id is None

    @property
    def max_attempts(self) -> int:
        rs = self.spec.retry_strategy or {}
        return int(rs.get("attempts") or 1)


@dataclasses.dataclass
class StartAction:
    """Tells the runner to start an attempt of ``job_id`` on ``ce_name``."""

    job_id: str
    attempt: int
    ce_name: str


class JobStore:
    """All jobs of one emulator, and the rules that move them.

    Not thread-safe by itself: the caller holds one lock around every call.
    ``clock`` values are seconds (``time.time()`` in production); timestamps
    shown to clients are epoch milliseconds derived from them.
    """

    def __init__(self, region: str, account_id: str, state_delay: float = 0.0):
        self.region = region
        self.account_id = account_id
        self.state_delay = state_delay
        self.jobs: dict[str, JobRecord] = {}
        self.order: list[str] = []  # submission order of top-level jobs
        self.waiters: dict[str, set[str]] = {}  # job id -> jobs waiting for it
        self.active: set[str] = set()  # not final, not an array parent
        self.ce_used: dict[str, float] = {}
        self._seq = 0
        self.child_scans = 0  # walks over an array parent's children (tests keep this low)

    # ---- submission -------------------------------------------------------------
    def _arn(self, job_id: str) -> str:
        return f"arn:aws:batch:{self.region}:{self.account_id}:job/{job_id}"

    def _set(self, rec: JobRecord, status: str, clock: float, reason: str | None = None) -> None:
        if rec.parent_id is not None and status != rec.status:
            counts = self.jobs[rec.parent_id].child_counts
            counts[rec.status] -= 1
            counts[status] = counts.get(status, 0) + 1
        rec.status = status
        rec.state_since = clock
        if reason is not None:
            rec.status_reason = reason
        rec.history.append((status, now_ms(clock)))

    def submit(self, spec: JobSpec, clock: float, job_id: str | None = None) -> JobRecord:
        """Add a job (and its array children); dependency ids must already exist."""
        job_id = job_id or str(uuid.uuid4())
        deps: set[str] = set()
        n_to_n: list[str] = []
        sequential = False
        for dep in spec.depends_on:
            dep_type = dep.get("type")
            if dep_type == "SEQUENTIAL" and not dep.get("jobId"):
                if spec.array_size is None:
                    raise ClientError("SEQUENTIAL dependency is only valid for array jobs")
                sequential = True
                continue
            dep_id = dep.get("jobId")
            if not dep_id or dep_id not in self.jobs:
                raise ClientError(f"Dependent job {dep_id} does not exist")
            if dep_type == "N_TO_N":
                other = self.jobs[dep_id]
                if spec.array_size is None or other.spec.array_size != spec.array_size or other.parent_id:
                    raise ClientError("N_TO_N dependency requires array jobs of the same size")
                n_to_n.append(dep_id)
            else:
                deps.add(dep_id)
        rec = JobRecord(job_id, spec, self._arn(job_id), now_ms(clock), state_since=clock)
        rec.history.append((SUBMITTED, rec.created_at))
        rec.seq = self._seq = self._seq + 1
        self.jobs[job_id] = rec
        self.order.append(job_id)
        if spec.array_size is None:
            self._wait_on(rec, deps)
            self.active.add(job_id)
            return rec
        rec.child_counts = {SUBMITTED: spec.array_size}
        for i in range(spec.array_size):
            cid = f"{job_id}:{i}"
            child = JobRecord(cid, spec, self._arn(cid), rec.created_at, state_since=clock,
                              parent_id=job_id, array_index=i)
            child.history.append((SUBMITTED, rec.created_at))
            child.seq = self._seq = self._seq + 1
            self.jobs[cid] = child
            rec.children.append(cid)
            cdeps = set(deps)
            cdeps.update(f"{d}:{i}" for d in n_to_n)
            if sequential and i > 0:
                cdeps.add(f"{job_id}:{i - 1}")
            self._wait_on(child, cdeps)
            self.active.add(cid)
        return rec

    def _wait_on(self, rec: JobRecord, deps: set[str]) -> None:
        for dep in deps:
            if dep in self.jobs and self.jobs[dep].status == SUCCEEDED:
                continue
            rec.waits_for.add(dep)
            self.waiters.setdefault(dep, set()).add(rec.job_id)

    # ---- time-driven progress -------------------------------------------------------
    def advance(
        self,
        clock: float,
        ce_limits: Mapping[str, float],
        queue_enabled: Callable[[str], bool] = lambda _q: True,
    ) -> list[StartAction]:
        """Move jobs forward as far as allowed at ``clock``; return attempts to start.

        ``ce_limits`` maps an ENABLED compute environment name to its vCPU
        capacity; a CE missing from it gets no new jobs.
        """
        delay = self.state_delay
        actions: list[StartAction] = []
        runnable: list[JobRecord] = []
        for job_id in list(self.active):
            rec = self.jobs[job_id]
            if rec.status == SUBMITTED and clock - rec.state_since >= delay:
                self._set(rec, PENDING, clock)
            if rec.status == PENDING and clock - rec.state_since >= delay:
                if self._dependency_failed(rec):
                    self._finish_unstarted(rec, clock, REASON_DEPENDENCY)
                    continue
                if not rec.waits_for:
                    self._set(rec, RUNNABLE, clock)
            if rec.status == RUNNABLE and clock - rec.state_since >= delay:
                runnable.append(rec)
        # each parent once per pass (its counters are already up to date)
        for parent in {self.jobs[j].parent_id for j in self.active if self.jobs[j].parent_id}:
            self._refresh_parent(parent, clock)
        # FIFO, as a single-queue Batch scheduler does.
        runnable.sort(key=lambda r: r.seq)
        for rec in runnable:
            ce = self._place(rec, ce_limits)
            if ce is None:
                continue
            self.ce_used[ce] = self.ce_used.get(ce, 0.0) + rec.spec.vcpus
            rec.ce_name = ce
            rec.status_reason = None
            self._set(rec, STARTING, clock)
            actions.append(StartAction(rec.job_id, rec.attempt_number + 1, ce))
        return actions

    def _place(self, rec: JobRecord, ce_limits: Mapping[str, float]) -> str | None:
        need = rec.spec.vcpus
        known = [ce for ce in rec.spec.ce_order if ce in ce_limits]
        if known and all(need > ce_limits[ce] for ce in known):
            rec.status_reason = REASON_TOO_BIG
            return None
        for ce in known:
            if self.ce_used.get(ce, 0.0) + need <= ce_limits[ce] + 1e-9:
                return ce
        return None

    def _dependency_failed(self, rec: JobRecord) -> bool:
        return any(self.jobs[d].status == FAILED for d in rec.waits_for if d in self.jobs)

    def next_wakeup(self, clock: float) -> float | None:
        """Seconds until the store wants ``advance`` again (None: only on events)."""
        best: float | None = None
        for job_id in self.active:
            rec = self.jobs[job_id]
            if rec.status in (SUBMITTED, PENDING, RUNNABLE) and self.state_delay > 0:
                t = rec.state_since + self.state_delay - clock
                best = t if best is None else min(best, t)
            if rec.deadline is not None and rec.kill_reason is None:
                t = rec.deadline - clock
                best = t if best is None else min(best, t)
        return None if best is None else max(best, 0.0)

    def due_timeouts(self, clock: float) -> list[str]:
        """Running attempts past their timeout; they are marked for killing."""
        out = []
        for job_id in self.active:
            rec = self.jobs[job_id]
            if rec.status == RUNNING and rec.deadline is not None and rec.kill_reason is None \
                    and clock >= rec.deadline:
                rec.kill_reason = REASON_TIMEOUT
                rec.kill_kind = "timeout"
                out.append(job_id)
        return out

    # ---- runner callbacks -----------------------------------------------------------
    def new_attempt(self, job_id: str, task_id: str, cluster: str) -> Attempt:
        rec = self.jobs[job_id]
        base = f"arn:aws:ecs:{self.region}:{self.account_id}"
        att = Attempt(
            task_id=task_id,
            task_arn=f"{base}:task/{cluster}/{task_id}",
            container_instance_arn=f"{base}:container-instance/{cluster}/{uuid.uuid4().hex}",
        )
        rec.attempts.append(att)
        rec.current = att
        return att

    def mark_running(self, job_id: str, clock: float, log_stream: str) -> None:
        rec = self.jobs[job_id]
        att = rec.current
        assert att is not None
        att.started_at = now_ms(clock)
        att.log_stream_name = log_stream
        rec.started_at = att.started_at
        if rec.spec.timeout:
            rec.deadline = clock + rec.spec.timeout
        self._set(rec, RUNNING, clock)

    def mark_stopped(self, job_id: str, clock: float, exit_code: int | None,
                     container_reason: str | None = None) -> None:
        """An attempt ended: decide SUCCEEDED, FAILED or another attempt.  A job that is
        already final (abandoned at shutdown, say) is left as it is."""
        rec = self.jobs[job_id]
        if rec.status in FINAL:
            return
        att = rec.current
        assert att is not None
        att.stopped_at = now_ms(clock)
        att.exit_code = exit_code
        att.reason = container_reason
        if rec.kill_reason is not None:
            att.status_reason = rec.kill_reason
        elif exit_code is None:
            att.status_reason = REASON_START_FAILED
        else:
            att.status_reason = REASON_EXITED
        if rec.ce_name:
            self.ce_used[rec.ce_name] = max(0.0, self.ce_used.get(rec.ce_name, 0.0) - rec.spec.vcpus)
        rec.deadline = None
        if exit_code == 0 and rec.kill_reason is None:
            self._finish(rec, SUCCEEDED, clock, att.status_reason)
            return
        retry = (
            rec.kill_reason is None
            and rec.attempt_number < rec.max_attempts
            and retry_decision((rec.spec.retry_strategy or {}).get("evaluateOnExit") or [],
                               exit_code, att.status_reason, container_reason) == "RETRY"
        )
        if retry:
            rec.current = None
            rec.ce_name = None
            self._set(rec, RUNNABLE, clock, att.status_reason)
            return
        if rec.kill_kind == "terminate":
            rec.is_terminated = True
        self._finish(rec, FAILED, clock, att.status_reason)

    def _finish(self, rec: JobRecord, status: str, clock: float, reason: str | None) -> None:
        rec.stopped_at = now_ms(clock)
        self._set(rec, status, clock, reason)
        self.active.discard(rec.job_id)
        self._wake_waiters(rec.job_id, clock)
        if rec.parent_id:
            self._refresh_parent(rec.parent_id, clock)

    def _finish_unstarted(self, rec: JobRecord, clock: float, reason: str) -> None:
        if rec.status == RUNNABLE and rec.ce_name:
            rec.ce_name = None
        self._finish(rec, FAILED, clock, reason)

    def _wake_waiters(self, job_id: str, clock: float) -> None:
        status = self.jobs[job_id].status
        for wid in self.waiters.pop(job_id, set()):
            waiter = self.jobs[wid]
            if status == SUCCEEDED:
                waiter.waits_for.discard(job_id)
            # A failure is picked up by ``advance`` (PENDING -> FAILED), which also
            # honours the configured state delay.

    def _refresh_parent(self, parent_id: str, clock: float) -> None:
        """Array parent: PENDING while children run, final when all are final."""
        parent = self.jobs[parent_id]
        if parent.status in FINAL:
            return
        counts = parent.child_counts
        n = len(parent.children)
        if counts.get(SUCCEEDED, 0) + counts.get(FAILED, 0) == n:
            status = FAILED if counts.get(FAILED, 0) else SUCCEEDED
            reason = ("Array Child Job failed" if status == FAILED
                      else "All Array Child Jobs succeeded")
            self.child_scans += 1
            starts = [self.jobs[c].started_at for c in parent.children if self.jobs[c].started_at]
            parent.started_at = min(starts) if starts else None
            self._finish(parent, status, clock, reason)
        elif parent.status == SUBMITTED and counts.get(SUBMITTED, 0) < n:
            self._set(parent, PENDING, clock)

    # ---- user requests ---------------------------------------------------------------
    def cancel(self, job_id: str, reason: str, clock: float) -> None:
        """CancelJob: only jobs that have not started; a no-op otherwise."""
        rec = self.jobs.get(job_id)
        if rec is None or rec.status in FINAL:
            return
        if rec.is_array_parent:
            for cid in rec.children:
                self.cancel(cid, reason, clock)
            return
        if rec.status in NOT_STARTED:
            rec.is_cancelled = True
            self._finish_unstarted(rec, clock, reason)

    def terminate(self, job_id: str, reason: str, clock: float) -> list[str]:
        """TerminateJob: cancel unstarted jobs, mark started ones for killing.

        Returns the ids whose processes must be stopped now; they become FAILED
        once the process is gone (``mark_stopped``).
        """
        rec = self.jobs.get(job_id)
        if rec is None or rec.status in FINAL:
            return []
        if rec.is_array_parent:
            out: list[str] = []
            for cid in rec.children:
                out += self.terminate(cid, reason, clock)
            return out
        if rec.status in NOT_STARTED:
            rec.is_terminated = True
            self._finish_unstarted(rec, clock, reason)
            return []
        if rec.kill_reason is None or rec.kill_kind == "timeout":
            rec.kill_reason = reason
            rec.kill_kind = "terminate"
        return [job_id]

    def abandon(self, job_id: str, clock: float, reason: str) -> None:
        """Emulator shutdown: fail a job that will never finish."""
        rec = self.jobs.get(job_id)
        if rec is None or rec.status in FINAL:
            return
        if rec.status in (STARTING, RUNNING) and rec.current is not None:
            rec.kill_reason = reason
            self.mark_stopped(job_id, clock, None)
        else:
            self._finish_unstarted(rec, clock, reason)

    # ---- reading ----------------------------------------------------------------------
    def status_summary(self, rec: JobRecord) -> dict[str, int]:
        summary = {s: 0 for s in STATES}
        summary.update(rec.child_counts)
        return summary

    def describe(self, rec: JobRecord) -> dict[str, Any]:
        """A JobDetail as DescribeJobs returns it."""
        spec = rec.spec
        out: dict[str, Any] = {
            "jobArn": rec.arn,
            "jobName": spec.name,
            "jobId": rec.job_id,
            "jobQueue": spec.queue_arn,
            "status": rec.status,
            "attempts": [a.describe() for a in rec.attempts],
            "createdAt": rec.created_at,
            "dependsOn": list(spec.depends_on) if rec.parent_id is None else self._child_deps(rec),
            "jobDefinition": spec.jobdef_arn,
            "parameters": dict(spec.parameters),
            "tags": dict(spec.tags),
            "platformCapabilities": [],
            "eksAttempts": [],
            "isCancelled": rec.is_cancelled,
            "isTerminated": rec.is_terminated,
        }
        if spec.propagate_tags is not None:
            out["propagateTags"] = spec.propagate_tags
        _add_reason_and_times(out, rec)
        if spec.timeout:
            out["timeout"] = {"attemptDurationSeconds": spec.timeout}
        if spec.retry_strategy:
            out["retryStrategy"] = spec.retry_strategy
        if rec.is_array_parent:
            out["arrayProperties"] = {"statusSummary": self.status_summary(rec),
                                      "size": spec.array_size}
        elif rec.parent_id is not None:
            out["arrayProperties"] = {"index": rec.array_index}
        out["container"] = self._container(rec)
        return out

    def _child_deps(self, rec: JobRecord) -> list[dict[str, str]]:
        deps = []
        for dep in rec.spec.depends_on:
            if dep.get("type") == "N_TO_N":
                deps.append({"jobId": f"{dep['jobId']}:{rec.array_index}", "type": "N_TO_N"})
            elif dep.get("type") == "SEQUENTIAL":
                if rec.array_index:
                    deps.append({"jobId": f"{rec.parent_id}:{rec.array_index - 1}",
                                 "type": "SEQUENTIAL"})
            else:
                deps.append(dict(dep))
        return deps

    def _container(self, rec: JobRecord) -> dict[str, Any]:
        spec = rec.spec
        c: dict[str, Any] = dict(spec.container_extra)
        c.update({
            "image": spec.image,
            "command": list(spec.command),
            "environment": [{"name": k, "value": v} for k, v in spec.environment.items()],
            "vcpus": spec.vcpus if spec.vcpus != int(spec.vcpus) else int(spec.vcpus),
        })
        if spec.memory is not None:
            c["memory"] = spec.memory
        att = rec.attempts[-1] if rec.attempts else None
        if att is not None:
            c.update(att.container_fields())
        return c

    def summary(self, rec: JobRecord) -> dict[str, Any]:
        """A JobSummary as ListJobs returns it."""
        out: dict[str, Any] = {
            "jobArn": rec.arn,
            "jobId": rec.job_id,
            "jobName": rec.spec.name,
            "createdAt": rec.created_at,
            "status": rec.status,
            "jobDefinition": rec.spec.jobdef_arn,
        }
        _add_reason_and_times(out, rec)
        att = rec.attempts[-1] if rec.attempts else None
        if att is not None and (att.exit_code is not None or att.reason):
            cont: dict[str, Any] = {}
            if att.exit_code is not None:
                cont["exitCode"] = att.exit_code
            if att.reason:
                cont["reason"] = att.reason
            out["container"] = cont
        if rec.is_array_parent:
            out["arrayProperties"] = {"size": rec.spec.array_size}
        elif rec.parent_id is not None:
            out["arrayProperties"] = {"index": rec.array_index}
        return out

    def describe_many(self, ids: list[str]) -> list[dict[str, Any]]:
        if len(ids) > MAX_DESCRIBE:
            raise ClientError(
                f"Error executing request, Exception : Maximum number of jobs supported is {MAX_DESCRIBE}"
            )
        seen: set[str] = set()
        out = []
        for job_id in ids:
            if job_id in seen:
                continue
            seen.add(job_id)
            rec = self.jobs.get(job_id)
            if rec is not None:
                out.append(self.describe(rec))
        return out

    def list_jobs(
        self,
        queue_arn: str | None = None,
        array_job_id: str | None = None,
        status: str | None = None,
        filters: list[Mapping[str, Any]] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """ListJobs: one source (queue or array parent), then status or one filter."""
        if array_job_id is not None:
            parent = self.jobs.get(array_job_id)
            candidates = [self.jobs[c] for c in parent.children] if parent else []
        else:
            candidates = [self.jobs[j] for j in self.order if self.jobs[j].spec.queue_arn == queue_arn]
        if filters:
            if len(filters) > 1:
                raise ClientError("Only one filter is supported in ListJobs")
            flt = filters[0]
            key = str(flt.get("name", "")).upper()
            values = [str(v) for v in flt.get("values") or []]
            candidates = [r for r in candidates if _filter_match(r, key, values)]
            limit = 100
        else:
            wanted = (status or RUNNING).upper()
            if wanted not in STATES:
                raise ClientError(f"jobStatus {status} is not valid")
            candidates = [r for r in candidates if r.status == wanted]
            limit = 1000
        candidates.sort(key=lambda r: (r.created_at, r.seq), reverse=True)
        if array_job_id is not None:
            candidates.reverse()  # children in index order reads better
        page = max(1, min(int(max_results or limit), limit))
        start = _decode_token(next_token)
        chunk = candidates[start:start + page]
        token = _encode_token(start + page) if start + page < len(candidates) else None
        return [self.summary(r) for r in chunk], token


def _filter_match(rec: JobRecord, key: str, values: list[str]) -> bool:
    if not values:
        return True
    value = values[0]
    if key == "JOB_NAME":
        return glob_match(value.lower(), rec.spec.name.lower())
    if key == "JOB_DEFINITION":
        jd = rec.spec.jobdef_arn
        short = jd.split("job-definition/", 1)[-1]  # name:revision
        return any(glob_match(value, cand) for cand in (jd, short, short.split(":")[0]))
    if key in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
        try:
            limit = int(value)
        except ValueError:
            raise ClientError(f"{key} value must be epoch milliseconds") from None
        return rec.created_at < limit if key == "BEFORE_CREATED_AT" else rec.created_at > limit
    if key == "SHARE_IDENTIFIER":
        return False
    raise ClientError(f"Unsupported filter name {key}")


def _encode_token(offset: int) -> str:
    import base64
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    import base64
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "o":
            return max(0, int(value))
    except Exception:  # noqa: BLE001 - any garbage token is a client error
        pass
    raise ClientError("Invalid nextToken")


def _add_reason_and_times(out: dict[str, Any], rec: "JobRecord") -> None:
    """The optional statusReason/startedAt/stoppedAt, shared by JobDetail and JobSummary."""
    if rec.status_reason:
        out["statusReason"] = rec.status_reason
    if rec.started_at is not None:
        out["startedAt"] = rec.started_at
    if rec.stopped_at is not None:
        out["stoppedAt"] = rec.stopped_at
