"""pegasus-aws-batch running bags of tasks on the local Batch: merged logs, cluster records,
exit codes, pegasus-exitcode semantics, SubmitJob economy, SIGTERM."""
import json
import os
import signal
import subprocess
import sys

import boto3
import pytest

from fixtures_local import wait_for
from gahp.pegasus import cli
from gahp.pegasus.credentials import CLIENT_HOOKS
from Pegasus.cluster import RecordParser
import Pegasus.exitcode as pegasus_exitcode

TASK_SH = ('echo "out of task $TASK_NO"\n'
           'echo "err of task $TASK_NO" >&2\n'
           'exit ${TASK_EXIT:-0}\n')


@pytest.fixture
def run_env(local_batch, local_entities, monkeypatch, tmp_path):
    for k, v in local_batch.client_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PEGASUS_AWS_BATCH_POLL_INTERVAL", "0.2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.sh").write_text(TASK_SH)
    return local_batch, local_entities, tmp_path


def write_bag(path, n, fail=(), extra_env=None):
    tasks = []
    for i in range(1, n + 1):
        env = [{"name": "TASK_NO", "value": str(i)},
               {"name": "TRANSFER_INPUT_FILES", "value": os.path.abspath("task.sh")}]
        if i in fail:
            env.append({"name": "TASK_EXIT", "value": "2"})
        env += extra_env or []
        tasks.append({"jobName": f"ID000{i:02d}", "executable": "sh", "arguments": "task.sh",
                      "environment": env})
    with open(path, "w") as fh:
        json.dump({"SubmitJob": tasks}, fh)
    return str(path)


def run_cli(lb, ents, prefix, job_file, *extra):
    return cli.main(["-p", prefix, "-j", ents.job_definition, "-q", ents.job_queue,
                     "-s", f"{ents.s3_url}/pegasus-tests", "-r", lb.region,
                     "--endpoint-url", lb.endpoint_url, "-m", f"merged/{prefix}",
                     "-L", "warn", *extra, job_file])


def records(text, kind):
    out = []
    pos = 0
    while True:
        b = text.find(f"[{kind}", pos)
        if b < 0:
            return out
        e = text.find("]", b)
        out.append(RecordParser(text[b:e + 1]).parse())
        pos = e + 1


def test_bag_of_five_succeeds(run_env):
    lb, ents, tmp = run_env
    rc = run_cli(lb, ents, "merge5", write_bag("merge5.in", 5))
    assert rc == 0
    out = (tmp / "merged" / "merge5.out").read_text()
    err = (tmp / "merged" / "merge5.err").read_text()
    for i in range(1, 6):
        assert f"out of task {i}\n" in out
        assert f"err of task {i}\n" in err
        assert f"err of task {i}" not in out
    tasks = records(out, "cluster-task")
    assert len(tasks) == 5 and out.count("[cluster-task") == 5
    assert [t["name"] for t in tasks] == [f"ID000{i:02d}" for i in range(1, 6)]
    assert all(t["state"] == "succeeded" and t["status"] == "0" for t in tasks)
    assert "[cluster-summary tasks=5, succeeded=5, failed=0" in out
    # per-task files were merged away, the jobstate log is there
    assert not list((tmp / "merged").glob("ID000*"))
    states = (tmp / "merged" / "merge5.jobstate.log").read_text().split("\n")
    assert any(l.split()[1:3] == ["ID00003", "SUCCEEDED"] for l in states if l)
    # Pegasus's own pegasus-exitcode accepts it
    pegasus_exitcode.exitcode(str(tmp / "merged" / "merge5.out"), rename=False,
                              generate_meta=False)
    # internal launcher files are gone, staged inputs stay
    s3 = lb.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ents.bucket,
                                                 Prefix="jobs/pegasus-tests/").get("Contents", [])]
    assert "jobs/pegasus-tests/task.sh" in keys
    assert not [k for k in keys if "_pegasus-aws-batch/merge5/" in k]


