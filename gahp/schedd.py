"""Native AWS Batch state in ``condor_q``, written into the schedd's job ad.

The gridmanager copies only a whitelist of status-ad attributes into the job, so
``AWSBatchStatus`` (RUNNABLE, STARTING, ...) and its reason would stay in the
GridmanagerLog.  On a live pool the GAHP, running as the job owner with the
gridmanager's ``CONDOR_CONFIG``, could ``Schedd().edit()`` those attributes in about 5 ms
and they stayed through later polls (htcondor-verified.md).  This is that side channel:
best effort, off the request path, and only when a value changes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

ATTRIBUTES = ("AWSBatchStatus", "AWSBatchStatusReason")


def job_constraint(job_id: str) -> str:
    """Matches the grid job whose ``GridJobId`` ends with ``" <job_id>"`` (§3.4)."""
    import classad2

    tail = " " + job_id
    return f"JobUniverse == 9 && substr(GridJobId, -{len(tail)}) == {classad2.quote(tail)}"


class JobAdUpdater:
    def __init__(self, schedd_factory: Callable[[], object] | None = None):
        self._schedd_factory = schedd_factory or _default_schedd
        self._schedd = None
        self._queue: "queue.Queue[tuple[str, dict]]" = queue.Queue()
        self._last: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._last_error = 0.0
        self._thread = threading.Thread(target=self._run, name="schedd-update", daemon=True)
        self._thread.start()

    def update(self, job_id: str, attrs: dict) -> None:
        """Queue the native state of a job; nothing happens if it did not change."""
        values = {k: attrs[k] for k in ATTRIBUTES if k in attrs}
        with self._lock:
            if not values or self._last.get(job_id) == values:
                return
            if values.get("AWSBatchStatus") in ("SUCCEEDED", "FAILED"):
                self._last.pop(job_id, None)  # the last word on this job: forget it
            else:
                self._last[job_id] = values
        self._queue.put((job_id, values))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queued updates were tried (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        import classad2

        while True:
            job_id, values = self._queue.get()
            try:
                if self._schedd is None:
                    self._schedd = self._schedd_factory()
                constraint = job_constraint(job_id)
                for name, value in values.items():
                    self._schedd.edit(constraint, name, classad2.quote(str(value)))
            except Exception as exc:
                self._schedd = None
                with self._lock:
                    self._last.pop(job_id, None)  # try again on the next change
                if time.monotonic() - self._last_error > 60:
                    log.warning("cannot write %s into the schedd's job ad: %s", ", ".join(values), exc)
                    self._last_error = time.monotonic()
            finally:
                self._queue.task_done()


def _default_schedd():
    import htcondor2

    return htcondor2.Schedd()
