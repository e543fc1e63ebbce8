"""The batched status poller: one DescribeJobs sweep answers every waiting request."""

import threading
import time

from gahp.poller import StatusPoller


class FakeDescribe:
    def __init__(self, jobs):
        self.jobs = jobs
        self.calls = []  # one entry per (chunked) call, like BatchBackend.describe_jobs
        self.lock = threading.Lock()

    def __call__(self, ids):
        ids = list(dict.fromkeys(ids))
        with self.lock:
            for i in range(0, len(ids), 100):
                self.calls.append(ids[i:i + 100])
        return {i: dict(self.jobs[i]) for i in ids if i in self.jobs}


def ask(poller, ids):
    done = threading.Event()
    answers = {}
    lock = threading.Lock()

    def cb_for(job_id):
        def cb(detail, error):
            with lock:
                answers.setdefault(job_id, []).append((detail, error))
                if sum(len(v) for v in answers.values()) == len(ids):
                    done.set()
        return cb

    for job_id in ids:
        poller.request(job_id, cb_for(job_id))
    assert done.wait(10)
    return answers


def test_many_requests_cost_ceil_jobs_over_100_calls():
    jobs = {f"j{i}": {"jobId": f"j{i}", "status": "RUNNING"} for i in range(250)}
    describe = FakeDescribe(jobs)
    poller = StatusPoller(describe, interval=5.0)
    answers = ask(poller, [f"j{i}" for i in range(250)] * 4)  # 1000 requests
    assert len(answers) == 250
    assert poller.sweeps == 1
    assert len(describe.calls) == 3 and all(len(c) <= 100 for c in describe.calls)
    # within the interval, everything is answered from the cache
    ask(poller, [f"j{i}" for i in range(250)])
    assert len(describe.calls) == 3
    poller.stop()


def test_sweeps_are_spaced_by_the_interval_and_refresh_tracked_jobs():
    jobs = {"a": {"jobId": "a", "status": "RUNNING"}, "b": {"jobId": "b", "status": "RUNNING"}}
    describe = FakeDescribe(jobs)
    poller = StatusPoller(describe, interval=0.5)
    ask(poller, ["a"])
    started = time.monotonic()
    ask(poller, ["b"])  # never seen: described at once, on its own
    assert time.monotonic() - started < 0.3 and describe.calls[-1] == ["b"]
    ask(poller, ["a"])  # seen, still fresh: from the cache
    assert len(describe.calls) == 2
    time.sleep(0.5)
    started = time.monotonic()
    ask(poller, ["a"])  # stale: waits for the next full sweep, which refreshes "b" too
    assert sorted(describe.calls[-1]) == ["a", "b"]
    assert poller.sweeps == 2 and poller.discoveries == 1
    poller.stop()


def test_a_full_sweep_is_never_sooner_than_the_interval():
    jobs = {"a": {"jobId": "a", "status": "RUNNING"}}
    describe = FakeDescribe(jobs)
    poller = StatusPoller(describe, interval=0.4)
    ask(poller, ["a"])
    first = time.monotonic()
    time.sleep(0.05)
    poller._cache["a"] = (poller._clock() - 1.0, jobs["a"])  # stale, but seen
    ask(poller, ["a"])
    assert time.monotonic() - first >= 0.35
    poller.stop()


def test_jobs_tracked_at_submit_ride_along_the_first_sweep():
    jobs = {f"j{i}": {"jobId": f"j{i}", "status": "RUNNABLE"} for i in range(150)}
    describe = FakeDescribe(jobs)
    poller = StatusPoller(describe, interval=5.0)
    for job_id in jobs:
        poller.track(job_id)
    ask(poller, ["j0"])
    assert len(describe.calls) == 2  # all 150 in one sweep
    ask(poller, [f"j{i}" for i in range(150)])
    assert len(describe.calls) == 2
    poller.stop()


def test_final_jobs_are_never_described_again():
    jobs = {"a": {"jobId": "a", "status": "SUCCEEDED"}}
    describe = FakeDescribe(jobs)
    poller = StatusPoller(describe, interval=0.1)
    ask(poller, ["a"])
    time.sleep(0.3)
    answers = ask(poller, ["a"])
    assert answers["a"][0][0]["status"] == "SUCCEEDED"
    assert len(describe.calls) == 1
    poller.stop()


def test_unknown_jobs_and_errors_are_reported():
    describe = FakeDescribe({})
    poller = StatusPoller(describe, interval=0.1)
    assert ask(poller, ["nope"])["nope"] == [(None, None)]

    def broken(ids):
        raise RuntimeError("throttled")

    poller2 = StatusPoller(broken, interval=0.1)
    [(detail, error)] = ask(poller2, ["x"])["x"]
    assert detail is None and "throttled" in str(error)
    poller.stop()
    poller2.stop()


def test_jobs_nobody_asks_about_are_forgotten():
    now = [0.0]
    jobs = {f"j{i}": {"jobId": f"j{i}", "status": "SUCCEEDED"} for i in range(50)}
    poller = StatusPoller(FakeDescribe(jobs), interval=0.01, track_for=10.0, clock=lambda: now[0])
    ask(poller, list(jobs))
    assert len(poller._cache) == 50
    now[0] = 100.0
    ask(poller, ["j0"])  # a later sweep prunes what was not asked within track_for
    poller._sweep(full=True)
    assert set(poller._cache) <= {"j0"}
    poller.stop()
