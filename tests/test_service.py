"""The service layer with an in-memory AWS stand-in: the rules, without processes or HTTP."""

import concurrent.futures
import threading

import pytest
from botocore.exceptions import ClientError

from fixtures_gahp import job_ad
from gahp import protocol
from gahp.config import Settings
from gahp.service import JobService
from gahp.submission import RECORD_PARAMETER


class FakeBackend:
    region = "us-east-1"

    def __init__(self):
        self.jobs = {}
        self.submits = []
        self.terminated = []
        self.describe_calls = 0
        self.log_failures = 0
        self.logs = {}

    def submit_job(self, request):
        job_id = f"job-{len(self.submits) + 1}"
        self.submits.append(request)
        self.jobs[job_id] = {"jobId": job_id, "jobName": request["jobName"], "status": "RUNNABLE",
                             "parameters": request["parameters"], "container": {}}
        return job_id

    def find_active_job(self, queue, name):
        active = [j for j in self.jobs.values() if j["jobName"] == name and j["status"] not in ("SUCCEEDED", "FAILED")]
        return active[-1]["jobId"] if active else None

    def describe_jobs(self, ids):
        self.describe_calls += 1
        return {i: dict(self.jobs[i]) for i in ids if i in self.jobs}

    def terminate_job(self, job_id, reason):
        if job_id == "boom":
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "TerminateJob")
        if job_id not in self.jobs:
            raise ClientError({"Error": {"Code": "ClientException", "Message": f"Job {job_id} does not exist"}}, "TerminateJob")
        self.terminated.append((job_id, reason))
        self.jobs[job_id].update(status="FAILED", statusReason=reason, isTerminated=True)

    def check_queue(self, queue):
        return None

    def read_job_log(self, detail):
        if self.log_failures:
            self.log_failures -= 1
            raise RuntimeError("CloudWatch Logs throttled")
        return self.logs.get(detail["jobId"], [])

    def client(self, service, quick=False):
        raise AssertionError("no raw clients in these tests")


@pytest.fixture
def service(tmp_path):
    backend = FakeBackend()
    pool = concurrent.futures.ThreadPoolExecutor(4)
    svc = JobService(Settings(job_queue="q", job_definition="d", poll_interval=0.05, state_dir=str(tmp_path / "state"),
                              not_found_grace=60), pool, backend_factory=lambda region: backend)
    svc.fake = backend
    yield svc
    svc.close()
    pool.shutdown()


def call(method, *args, timeout=10):
    done = threading.Event()
    box = []
    method("9", *args, lambda line: (box.append(protocol.read_argv(line)), done.set()))
    assert done.wait(timeout), "no reply"
    return box[0]


def test_submit_is_idempotent_for_active_jobs(service, tmp_path):
    ad = job_ad(tmp_path, cmd="/bin/true")
    first = call(service.submit, ad)
    second = call(service.submit, ad)
    assert first[1] == "0" and first[3] == second[3] and len(service.fake.submits) == 1
    call(service.cancel, first[3])
    third = call(service.submit, ad)  # released after a hold: a new Batch job
    assert third[3] != first[3] and len(service.fake.submits) == 2


def test_bad_ads_cost_no_aws_call(service, tmp_path):
    reply = call(service.submit, job_ad(tmp_path, BatchRuntime=5))
    assert reply[1] == "1" and "at least 60" in reply[2] and reply[3] == "N/A"
    assert service.fake.submits == []


def test_status_walk_and_output_written_before_4(service, tmp_path):
    job_id = call(service.submit, job_ad(tmp_path, Out="o.txt", Err="e.txt"))[3]
    batch_id = job_id.split("/")[-1]
    assert call(service.status, job_id)[3] == "1"
    service.fake.jobs[batch_id].update(status="SUCCEEDED", container={"exitCode": 0})
    service.fake.logs[batch_id] = ["line one", "line two"]
    service.fake.log_failures = 1  # a transient CloudWatch failure is retried, not cached
    import time

    time.sleep(0.1)
    reply = call(service.status, job_id)
    assert reply[3] == "4", reply
    assert (tmp_path / "o.txt").read_text() == "line one\nline two\n"
    assert (tmp_path / "e.txt").read_text() == ""
    # later polls come from the final record, with no AWS call
    calls = service.fake.describe_calls
    assert call(service.status, job_id)[3] == "4"
    assert service.fake.describe_calls == calls