def test_failing_task_gives_exit_1(run_env):
    lb, ents, tmp = run_env
    rc = run_cli(lb, ents, "fail2", write_bag("fail2.in", 2, fail=(2,)))
    assert rc == 1
    out = (tmp / "merged" / "fail2.out").read_text()
    err = (tmp / "merged" / "fail2.err").read_text()
    assert "[cluster-summary tasks=2, succeeded=1, failed=1" in out
    t = {r["name"]: r for r in records(out, "cluster-task")}
    assert t["ID00001"]["status"] == "0" and t["ID00002"]["status"] == "1"
    assert t["ID00002"]["state"] == "failed"
    assert "task ID00002 exitcode 2" in err
    with pytest.raises(pegasus_exitcode.JobFailed, match="failed=1"):
        pegasus_exitcode.exitcode(str(tmp / "merged" / "fail2.out"), rename=False,
                                  generate_meta=False)


def test_exitcode_without_summary_fails(tmp_path):
    p = tmp_path / "x.out"
    p.write_text('[cluster-task id=1, name="a", aws-job-id="j", state=succeeded, status=0, '
                 'id=1, app="sh"]\n')
    with pytest.raises(pegasus_exitcode.JobFailed, match="cluster-summary is missing"):
        pegasus_exitcode.exitcode(str(p), rename=False, generate_meta=False)


def test_single_task_and_mixed_definitions(run_env):
    """Tasks naming another job definition are not put in the array."""
    lb, ents, tmp = run_env
    batch = lb.client("batch")
    other = batch.register_job_definition(
        jobDefinitionName="pegasus-other-def", type="container",
        containerProperties={"image": "local/fetch_and_run", "command": ["/bin/true"],
                             "vcpus": 1, "memory": 256})["jobDefinitionArn"]
    path = write_bag("mixed.in", 3)
    data = json.load(open(path))
    data["SubmitJob"][2]["jobDefinition"] = other
    json.dump(data, open(path, "w"))
    calls = []
    hook = lambda c: c.meta.events.register("before-parameter-build.batch.SubmitJob",
                                            lambda params, **kw: calls.append(params))
    CLIENT_HOOKS.append(hook)
    try:
        rc = run_cli(lb, ents, "mixed", path)
    finally:
        CLIENT_HOOKS.remove(hook)
    assert rc == 0
    assert len(calls) == 2
    arrays = [c for c in calls if "arrayProperties" in c]
    assert len(arrays) == 1 and arrays[0]["arrayProperties"]["size"] == 2
    out = (tmp / "merged" / "mixed.out").read_text()
    assert "out of task 3\n" in out and "[cluster-summary tasks=3, succeeded=3, failed=0" in out


def test_sigterm_terminates_submitted_tasks(run_env):
    lb, ents, tmp = run_env
    (tmp / "task.sh").write_text("echo started; sleep 120\n")
    path = write_bag("slow.in", 2)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gahp.pegasus.cli", "-p", "slow", "-j", ents.job_definition,
         "-q", ents.job_queue, "-s", f"{ents.s3_url}/pegasus-tests", "-r", lb.region,
         "--endpoint-url", lb.endpoint_url, "-m", "merged/slow", path],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    batch = lb.client("batch")
    try:
        state_log = tmp / "merged" / "slow.jobstate.log"

        def parent():
            if not state_log.exists():
                return None
            for line in state_log.read_text().splitlines():
                if line.split()[2] == "SUBMITTED":
                    return line.split()[3].split(":")[0]
        pid = wait_for(parent, timeout=30, message="array job submitted")
        ids = [pid]
        wait_for(lambda: all(j["status"] == "RUNNING" for j in batch.describe_jobs(
            jobs=[f"{pid}:{i}" for i in range(2)])["jobs"]), timeout=30,
            message="both tasks running")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert "interrupted by signal" in err
    job = batch.describe_jobs(jobs=[ids[0]])["jobs"][0]
    kids = batch.describe_jobs(jobs=[f"{ids[0]}:{i}" for i in range(2)])["jobs"]
    assert job["status"] == "FAILED" and all(k["status"] == "FAILED" for k in kids)
    assert "[cluster-summary tasks=2, succeeded=0, failed=2" in (tmp / "merged" / "slow.out").read_text()


