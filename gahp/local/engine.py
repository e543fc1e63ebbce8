"""The scheduler thread and the per-attempt threads that run jobs.

One condition variable guards the :class:`~gahp.local.store.JobStore`.
The scheduler wakes on every event (submit, cancel, process exit) and at
least every ``TICK`` seconds (so capacity changes made through moto are
seen), asks the store what to start, and hands each start to a thread that
runs the attempt with :mod:`gahp.local.runner` and streams its output into
moto's CloudWatch Logs backend.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any, Callable

from . import store as st
from .runner import JobProcess, plan_attempt

log = logging.getLogger(__name__)

TICK = 0.05
LOG_GROUP = "/aws/batch/job"
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch's per-event limit, less its overhead
BASE_ENV = ("PATH", "HOME", "LANG", "TMPDIR")


class LogSink:
    """Writes job output into moto's CloudWatch Logs backend, in-process."""

    def __init__(self, account: str, region: str):
        self.account = account
        self.region = region
        self._lock = threading.Lock()

    def _group(self) -> Any:
        from moto.logs.models import logs_backends

        backend = logs_backends[self.account][self.region]
        if LOG_GROUP not in backend.groups:
            backend.ensure_log_group(LOG_GROUP)
        return backend.groups[LOG_GROUP]

    def create_stream(self, name: str) -> None:
        with self._lock:
            group = self._group()
            if name not in group.streams:
                group.create_log_stream(name)

    def put(self, stream: str, messages: list[str]) -> None:
        events = []
        ts = int(time.time() * 1000)
        for msg in messages:
            data = msg.encode("utf-8", "replace")
            while data:  # awslogs splits over-long lines into several events
                chunk, data = data[:MAX_EVENT_BYTES], data[MAX_EVENT_BYTES:]
                events.append({"timestamp": ts, "message": chunk.decode("utf-8", "ignore")})
        if not events:
            return
        with self._lock:
            group = self._group()
            if stream not in group.streams:
                group.create_log_stream(stream)
            group.put_log_events(stream, events)


def to_message(line: bytes) -> str | None:
    """One output line as a log event; empty lines are dropped as awslogs does."""
    text = line.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
    return text or None