def test_transient_completion_failure_is_retried(service, tmp_path, monkeypatch):
    job_id = call(service.submit, job_ad(tmp_path))[3]
    batch_id = job_id.split("/")[-1]
    service.fake.jobs[batch_id].update(status="SUCCEEDED", container={"exitCode": 0})
    failures = {"n": 1}
    real = service._complete_from_logs

    def flaky(*args):
        if failures["n"]:
            failures["n"] -= 1
            raise OSError("disk briefly full")
        return real(*args)

    monkeypatch.setattr(service, "_complete_from_logs", flaky)
    first = call(service.status, job_id)
    assert first[1] == "1" and first[3] == "0"  # the query failed; the gridmanager asks again
    second = call(service.status, job_id)
    assert second[1] == "0" and second[3] == "4"


def test_missing_jobs_grace_then_error(service, tmp_path):
    job_id = call(service.submit, job_ad(tmp_path))[3]
    del service.fake.jobs[job_id.split("/")[-1]]  # not yet visible (eventual consistency)
    assert call(service.status, job_id)[3] == "1"
    service.settings.not_found_grace = 0
    reply = call(service.status, job_id)
    assert reply[1] == "1" and reply[3] == "0" and "no longer knows" in reply[2]


def test_cancel_rules(service, tmp_path):
    job_id = call(service.submit, job_ad(tmp_path))[3]
    assert call(service.cancel, job_id) == ["9", "0", "NULL"]
    assert service.fake.terminated[0][1].startswith("Removed by HTCondor")
    assert call(service.cancel, "awsbatch/us-east-1/unknown-job")[1] == "0"  # idempotent
    failed = call(service.cancel, "awsbatch/us-east-1/boom")
    assert failed[1] == "1" and "Rate exceeded" in failed[2]


def test_foreign_batch_jobs_report_state_but_move_no_files(service):
    service.fake.jobs["other"] = {"jobId": "other", "jobName": "x", "status": "SUCCEEDED", "container": {"exitCode": 0}}
    reply = call(service.status, "awsbatch/us-east-1/other")
    assert reply[3] == "4" and RECORD_PARAMETER not in reply[4]


def test_cloudwatch_failure_is_retried_not_reported_as_empty_output(service, tmp_path, monkeypatch):
    import gahp.service as service_module

    monkeypatch.setattr(service_module, "LOG_APPEAR_WAIT", 0.1)
    job_id = call(service.submit, job_ad(tmp_path, Out="o.txt"))[3]
    batch_id = job_id.split("/")[-1]
    service.fake.jobs[batch_id].update(status="SUCCEEDED", container={"exitCode": 0})
    service.fake.logs[batch_id] = ["the real output"]
    service.fake.log_failures = 1000  # CloudWatch keeps failing
    reply = call(service.status, job_id)
    assert reply[1] == "1" and "CloudWatch" in reply[2]  # a failed query, retried later
    assert not (tmp_path / "o.txt").exists()
    service.fake.log_failures = 0
    assert call(service.status, job_id)[3] == "4"
    assert (tmp_path / "o.txt").read_text() == "the real output\n"


def test_a_terminated_job_still_stopping_is_not_reused_by_a_new_process(service, tmp_path):
    ad = job_ad(tmp_path)
    first = call(service.submit, ad)[3]
    call(service.cancel, first)
    service.fake.jobs[first.split("/")[-1]]["status"] = "RUNNING"  # AWS takes a while to stop it
    service._cancelled.clear()  # what a freshly started GAHP process knows
    assert call(service.submit, ad)[3] != first


def test_status_4_is_sent_only_once_the_output_is_in_place(service, tmp_path):
    """C12: checked at the very moment the result line is handed over, not afterwards."""
    job_id = call(service.submit, job_ad(tmp_path, Out="o.txt", Err="e.txt"))[3]
    batch_id = job_id.split("/")[-1]
    service.fake.jobs[batch_id].update(status="SUCCEEDED", container={"exitCode": 0})
    service.fake.logs[batch_id] = ["x" * 100_000] * 20
    seen = []
    done = threading.Event()

    def reply(line):
        fields = protocol.read_argv(line)
        seen.append((fields[3], (tmp_path / "o.txt").exists() and (tmp_path / "e.txt").exists()))
        done.set()

    service.status("9", job_id, reply)
    assert done.wait(10)
    assert seen == [("4", True)]
