"""Native Batch state written into the schedd's job ad (AWSBATCH_GAHP_UPDATE_JOB_AD)."""

import concurrent.futures
import threading

import classad2

from fixtures_gahp import job_ad
from fixtures_local import wait_for
from gahp import schedd
from gahp.config import Settings
from gahp.service import JobService


class FakeSchedd:
    """Records edits and applies them to job ads, as Schedd.edit(constraint, attr, value) would."""

    def __init__(self, ads):
        self.ads = ads
        self.edits = []
        self.lock = threading.Lock()

    def edit(self, constraint, attr, value):
        with self.lock:
            self.edits.append((constraint, attr, value))
            expr = classad2.ExprTree(constraint)
            for ad in self.ads:
                if expr.eval(ad) is True:
                    ad[attr] = classad2.ExprTree(value).eval()


def grid_ad(job_id):
    return classad2.ClassAd({"JobUniverse": 9, "GridJobId": f"batch awsbatch 127.0.0.1_0_u_vm_2.0_17 {job_id}"})


def test_constraint_matches_only_that_grid_job():
    expr = classad2.ExprTree(schedd.job_constraint("awsbatch/us-east-1/abc-1"))
    assert expr.eval(grid_ad("awsbatch/us-east-1/abc-1")) is True
    assert expr.eval(grid_ad("awsbatch/us-east-1/xabc-1")) is False
    assert expr.eval(grid_ad("awsbatch/us-east-1/abc-12")) is False
    assert expr.eval(classad2.ClassAd({"JobUniverse": 5, "GridJobId": "x awsbatch/us-east-1/abc-1"})) is False


def test_updates_only_on_change_and_survive_errors():
    ads = [grid_ad("awsbatch/us-east-1/j1")]
    fake = FakeSchedd(ads)
    calls = {"n": 0}

    def factory():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("schedd not reachable")
        return fake

    updater = schedd.JobAdUpdater(factory)
    updater.update("awsbatch/us-east-1/j1", {"AWSBatchStatus": "RUNNABLE", "AWSBatchStatusReason": "CAPACITY:X", "Other": 1})
    updater.flush()
    assert fake.edits == []  # first attempt failed...
    updater.update("awsbatch/us-east-1/j1", {"AWSBatchStatus": "RUNNABLE", "AWSBatchStatusReason": "CAPACITY:X"})
    updater.flush()
    assert ads[0]["AWSBatchStatus"] == "RUNNABLE" and ads[0]["AWSBatchStatusReason"] == "CAPACITY:X"
    n = len(fake.edits)
    updater.update("awsbatch/us-east-1/j1", {"AWSBatchStatus": "RUNNABLE", "AWSBatchStatusReason": "CAPACITY:X"})
    updater.flush()
    assert len(fake.edits) == n  # unchanged: no schedd traffic
    assert all(attr in schedd.ATTRIBUTES for _, attr, _ in fake.edits)


def test_service_writes_native_state_for_each_status(local_batch, local_entities, tmp_path, monkeypatch):
    """The service, in-process against the local Batch: RUNNING then SUCCEEDED reach the job ad."""
    for key, value in local_batch.client_env().items():
        monkeypatch.setenv(key, value)
    ads = []
    fake = FakeSchedd(ads)
    monkeypatch.setattr(schedd, "_default_schedd", lambda: fake)
    settings = Settings(region=local_batch.region, endpoint_url=local_batch.endpoint_url,
                        job_queue=local_entities.job_queue, job_definition=local_entities.job_definition,
                        poll_interval=0.2, state_dir=str(tmp_path / "state"), update_job_ad=True)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    service = JobService(settings, pool)
    results = {}

    def call(method, *args):
        done = threading.Event()
        method("7", *args, lambda line: (results.__setitem__("last", line), done.set()))
        assert done.wait(60)
        return results["last"].split(" ")

    fields = call(service.submit, job_ad(tmp_path, arguments="-c 'sleep 1'"))
    job_id = fields[3]
    ads.append(grid_ad(job_id))
    wait_for(lambda: call(service.status, job_id)[3] == "2", timeout=30, interval=0.1, message="RUNNING")
    service.job_ads.flush()
    assert ads[0]["AWSBatchStatus"] == "RUNNING"
    wait_for(lambda: call(service.status, job_id)[3] == "4", timeout=30, interval=0.1, message="COMPLETED")
    service.job_ads.flush()
    assert ads[0]["AWSBatchStatus"] == "SUCCEEDED"
    service.close()
    pool.shutdown()
