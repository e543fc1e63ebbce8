"""AWS Batch job state -> HTCondor grid job status, pure (interface.md §5).

===================================== ===================================================
Batch                                 reported to the gridmanager
===================================== ===================================================
SUBMITTED, PENDING, RUNNABLE,         1 (IDLE)
STARTING
RUNNING                               2 (RUNNING)
SUCCEEDED                             4 (COMPLETED), ``ExitCode = 0``
FAILED, the command ran and exited    4, ``ExitCode`` (or ``ExitBySignal``/``ExitSignal``)
FAILED, the command never ran or was  5 (HELD), ``HoldReason`` from ``statusReason`` and
stopped by the infrastructure         the container's ``reason``, with advice
===================================== ===================================================

Every status ad also carries ``AWSBatchJobId``, ``AWSBatchStatus`` and
``AWSBatchStatusReason`` (ignored by the gridmanager, kept in its log).  Exit attributes
appear only with status 4, and ``RemoteWallClockTime`` is never reported (the
gridmanager would double-count it, gahp-protocol.md §4.3).
"""

from __future__ import annotations

import dataclasses
import re

import classad2

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5

WAITING_STATES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING"})
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED"})

# statusReason texts that mean "the infrastructure stopped or never started the command".
_INFRA_REASONS = [
    (re.compile(r"attempt duration exceeded timeout|timed? ?out", re.I),
     "the job ran longer than its batch_runtime (AWS Batch attempt timeout); raise batch_runtime and release the job"),
    (re.compile(r"^Host EC2|instance .* terminated|spot", re.I),
     "the EC2 host was reclaimed or terminated (spot interruption); condor_release resubmits the job"),
    (re.compile(r"CannotPullContainer|CannotInspectContainer|image", re.I),
     "the container image could not be pulled; check the job definition's image and the execution role"),
    (re.compile(r"Task failed to start|CannotStartContainer|CannotCreateContainer|ResourceInitializationError", re.I),
     "the container failed to start; check the job definition, its resources and the compute environment"),
    (re.compile(r"Dependent Job failed", re.I), "a job this one depends on failed"),
    (re.compile(r"OutOfMemory", re.I), "the container ran out of memory; raise request_memory"),
]


@dataclasses.dataclass
class JobResult:
    """The job's own outcome, from the staging wrapper's result record (when staging)."""

    exit_code: int | None = None
    exit_signal: int | None = None


@dataclasses.dataclass
class Outcome:
    """What one status request answers: the code and the ClassAd attributes."""

    code: int
    attrs: dict

    @property
    def final(self) -> bool:
        return self.code in (COMPLETED, HELD)

    def classad(self) -> str:
        return render_classad(self.attrs)


_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _classad_safe(value):
    """Values that ``classad2`` can hold: text from a job or AWS may carry lone surrogates
    (undecodable bytes), which must never reach the C++ library, and ints must fit 64 bits."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, _INT64[0]), _INT64[1])
    return value


def render_classad(attrs: dict) -> str:
    """A one-line new-syntax ClassAd (valid by construction, through ``classad2``)."""
    ad = classad2.ClassAd()
    for key, value in attrs.items():
        if value is not None:
            ad[key] = _classad_safe(value)
    return repr(ad)


def _container(detail: dict) -> dict:
    return detail.get("container") or {}


def _reason(detail: dict) -> str:
    return (detail.get("statusReason") or "").strip()


def base_attrs(job_id: str, detail: dict) -> dict:
    attrs = {
        "AWSBatchJobId": detail.get("jobId") or job_id,
        "AWSBatchStatus": detail.get("status", "UNKNOWN"),
        "AWSBatchStatusReason": _reason(detail),
    }
    attempts = detail.get("attempts")
    if attempts:
        attrs["AWSBatchAttempts"] = len(attempts)
    return attrs


def infrastructure_failure(detail: dict) -> str | None:
    """A hold reason if the infrastructure, not the command, ended this FAILED job."""
    reason = _reason(detail)
    container_reason = (_container(detail).get("reason") or "").strip()
    if detail.get("isTerminated") or detail.get("isCancelled"):
        return f"AWS Batch job {detail.get('jobId')} was stopped: {reason or 'terminated or cancelled'}"
    for pattern, advice in _INFRA_REASONS:
        for text in (reason, container_reason):
            if text and pattern.search(text):
                return f"AWS Batch job {detail.get('jobId')} failed: {text} ({advice})"
    if _container(detail).get("exitCode") is None:
        what = "; ".join(t for t in (reason, container_reason) if t) or "no status reason given"
        return f"AWS Batch job {detail.get('jobId')} failed before its command finished: {what}"
    return None


def classify(job_id: str, detail: dict, result: JobResult | None = None) -> Outcome:
    """Map one ``JobDetail`` (and, when staging, the job's result record) to an outcome."""
    status = detail.get("status", "")
    attrs = base_attrs(job_id, detail)
    if status in WAITING_STATES:
        return Outcome(IDLE, attrs)
    if status == "RUNNING":
        return Outcome(RUNNING, attrs)
    if status == "SUCCEEDED":
        return _completed(attrs, result, _container(detail).get("exitCode") or 0)
    if status == "FAILED":
        hold = infrastructure_failure(detail)
        # The staging wrapper saw the command exit on its own: its code wins over Batch's
        # generic reason, unless Batch stopped the job (terminate, timeout).
        command_exited = (result is not None and result.exit_code is not None
                          and not detail.get("isTerminated") and not _timed_out(detail))
        if hold and not command_exited:
            attrs["HoldReason"] = hold[:1023]
            attrs["HoldReasonCode"] = 0
            return Outcome(HELD, attrs)
        return _completed(attrs, result, _container(detail).get("exitCode"))
    attrs["AWSBatchStatusReason"] = attrs["AWSBatchStatusReason"] or f"unknown AWS Batch status {status!r}"
    return Outcome(IDLE, attrs)


def _timed_out(detail: dict) -> bool:
    return bool(re.search(r"exceeded timeout", _reason(detail), re.I))


def _completed(attrs: dict, result: JobResult | None, exit_code) -> Outcome:
    if result is not None and result.exit_signal is not None:
        attrs["ExitBySignal"] = True
        attrs["ExitSignal"] = int(result.exit_signal)
    else:
        code = result.exit_code if (result is not None and result.exit_code is not None) else exit_code
        attrs["ExitBySignal"] = False
        attrs["ExitCode"] = int(code or 0)
    return Outcome(COMPLETED, attrs)