# ------------------------------------------------------------------ SubmitJob economy (moto)

from test_pegasus_entities import moto_endpoint, network  # noqa: E402,F401


def test_hundred_tasks_cost_at_most_two_submits(moto_endpoint, network, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("PEGASUS_AWS_BATCH_POLL_INTERVAL", "0.05")
    monkeypatch.chdir(tmp_path)
    import gahp.pegasus.bag as bag
    monkeypatch.setattr(bag, "task_logs", lambda logs, detail, **kw: ("", "", True))
    b = boto3.client("batch", endpoint_url=moto_endpoint, region_name="us-west-2",
                     aws_access_key_id="testing", aws_secret_access_key="testing")
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-west-2",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    role = iam.get_role(RoleName="AWSBatchServiceRole")["Role"]["Arn"]
    b.create_compute_environment(computeEnvironmentName="count-ce", type="UNMANAGED",
                                 state="ENABLED", serviceRole=role)
    b.create_job_queue(jobQueueName="count-q", priority=1, state="ENABLED",
                       computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "count-ce"}])
    b.register_job_definition(jobDefinitionName="count-def", type="container",
                              containerProperties={"image": "x", "vcpus": 1, "memory": 128})
    tasks = [{"jobName": f"t{i}", "executable": "/bin/echo", "arguments": f"task {i}"}
             for i in range(100)]
    (tmp_path / "big.in").write_text(json.dumps({"SubmitJob": tasks}))
    calls, described = [], []
    hook = lambda c: (c.meta.events.register("before-parameter-build.batch.SubmitJob",
                                             lambda params, **kw: calls.append(params)),
                      c.meta.events.register("before-parameter-build.batch.DescribeJobs",
                                             lambda params, **kw: described.append(params)))
    CLIENT_HOOKS.append(hook)
    try:
        rc = cli.main(["-p", "big", "-j", "count-def", "-q", "count-q", "-s", "s3://count-stage/run",
                       "-r", "us-west-2", "--endpoint-url", moto_endpoint, "-m", "m/big",
                       "-L", "warn", str(tmp_path / "big.in")])
    finally:
        CLIENT_HOOKS.remove(hook)
    assert rc == 0
    assert 1 <= len(calls) <= 2
    assert all(len(d["jobs"]) <= 100 for d in described)
    out = (tmp_path / "m" / "big.out").read_text()
    assert out.count("[cluster-task") == 100
    assert "[cluster-summary tasks=100, succeeded=100, failed=0" in out


def test_demo_diamond(local_batch, local_entities, monkeypatch, tmp_path):
    from gahp.pegasus.demo import run_pegasus_diamond
    for k, v in local_batch.client_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PEGASUS_AWS_BATCH_POLL_INTERVAL", "0.2")
    monkeypatch.setenv("PEGASUS_AWS_BATCH_MAX_POLL_INTERVAL", "1")
    assert run_pegasus_diamond(local_batch.endpoint_url, local_batch.region, local_entities,
                               tmp_path / "diamond")
    out = (tmp_path / "diamond" / "count_ID0000002.out").read_text()
    assert "[cluster-summary tasks=3, succeeded=3, failed=0" in out
    assert "total words:" in (tmp_path / "diamond" / "summary.txt").read_text()


# ------------------------------------------------------------------ robustness (review e3, e4)

from gahp.pegasus import StopFlag  # noqa: E402
from gahp.pegasus.bag import BagRunner, Task, Unit, read_tasks  # noqa: E402
from gahp.pegasus.credentials import Clients, S3Location  # noqa: E402
from gahp.pegasus.entities import BucketEntity  # noqa: E402


class FakeBatch:
    def __init__(self, jobs=None, on_submit=None):
        self.jobs = jobs if jobs is not None else {}
        self.on_submit = on_submit
        self.describes = 0
        self.submitted, self.terminated = [], []

    def submit_job(self, **req):
        job_id = f"job-{len(self.submitted)}"
        self.submitted.append(job_id)
        if self.on_submit:
            self.on_submit()       # e.g. a signal arriving while the call is in flight
        return {"jobId": job_id}

    def describe_jobs(self, jobs):
        self.describes += 1
        return {"jobs": [self.jobs[j] for j in jobs if j in self.jobs]}

    def terminate_job(self, jobId, reason):
        self.terminated.append(jobId)