class Engine:
    """Runs the jobs of one emulator instance."""

    def __init__(
        self,
        region: str,
        account: str,
        workdir: str,
        ce_limits: Callable[[], dict[str, float]],
        fetch: Callable[[str], bytes],
        client_env: Callable[[], dict[str, str]],
        state_delay: float = 0.0,
        kill_grace: float = 2.0,
    ):
        self.cond = threading.Condition()
        self.store = st.JobStore(region, account, state_delay)
        self.workdir = workdir
        self.ce_limits = ce_limits
        self.fetch = fetch
        self.client_env = client_env
        self.kill_grace = kill_grace
        self.logs = LogSink(account, region)
        self.cluster = f"AWSBatch-local-{uuid.uuid4().hex[:8]}"
        self.handles: dict[str, JobProcess] = {}
        self.threads: set[threading.Thread] = set()
        self.stopping = False
        self._thread: threading.Thread | None = None

    @property
    def state_delay(self) -> float:
        return self.store.state_delay

    @state_delay.setter
    def state_delay(self, value: float) -> None:
        with self.cond:
            self.store.state_delay = value
            self.cond.notify_all()

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="local-batch-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every job's process group and wait for all threads."""
        with self.cond:
            self.stopping = True
            for handle in self.handles.values():
                handle.stop(grace=min(self.kill_grace, 1.0))
            self.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for thread in list(self.threads):
            thread.join(max(0.1, deadline - time.monotonic()))
        with self.cond:
            now = time.time()
            for job_id in list(self.store.active):
                self.store.abandon(job_id, now, "Local AWS Batch shut down")

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # ---- scheduler ---------------------------------------------------------------------
    def _loop(self) -> None:
        with self.cond:
            while not self.stopping:
                now = time.time()
                try:
                    limits = self.ce_limits()
                except Exception:  # noqa: BLE001 - moto reset in the middle of a pass
                    log.exception("cannot read compute environments")
                    limits = {}
                for action in self.store.advance(now, limits):
                    self._spawn(action)
                for job_id in self.store.due_timeouts(now):
                    handle = self.handles.get(job_id)
                    if handle is not None:
                        log.info("job %s exceeded its timeout; stopping it", job_id)
                        handle.stop(self.kill_grace)
                wake = self.store.next_wakeup(now)
                self.cond.wait(TICK if wake is None else min(TICK, max(wake, 0.001)))

    def _spawn(self, action: st.StartAction) -> None:
        thread = threading.Thread(target=self._attempt, args=(action,),
                                  name=f"job-{action.job_id}", daemon=True)
        self.threads.add(thread)
        thread.start()

    # ---- one attempt -----------------------------------------------------------------------
    def _environment(self, rec: st.JobRecord, attempt: int) -> dict[str, str]:
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.update(rec.spec.environment)
        env.update({
            "AWS_BATCH_JOB_ID": rec.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt),
            "AWS_BATCH_JQ_NAME": rec.spec.queue_name,
            "AWS_BATCH_CE_NAME": rec.ce_name or "",
        })
        if rec.array_index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(rec.array_index)
            env["AWS_BATCH_JOB_ARRAY_SIZE"] = str(rec.spec.array_size)
        env.update(self.client_env())
        return env

    def _attempt(self, action: st.StartAction) -> None:
        job_id = action.job_id
        try:
            self._run_attempt(job_id)
        except Exception:  # noqa: BLE001 - never leave a job STARTING forever
            log.exception("attempt of job %s crashed", job_id)
            with self.cond:
                rec = self.store.jobs[job_id]
                if rec.status in (st.STARTING, st.RUNNING) and rec.current is not None:
                    self.handles.pop(job_id, None)
                    self.store.mark_stopped(job_id, time.time(), None, "InternalError: emulator failure")
                self.cond.notify_all()
        finally:
            self.threads.discard(threading.current_thread())

    def _run_attempt(self, job_id: str) -> None:
        task_id = uuid.uuid4().hex
        with self.cond:
            rec = self.store.jobs[job_id]
            self.store.new_attempt(job_id, task_id, self.cluster)
            if rec.kill_reason is not None or self.stopping:
                rec.kill_reason = rec.kill_reason or "Local AWS Batch shut down"
                self.store.mark_stopped(job_id, time.time(), None)
                self.cond.notify_all()
                return
            env = self._environment(rec, rec.attempt_number)
            command = list(rec.spec.command)
            stream = f"{rec.spec.jobdef_name[:200]}/default/{task_id}"
            delay = self.store.state_delay
        if delay:
            time.sleep(delay)  # STARTING: "pulling the image"
        jobdir = tempfile.mkdtemp(prefix=f"{job_id.replace(':', '_')}-", dir=self.workdir)
        try:
            self._execute(job_id, command, env, jobdir, stream)
        finally:
            shutil.rmtree(jobdir, ignore_errors=True)

    def _execute(self, job_id: str, command: list[str], env: dict[str, str],
                 jobdir: str, stream: str) -> None:
        plan = plan_attempt(command, env, jobdir, self.fetch)
        with self.cond:
            # terminated (or shut down) while STARTING: the process must never start
            rec = self.store.jobs[job_id]
            if rec.kill_reason is not None or self.stopping:
                rec.kill_reason = rec.kill_reason or "Local AWS Batch shut down"
                self.handles.pop(job_id, None)
                self.store.mark_stopped(job_id, time.time(), None)
                self.cond.notify_all()
                return
        if plan.exit_code is None and not plan.argv:
            self._stopped(job_id, None, "CannotStartContainerError: no command given", stream=None)
            return

        def on_line(line: bytes) -> None:
            msg = to_message(line)
            if msg is not None:
                self.logs.put(stream, [msg])

        proc = JobProcess(plan, on_line)
        failure: str | None = None
        started = time.time()
        if plan.exit_code is None:
            try:
                proc.start()
            except OSError as exc:
                failure = f"{type(exc).__name__}: {exc.strerror or exc}"
        if plan.exit_code is None and failure is not None and not plan.wrapper:
            # Docker could not start the container: no stream, no exit code.
            self._stopped(job_id, None, f"CannotStartContainerError: {failure}", stream=None)
            return
        self.logs.create_stream(stream)
        with self.cond:
            self.store.mark_running(job_id, started, stream)
            if proc.pgid is not None:
                self.handles[job_id] = proc
                if self.store.jobs[job_id].kill_reason is not None or self.stopping:
                    proc.stop(self.kill_grace)
            self.cond.notify_all()
        if plan.output:
            self.logs.put(stream, plan.output)
        if plan.exit_code is not None:
            code = plan.exit_code
        elif failure is not None:
            self.logs.put(stream, [f"fetch_and_run.sh - Failed to execute script. ({failure})"])
            code = 1
        else:
            code = proc.wait()
        self._stopped(job_id, code, None, stream)

    def _stopped(self, job_id: str, code: int | None, reason: str | None, stream: str | None) -> None:
        with self.cond:
            self.handles.pop(job_id, None)
            self.store.mark_stopped(job_id, time.time(), code, reason)
            rec = self.store.jobs[job_id]
            log.debug("job %s attempt %d ended: exit %s -> %s", job_id, rec.attempt_number, code,
                      rec.status)
            self.cond.notify_all()

    # ---- requests ------------------------------------------------------------------------------
    def submit(self, spec: st.JobSpec) -> st.JobRecord:
        with self.cond:
            if self.stopping:
                raise st.ClientError("Local AWS Batch is shutting down")
            rec = self.store.submit(spec, time.time())
            self.cond.notify_all()
            return rec

    def cancel(self, job_id: str, reason: str) -> None:
        with self.cond:
            self.store.cancel(job_id, reason, time.time())
            self.cond.notify_all()

    def terminate(self, job_id: str, reason: str) -> None:
        with self.cond:
            for jid in self.store.terminate(job_id, reason, time.time()):
                handle = self.handles.get(jid)
                if handle is not None:
                    handle.stop(self.kill_grace)
            self.cond.notify_all()

    def pids(self, job_id: str) -> list[int]:
        with self.cond:
            handle = self.handles.get(job_id)
        return handle.pids() if handle is not None else []
