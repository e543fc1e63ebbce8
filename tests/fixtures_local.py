"""Fixtures for the local AWS Batch emulator (gahp.local).

``local_batch`` is one started :class:`gahp.local.LocalBatch` for the whole
session; ``local_entities`` the default compute environment, queue, job
definition and bucket in it. ``wait_for`` and ``wait_job`` help tests wait
for a condition instead of sleeping.
"""
import os
import time

import pytest

from gahp.local import LocalBatch

FINAL_STATES = ("SUCCEEDED", "FAILED")


def wait_for(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def describe_job(batch, job_id):
    jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
    return jobs[0] if jobs else None


def wait_job(batch, job_id, states=FINAL_STATES, timeout=20.0):
    """Wait until the job's status is one of ``states``; return its JobDetail."""
    def check():
        job = describe_job(batch, job_id)
        return job if job and job["status"] in states else None
    return wait_for(check, timeout, message=f"job {job_id} to reach {states}")


def pid_alive(pid):
    """True for a live, non-zombie process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return data[data.rfind(b")") + 2:].split()[0] != b"Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def local_batch():
    """A started LocalBatch (random free port) shared by the session."""
    lb = LocalBatch(port=0)
    lb.start()
    try:
        yield lb
    finally:
        lb.stop()


@pytest.fixture(scope="session")
def local_entities(local_batch):
    """The default entities (``create_default_entities()``) in ``local_batch``."""
    return local_batch.create_default_entities()