class FakeS3:
    def upload_file(self, *a, **kw):
        pass

    def put_object(self, **kw):
        pass


class FakeClients:
    def __init__(self, batch):
        self.batch, self.s3, self.logs = batch, FakeS3(), None


def test_monitor_gives_up_on_a_job_describe_no_longer_returns(tmp_path):
    """Reviewer's e3: a job DescribeJobs never returns used to be polled forever."""
    clock = {"t": 0.0}

    class Batch(FakeBatch):
        def describe_jobs(self, jobs):
            clock["t"] += 10
            return super().describe_jobs(jobs)

    batch = Batch()
    r = BagRunner(FakeClients(batch), "p", BucketEntity(S3Location("b", "p")), "jd", "jq",
                  workdir=str(tmp_path), poll_interval=0.001, max_poll_interval=0.001,
                  missing_grace=25, missing_polls=3, missing_time=20, clock=lambda: clock["t"])
    t = Task(1, "t1", "/bin/true")
    u = Unit(0, [t], "jd", "jq", job_id="gone-id", status="RUNNING", submitted_at=0.0)
    t.unit, t.job_id, r.units, r.tasks = u, "gone-id", [u], [t]
    r.monitor()
    # two polls inside the grace time, then 3 consecutive misses spanning 20 s
    assert batch.describes == 5
    assert t.state == "failed" and t.reason == "job record not found"
    assert "job record not found" in (tmp_path / "t1.err").read_text() + " ".join(r.errors)
    assert "[cluster-task id=1" in (tmp_path / "t1.out").read_text()


def test_a_record_seen_again_resets_the_miss_count(tmp_path):
    batch = FakeBatch()
    r = BagRunner(FakeClients(batch), "p", BucketEntity(S3Location("b", "p")), "jd", "jq",
                  workdir=str(tmp_path), missing_grace=0, missing_polls=2, missing_time=0)
    u = Unit(0, [Task(1, "t1", "x")], "jd", "jq", job_id="j", submitted_at=0.0)
    assert not r._missing(u)
    u.misses, u.first_miss = 0, None      # what monitor does when the record is back
    assert not r._missing(u) and r._missing(u)


def _bag_file(tmp_path, n=1):
    (tmp_path / "in.txt").write_text("x")
    tasks = [{"jobName": f"t{i}", "executable": "/bin/true", "arguments": "",
              "environment": [{"name": "TRANSFER_INPUT_FILES", "value": str(tmp_path / "in.txt")}]}
             for i in range(1, n + 1)]
    (tmp_path / "j.in").write_text(json.dumps({"SubmitJob": tasks}))
    return str(tmp_path / "j.in")


