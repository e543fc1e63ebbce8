"""Batched status: one DescribeJobs sweep answers every status request that is waiting.

The gridmanager asks about each job separately (``BLAH_JOB_STATUS`` per job per probe
interval, gahp-protocol.md §4.1).  Answering each with its own DescribeJobs call would
burn the account's Batch API rate, so requests are parked here and answered together:

* a job seen by a sweep less than ``interval`` seconds ago is answered from the cache
  at once, as is a job already in a final state;
* otherwise the request waits for the next sweep; a sweep describes every waiting job
  plus every job still being tracked, in calls of at most 100 ids, and runs at most once
  per ``interval`` (so N requests cost ceil(jobs/100) calls, whatever N is);
* a job never described before (a fresh GAHP answering for ids of an earlier process)
  does not wait for the interval: such jobs are gathered for a moment and described
  together at once, so a restarted GAHP is not slowed down by the gridmanager's
  50-requests-in-flight window.  Jobs this process submitted are tracked from the start.

Callbacks run on the sweeper thread and must be quick (the service hands real work to
its worker pool).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

FINAL = frozenset({"SUCCEEDED", "FAILED"})

#: What a callback receives: the JobDetail (None if Batch does not know the job) or an error.
Callback = Callable[["dict | None", "BaseException | None"], None]


class StatusPoller:
    def __init__(
        self,
        describe: Callable[[list[str]], dict[str, dict]],
        interval: float,
        *,
        gather: float = 0.02,
        track_for: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._describe = describe
        self.interval = interval
        self._gather = gather
        # Jobs asked about within this window are refreshed by every sweep.
        self._track_for = track_for if track_for is not None else max(3 * interval, 60.0)
        self._clock = clock
        self._cond = threading.Condition()
        self._cache: dict[str, tuple[float, dict | None]] = {}
        self._asked: dict[str, float] = {}
        self._waiting: dict[str, list[Callback]] = {}
        self._last_sweep = float("-inf")
        self._stopped = False
        self.sweeps = 0
        self.discoveries = 0
        self._thread = threading.Thread(target=self._run, name="status-sweeper", daemon=True)
        self._thread.start()

    def request(self, batch_id: str, callback: Callback) -> None:
        """Call ``callback(detail, error)`` with a fresh-enough view of the job."""
        now = self._clock()
        with self._cond:
            self._asked[batch_id] = now
            cached = self._cache.get(batch_id)
            if cached is not None:
                seen, detail = cached
                if (detail is not None and detail.get("status") in FINAL) or now - seen < self.interval:
                    hit = detail
                else:
                    hit = ...
            else:
                hit = ...
            if hit is ...:
                self._waiting.setdefault(batch_id, []).append(callback)
                self._cond.notify_all()
                return
        callback(hit, None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ sweeper
    def track(self, batch_id: str) -> None:
        """Include a job in every sweep from now on (called for jobs we just submitted)."""
        with self._cond:
            self._asked[batch_id] = self._clock()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                delay = self._last_sweep + self.interval - self._clock()
                unseen = any(job_id not in self._cache for job_id in self._waiting)
                if delay > 0 and not unseen:
                    self._cond.wait(timeout=delay)
                    continue
            time.sleep(self._gather)  # let a burst of requests arrive
            self._sweep(full=delay <= 0)

    def _sweep(self, full: bool = True) -> None:
        """A full sweep refreshes everything tracked; a discovery sweep only never-seen jobs."""
        now = self._clock()
        with self._cond:
            if not full:
                waiting = {j: cbs for j, cbs in self._waiting.items() if j not in self._cache}
                for job_id in waiting:
                    del self._waiting[job_id]
                tracked = []
            else:
                waiting, self._waiting = self._waiting, {}
                horizon = now - self._track_for
                for job_id, asked in list(self._asked.items()):
                    if asked < horizon:
                        del self._asked[job_id]
                        self._cache.pop(job_id, None)  # nobody asks any more: forget it
                tracked = [
                    job_id for job_id in self._asked
                    if job_id not in waiting
                    and not ((c := self._cache.get(job_id)) and c[1] is not None and c[1].get("status") in FINAL)
                ]
                self._last_sweep = now
        ids = list(waiting) + tracked
        error: BaseException | None = None
        found: dict[str, dict] = {}
        try:
            found = self._describe(ids)
        except BaseException as exc:  # noqa: BLE001 - reported to every waiting request
            error = exc
            log.warning("DescribeJobs sweep of %d jobs failed: %s", len(ids), exc)
        if full:
            self.sweeps += 1
        else:
            self.discoveries += 1
        with self._cond:
            if error is None:
                for job_id in ids:
                    self._cache[job_id] = (now, found.get(job_id))
        for job_id, callbacks in waiting.items():
            for callback in callbacks:
                try:
                    callback(found.get(job_id) if error is None else None, error)
                except Exception:  # a broken callback must not kill the sweeper
                    log.exception("status callback for %s failed", job_id)
