"""What each GAHP command does, between the protocol and AWS.

The server hands every asynchronous request to :class:`JobService` on a worker thread;
the service answers through a ``reply(line)`` callback with a complete result line.
It wires together the pure pieces (:mod:`gahp.jobad`, :mod:`gahp.submission`,
:mod:`gahp.states`), the AWS adapter (:mod:`gahp.batch`), the batched status poller
and, when ``AWSBATCH_GAHP_S3_URL`` is set, S3 staging (:mod:`gahp.staging`).

Rules that matter to HTCondor users:

* submit is idempotent per ``JobDirectory`` for *active* jobs: a gridmanager that crashed
  after our reply but before committing the id gets the same Batch job back instead of
  a duplicate (gahp-protocol.md §3.4);
* status 4 is reported only after ``Out``, ``Err`` and the ``TransferOutput`` files are in
  place under ``Iwd`` (DAGMan starts the children at once, §6.1);
* cancel uses TerminateJob (CancelJob does nothing to a RUNNING job) and is idempotent;
* every AWS failure becomes a result with a message a user can act on, never a crash.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import os
import threading
import time
from typing import Callable

from . import protocol, states
from .batch import AWSError, BatchBackend, describe_error
from .config import Settings
from .files import write_atomically
from .jobad import JobAdError, job_spec_from_ad, parse_submit_ad
from .poller import StatusPoller
from .submission import JobRecord, Launch, build_submit_request, direct_launch, format_job_id, parse_job_id

log = logging.getLogger(__name__)

Reply = Callable[[str], None]

CANCEL_REASON = "Removed by HTCondor (condor_rm, condor_hold or a job policy)"
#: How long a status request waits for outputs to come home before answering "running".
COMPLETION_WAIT = 10.0
#: How long a cancelled job's id is remembered (so a resubmission never reuses it).
CANCELLED_MEMORY = 86400.0
#: How long a just-finished job's log stream may take to appear.
LOG_APPEAR_WAIT = 10.0


class FinalStates:
    """Final outcomes remembered on disk, for jobs Batch no longer describes (records
    expire after a day or more) and so that outputs are brought home only once.  Best
    effort: a GAHP that cannot write here still works (``put`` says whether it could)."""

    MEMORY_ENTRIES = 10_000
    KEEP_DAYS = 30

    def __init__(self, directory: str):
        self.directory = directory
        self._memory: "collections.OrderedDict[str, dict]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def _path(self, job_id: str) -> str:
        return os.path.join(self.directory, job_id.replace("/", "_").replace(":", "_") + ".json")

    def get(self, job_id: str) -> states.Outcome | None:
        with self._lock:
            data = self._memory.get(job_id)
        if data is None:
            try:
                with open(self._path(job_id)) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                return None
        return states.Outcome(int(data["code"]), dict(data["attrs"]))

    def put(self, job_id: str, outcome: states.Outcome) -> bool:
        data = {"code": outcome.code, "attrs": outcome.attrs, "time": time.time()}
        with self._lock:
            self._memory[job_id] = data
            while len(self._memory) > self.MEMORY_ENTRIES:
                self._memory.popitem(last=False)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            write_atomically(self._path(job_id), json.dumps(data).encode(), 0o600)
            return True
        except OSError as exc:
            log.warning("cannot remember the final state of %s in %s: %s", job_id, self.directory, exc)
            return False

    def prune(self) -> None:
        """Forget outcomes older than KEEP_DAYS (the gridmanager asked long ago)."""
        cutoff = time.time() - self.KEEP_DAYS * 86400
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.name.endswith(".json") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass


class JobService:
    def __init__(
        self,
        settings: Settings,
        executor: concurrent.futures.Executor,
        *,
        backend_factory: Callable[[str | None], BatchBackend] | None = None,
    ):
        self.settings = settings
        self._executor = executor
        # Output transfers get their own threads: a status answer waits for them, so they
        # must never queue behind the very requests that wait (that would stall for minutes).
        self._transfers = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="transfer")
        # Clean-ups after condor_rm wait for the job to stop; they must not hold up transfers.
        self._cleanups = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="cleanup")
        self._backend_factory = backend_factory or (lambda region: BatchBackend(settings, region=region))
        self._lock = threading.RLock()
        self._backends: dict[str | None, BatchBackend] = {}
        self._pollers: dict[str, StatusPoller] = {}
        self._completions: dict[str, concurrent.futures.Future] = {}
        self._submitted_at: dict[str, float] = {}
        self._cancelled: dict[str, float] = {}
        self._stager = None
        self.final_states = FinalStates(settings.resolved_state_dir())
        self._cleanups.submit(self.final_states.prune)
        self.job_ads = None
        if settings.update_job_ad:
            from .schedd import JobAdUpdater

            self.job_ads = JobAdUpdater()

    # ------------------------------------------------------------------ plumbing
    def backend(self, region: str | None = None) -> BatchBackend:
        with self._lock:
            backend = self._backends.get(region)
            if backend is None:
                backend = self._backends[region] = self._backend_factory(region)
            return backend

    def poller(self, region: str) -> StatusPoller:
        with self._lock:
            poller = self._pollers.get(region)
            if poller is None:
                backend = self.backend(region)
                poller = self._pollers[region] = StatusPoller(backend.describe_jobs, self.settings.poll_interval)
            return poller

    def stager(self, region: str | None = None):
        """The S3 stager (only when AWSBATCH_GAHP_S3_URL is set)."""
        if not self.settings.s3_url:
            return None
        with self._lock:
            if self._stager is None:
                from .staging import Stager

                self._stager = Stager(self.backend(region).client("s3"), self.settings)
            return self._stager

    def close(self) -> None:
        for poller in list(self._pollers.values()):
            poller.stop()
        self._transfers.shutdown(wait=False, cancel_futures=True)
        self._cleanups.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ submit
    def submit(self, reqid: str, ad_text: str, reply: Reply) -> None:
        try:
            job_id = self._submit(ad_text)
        except JobAdError as exc:
            log.info("submit %s rejected: %s", reqid, exc)
            reply(protocol.submit_result(reqid, 1, str(exc), None))
        except AWSError as exc:
            reply(protocol.submit_result(reqid, 1, str(exc), None))
        except Exception as exc:  # boto3 / staging failures
            log.warning("submit %s failed: %s", reqid, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            reply(protocol.submit_result(reqid, 1, f"AWS Batch submission failed: {describe_error(exc)}", None))
        else:
            reply(protocol.submit_result(reqid, 0, None, job_id))

    def _submit(self, ad_text: str) -> str:
        spec = job_spec_from_ad(parse_submit_ad(ad_text))
        backend = self.backend()
        region = backend.region
        queue = spec.queue or self.settings.job_queue
        # Validate what needs no AWS call first, so a bad job costs nothing.
        build_submit_request(spec, self.settings, Launch(["validate"], {}), JobRecord.from_spec(spec))
        existing = self._active_job(backend, queue, spec.job_name, region)
        if existing:
            log.info("job %s already active as %s; not submitting it twice", spec.job_name, existing)
            return existing
        stager = self.stager()
        if stager is not None:
            launch, staging_url = stager.stage_in(spec)
        else:
            launch, staging_url = direct_launch(spec), None
        try:
            request = build_submit_request(spec, self.settings, launch, JobRecord.from_spec(spec, staging_url))
            batch_id = backend.submit_job(request)
        except BaseException:
            if staging_url:
                self._cleanups.submit(self._drop_prefix, staging_url, "submission failed")
            raise
        job_id = format_job_id(region, batch_id)
        now = time.monotonic()
        with self._lock:
            self._submitted_at[job_id] = now
            for old_id, when in list(self._submitted_at.items()):
                if now - when > self.settings.not_found_grace:
                    del self._submitted_at[old_id]
        self.poller(region).track(batch_id)
        log.info("submitted %s as %s (%s)", spec.job_name, job_id, queue)
        return job_id

    def _active_job(self, backend, queue: str, job_name: str, region: str) -> str | None:
        """The job id of a still-active Batch job for this grid job, unless it was cancelled
        (a job being terminated still shows RUNNING for a while)."""
        batch_id = backend.find_active_job(queue, job_name)
        if not batch_id:
            return None
        job_id = format_job_id(region, batch_id)
        if job_id in self._cancelled:
            return None
        detail = backend.describe_jobs([batch_id]).get(batch_id) or {}
        if detail.get("isTerminated") or detail.get("isCancelled"):
            return None
        return job_id

    def _drop_prefix(self, staging_url: str, why: str) -> None:
        try:
            self.stager().cleanup(staging_url)
            log.info("deleted staging prefix %s (%s)", staging_url, why)
        except Exception as exc:
            log.warning("cannot delete staging prefix %s: %s", staging_url, exc)

    # ------------------------------------------------------------------ status
    def status(self, reqid: str, job_id: str, reply: Reply) -> None:
        try:
            region, batch_id = parse_job_id(job_id)
        except ValueError as exc:
            reply(protocol.status_result(reqid, 1, str(exc), 0, "[]"))
            return
        try:
            known = self.final_states.get(job_id)
            if known is not None:
                reply(protocol.status_result(reqid, 0, None, known.code, known.classad()))
                return
        except Exception as exc:  # a damaged state file must not cost more than this answer
            log.exception("remembered state of %s is unusable", job_id)
            reply(protocol.status_result(reqid, 1, f"internal error: {exc}", 0, "[]"))
            return

        def on_detail(detail, error):
            self._executor.submit(self._answer_status, reqid, job_id, region, detail, error, reply)

        self.poller(region).request(batch_id, on_detail)

    def _report(self, reqid: str, job_id: str, outcome: states.Outcome, reply: Reply) -> None:
        if self.job_ads is not None:
            self.job_ads.update(job_id, outcome.attrs)
        reply(protocol.status_result(reqid, 0, None, outcome.code, outcome.classad()))

    def _answer_status(self, reqid, job_id, region, detail, error, reply: Reply) -> None:
        try:
            if error is not None:
                reply(protocol.status_result(reqid, 1, f"cannot query AWS Batch: {describe_error(error)}", 0, "[]"))
                return
            if detail is None:
                reply(self._missing(reqid, job_id))
                return
            if detail.get("status") not in states.FINAL_STATES:
                self._report(reqid, job_id, states.classify(job_id, detail), reply)
                return
            future = self._completion(job_id, region, detail)
            try:
                outcome = future.result(timeout=COMPLETION_WAIT)
            except concurrent.futures.TimeoutError:
                attrs = states.base_attrs(job_id, detail)
                attrs["AWSBatchStatusReason"] = "copying the job's outputs to the submit host"
                self._report(reqid, job_id, states.Outcome(states.RUNNING, attrs), reply)
                return
            self._report(reqid, job_id, outcome, reply)
        except Exception as exc:  # never leave a request unanswered
            log.exception("status %s for %s failed", reqid, job_id)
            reply(protocol.status_result(reqid, 1, f"internal error: {exc}", 0, "[]"))

    def _missing(self, reqid: str, job_id: str) -> str:
        submitted = self._submitted_at.get(job_id)
        if submitted is not None and time.monotonic() - submitted < self.settings.not_found_grace:
            attrs = {"AWSBatchJobId": job_id, "AWSBatchStatus": "SUBMITTED",
                     "AWSBatchStatusReason": "submitted; not yet visible in DescribeJobs"}
            return protocol.status_result(reqid, 0, None, states.IDLE, states.render_classad(attrs))
        return protocol.status_result(
            reqid, 1,
            f"AWS Batch no longer knows job {job_id} (finished jobs expire after a day or more, "
            "or it was deleted); its outcome is unknown",
            0, "[]",
        )

    def _completion(self, job_id: str, region: str, detail: dict) -> concurrent.futures.Future:
        """Bring outputs home once per job, however many status requests ask."""
        with self._lock:
            future = self._completions.get(job_id)
            if future is not None and future.done() and future.exception() is not None:
                future = None  # a transient failure (S3, logs): try again on this request
            if future is None:
                known = self.final_states.get(job_id)
                if known is not None:  # finished meanwhile by another request
                    future = concurrent.futures.Future()
                    future.set_result(known)
                    return future
                future = self._completions[job_id] = self._transfers.submit(self._complete, job_id, region, detail)
        return future

    def _complete(self, job_id: str, region: str, detail: dict) -> states.Outcome:
        record = JobRecord.from_detail(detail)
        if record is None:  # not submitted by this GAHP: report the state, move no files
            outcome = states.classify(job_id, detail)
        elif record.staging_url:
            outcome = self._complete_staged(job_id, region, detail, record)
        else:
            outcome = self._complete_from_logs(job_id, region, detail, record)
        if not outcome.final:
            return outcome
        outcome.classad()  # render once before remembering: a bad value fails here, retried
        saved = self.final_states.put(job_id, outcome)
        if (record and record.staging_url and outcome.code == states.COMPLETED and saved
                and not self.settings.keep_staging):
            # Only once the outcome is safely remembered: the prefix holds the result record.
            self._drop_prefix(record.staging_url, "outputs are home")
        with self._lock:
            self._completions.pop(job_id, None)  # answered from final_states from now on
        return outcome

    def _complete_staged(self, job_id, region, detail, record) -> states.Outcome:
        from .staging import StagingError

        stager = self.stager(region)
        try:
            result = stager.stage_out(record, detail)
        except StagingError as exc:
            outcome = states.classify(job_id, detail)
            if outcome.code == states.COMPLETED or "HoldReason" not in outcome.attrs:
                outcome = states.Outcome(states.HELD, {**states.base_attrs(job_id, detail),
                                                       "HoldReason": str(exc)[:1023],
                                                       "HoldReasonCode": getattr(exc, "code", 0),
                                                       "HoldReasonSubCode": getattr(exc, "subcode", 0)})
            return outcome
        return states.classify(job_id, detail, result)

    def _complete_from_logs(self, job_id, region, detail, record) -> states.Outcome:
        outcome = states.classify(job_id, detail)
        backend = self.backend(region)
        deadline = time.monotonic() + (LOG_APPEAR_WAIT if outcome.code == states.COMPLETED else 0)
        lines = None
        error: Exception | None = None
        while True:
            try:
                lines, error = backend.read_job_log(detail), None
            except Exception as exc:
                error = exc
                log.warning("cannot read the log of %s: %s", job_id, exc)
            if lines is not None or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if lines is None and error is not None:
            # CloudWatch failed (throttling, network): do not report an empty output as
            # final; the next status request tries again.
            raise AWSError(f"cannot read the job's CloudWatch log: {describe_error(error)}")
        if lines is None:
            log.warning("job %s has no CloudWatch log stream; its output file will be empty", job_id)
        text = "".join(line + "\n" for line in (lines or []))
        try:
            if record.stdout:
                write_atomically(record.stdout, text.encode("utf-8", "surrogateescape"))
            if record.stderr and record.stderr != record.stdout:
                write_atomically(record.stderr, b"")
        except OSError as exc:
            if outcome.code == states.COMPLETED:
                attrs = states.base_attrs(job_id, detail)
                attrs["HoldReason"] = f"cannot write the job's output on the submit host: {exc}"
                attrs["HoldReasonCode"] = 0
                return states.Outcome(states.HELD, attrs)
        return outcome

    # ------------------------------------------------------------------ cancel
    def cancel(self, reqid: str, job_id: str, reply: Reply) -> None:
        try:
            region, batch_id = parse_job_id(job_id)
        except ValueError as exc:
            # Nothing of ours to cancel; rc 0 so a held job is not left bound to this id.
            log.warning("cancel of %r: %s; nothing to do", job_id, exc)
            reply(protocol.simple_result(reqid, 0, None))
            return
        now = time.monotonic()
        with self._lock:
            self._cancelled[job_id] = now
            for old_id, when in list(self._cancelled.items()):
                if now - when > CANCELLED_MEMORY:
                    del self._cancelled[old_id]
        backend = self.backend(region)
        try:
            backend.terminate_job(batch_id, CANCEL_REASON)
        except Exception as exc:
            text = describe_error(exc)
            if "does not exist" in text or "not found" in text.lower():
                reply(protocol.simple_result(reqid, 0, None))  # unknown job: nothing to cancel
                return
            reply(protocol.simple_result(reqid, 1, f"AWS Batch TerminateJob failed: {text}"))
            return
        reply(protocol.simple_result(reqid, 0, None))
        if self.settings.s3_url:
            self._cleanups.submit(self._clean_after_cancel, job_id, region, batch_id)

    def _clean_after_cancel(self, job_id: str, region: str, batch_id: str, wait: float = 120.0) -> None:
        """Once the terminated job has stopped (its wrapper may still upload), drop its prefix."""
        backend = self.backend(region)
        deadline = time.monotonic() + wait
        while True:
            try:
                detail = backend.describe_jobs([batch_id]).get(batch_id)
            except Exception as exc:
                log.warning("cannot describe cancelled job %s: %s", job_id, exc)
                return
            if detail is None or detail.get("status") in states.FINAL_STATES:
                break
            if time.monotonic() > deadline:
                # Its wrapper may still be uploading: deleting now would leave a half prefix.
                log.warning("cancelled job %s is still %s after %.0f s; leaving its staging prefix "
                            "(an S3 lifecycle rule removes it)", job_id, detail.get("status"), wait)
                return
            time.sleep(2.0)
        record = JobRecord.from_detail(detail) if detail else None
        if record and record.staging_url:
            self._drop_prefix(record.staging_url, f"job {job_id} was cancelled")

    # ------------------------------------------------------------------ ping, proxy
    def ping(self, reqid: str, batch_type: str, reply: Reply) -> None:
        try:
            problem = self.backend().check_queue(self.settings.job_queue)
        except Exception as exc:
            problem = f"cannot reach AWS Batch: {describe_error(exc)}"
        reply(protocol.simple_result(reqid, 1 if problem else 0, problem))

    def refresh_proxy(self, reqid: str, job_id: str, proxy_path: str, reply: Reply) -> None:
        # A Batch job gets no X.509 delegation: the proxy staged at submit is what it has.
        log.info("proxy refresh for %s (%s): nothing to do on AWS Batch", job_id, proxy_path)
        reply(protocol.simple_result(reqid, 0, None))