def test_s3_upload_failure_is_exit_2_with_summary(moto_endpoint, monkeypatch, tmp_path):
    """Reviewer's e4: S3UploadFailedError (a boto3, not botocore, error) escaped run()."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    c = Clients("us-west-2", moto_endpoint)
    r = BagRunner(c, "p", BucketEntity(S3Location("no-such-bucket-e4", "p")), "jd", "jq",
                  merge_logs=str(tmp_path / "m" / "p"))
    rc = r.run(read_tasks([_bag_file(tmp_path)]), install_signals=False)
    assert rc == 2
    assert any("NoSuchBucket" in e or "upload" in e.lower() for e in r.errors), r.errors
    assert "[cluster-summary tasks=1, succeeded=0, failed=1" in (tmp_path / "m" / "p.out").read_text()


@pytest.mark.parametrize("exc", [
    "S3UploadFailedError", "OSError", "RuntimeError"])
def test_cli_errors_while_running_are_exit_2_not_tracebacks(run_env, monkeypatch, capsys, exc):
    from boto3.exceptions import S3UploadFailedError
    import gahp.pegasus.bag as bag
    lb, ents, tmp = run_env
    errors = {"S3UploadFailedError": S3UploadFailedError("Failed to upload in.txt to b/k: denied"),
              "OSError": PermissionError(13, "Permission denied", "in.txt"),
              "RuntimeError": RuntimeError("boom")}

    def stage(self):
        raise errors[exc]
    monkeypatch.setattr(bag.BagRunner, "stage", stage)
    rc = run_cli(lb, ents, f"err-{exc}", write_bag("err.in", 2))
    assert rc == 2
    err = capsys.readouterr().err
    assert "pegasus-aws-batch: error:" in err and "Traceback" not in err
    assert {"S3UploadFailedError": "denied", "OSError": "Permission denied",
            "RuntimeError": "internal error: RuntimeError: boom"}[exc] in err
    out = (tmp / "merged" / f"err-{exc}.out").read_text()
    assert "[cluster-summary tasks=2, succeeded=0, failed=2" in out


def test_cli_unexpected_error_outside_run_is_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "Clients", lambda *a, **kw: 1 / 0)
    assert cli.main(["-p", "x", "-r", "us-east-1", "--create", "-L", "fatal"]) == 2
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError" in err and "Traceback" not in err


def test_signal_during_submit_records_and_terminates_the_job(tmp_path, monkeypatch):
    """A signal only sets the flag: the SubmitJob in flight completes, its job id is recorded
    and terminated; a second signal does not escape as an exception."""
    import gahp.pegasus.bag as bag
    monkeypatch.setattr(bag, "task_logs", lambda *a, **kw: ("", "", True))
    batch = FakeBatch(on_submit=lambda: (os.kill(os.getpid(), signal.SIGTERM),
                                         os.kill(os.getpid(), signal.SIGINT)))
    r = BagRunner(FakeClients(batch), "p", BucketEntity(S3Location("b", "p")), "jd", "jq",
                  merge_logs=str(tmp_path / "m" / "p"))
    before = signal.getsignal(signal.SIGTERM)
    rc = r.run(read_tasks([_bag_file(tmp_path, 3)]))
    assert rc == 2
    assert batch.submitted == ["job-0"] and batch.terminated == ["job-0"]
    assert r.errors == ["interrupted by signal 15"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert "[cluster-summary tasks=3, succeeded=0, failed=3" in (tmp_path / "m" / "p.out").read_text()
    states = (tmp_path / "m" / "p.jobstate.log").read_text()
    assert "SUBMITTED job-0:0" in states


def test_stop_ends_log_collection_early(tmp_path, monkeypatch):
    import gahp.pegasus.bag as bag
    stop = StopFlag()
    fetched = []

    def task_logs(logs, detail, sleep=None):
        fetched.append(detail["jobId"])
        stop.set(signal.SIGTERM)            # the signal arrives while fetching the first log
        return "out\n", "", True
    monkeypatch.setattr(bag, "task_logs", task_logs)
    jobs = {"arr": {"jobId": "arr", "status": "SUCCEEDED"}}
    jobs.update({f"arr:{i}": {"jobId": f"arr:{i}", "status": "SUCCEEDED"} for i in range(50)})
    r = BagRunner(FakeClients(FakeBatch(jobs)), "p", BucketEntity(S3Location("b", "p")), "jd",
                  "jq", workdir=str(tmp_path), poll_interval=0.001, stop=stop)
    tasks = [Task(i + 1, f"t{i}", "x") for i in range(50)]
    u = Unit(0, tasks, "jd", "jq", job_id="arr", status="RUNNING")
    for i, t in enumerate(tasks):
        t.unit, t.index, t.job_id = u, i, f"arr:{i}"
    r.units, r.tasks = [u], tasks
    r.monitor()
    assert fetched == ["arr:0"]
    assert all(t.state == "succeeded" for t in tasks)
    assert "not fetched: interrupted by signal 15" in (tmp_path / "t7.err").read_text()


def test_stop_flag_second_signal_is_harmless():
    stop = StopFlag()
    old = stop.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: stop.count == 2, timeout=5, message="both signals handled")
    finally:
        StopFlag.restore(old)
    assert stop.signum == signal.SIGINT and stop.message == "interrupted by signal 2"
