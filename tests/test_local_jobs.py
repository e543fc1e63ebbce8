"""The local AWS Batch over HTTP with boto3: jobs really run as local processes."""
import io
import time
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from fixtures_local import describe_job, pid_alive, wait_for, wait_job

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def batch(local_batch):
    return local_batch.client("batch")


@pytest.fixture(scope="module")
def s3(local_batch):
    return local_batch.client("s3")


@pytest.fixture(scope="module")
def logs(local_batch):
    return local_batch.client("logs")


@pytest.fixture
def submit(batch, local_entities):
    def _submit(command=None, name="job", env=None, **kw):
        overrides = kw.pop("containerOverrides", {})
        if command is not None:
            overrides["command"] = command
        if env:
            overrides["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        kw.setdefault("jobQueue", local_entities.job_queue)
        kw.setdefault("jobDefinition", local_entities.job_definition)
        return batch.submit_job(jobName=name, containerOverrides=overrides, **kw)["jobId"]
    return _submit


def read_log(logs, stream):
    """All messages of a stream, paging until nextForwardToken repeats (as Pegasus does)."""
    out, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        resp = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream,
                                   startFromHead=True, limit=7, **kw)
        out += [e["message"] for e in resp["events"]]
        if resp["nextForwardToken"] == token:
            return out
        token = resp["nextForwardToken"]


def job_output(logs, job):
    return read_log(logs, job["container"]["logStreamName"])


def code_of(exc):
    return exc.value.response["Error"]["Code"]


def test_state_walk_is_observable(local_batch, batch, submit, monkeypatch):
    monkeypatch.setattr(local_batch, "state_delay", 0.4)
    job_id = submit(["sleep", "1"])
    seen = []

    def done():
        status = describe_job(batch, job_id)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in ("SUCCEEDED", "FAILED")
    wait_for(done, 15, interval=0.01)
    assert seen == ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]


def test_success_and_failure_details(batch, logs, submit):
    ok, bad = submit(["sh", "-c", "echo out; echo err >&2"]), submit(["sh", "-c", "exit 3"], name="bad")
    job = wait_job(batch, ok)
    assert job["status"] == "SUCCEEDED" and job["container"]["exitCode"] == 0
    assert job["statusReason"] == "Essential container in task exited"
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert not job["isCancelled"] and not job["isTerminated"]
    assert job["jobQueue"].startswith("arn:aws:batch:") and ":job-definition/" in job["jobDefinition"]
    (attempt,) = job["attempts"]
    stream = job["container"]["logStreamName"]
    assert attempt["container"]["logStreamName"] == stream
    assert stream == f"local-fetch-and-run/default/{attempt['container']['taskArn'].rsplit('/', 1)[1]}"
    assert attempt["container"]["exitCode"] == 0 and attempt["stoppedAt"] >= attempt["startedAt"]
    assert job_output(logs, job) == ["out", "err"]
    failed = wait_job(batch, bad)
    assert failed["status"] == "FAILED" and failed["container"]["exitCode"] == 3
    assert failed["statusReason"] == "Essential container in task exited"
    missing = wait_job(batch, submit(["/no/such/program"], name="nostart"))
    assert missing["status"] == "FAILED" and "exitCode" not in missing["container"]
    assert missing["container"]["reason"].startswith("CannotStartContainerError")


def test_environment_cwd_and_parameters(local_batch, batch, logs, local_entities, submit):
    jd = batch.register_job_definition(
        jobDefinitionName="envtest", type="container", parameters={"greeting": "hello", "who": "def"},
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128,
                             "command": ["sh", "-c", "echo Ref::greeting Ref::who; pwd; ls -A | wc -l; "
                                         "env | grep -E '^(AWS_|FROM_|HOME=)' | sort"],
                             "environment": [{"name": "FROM_JD", "value": "jd"},
                                             {"name": "FROM_BOTH", "value": "jd"}]})
    job_id = batch.submit_job(jobName="env", jobQueue=local_entities.job_queue,
                              jobDefinition=jd["jobDefinitionName"], parameters={"who": "world"},
                              containerOverrides={"environment": [{"name": "FROM_BOTH", "value": "ovr"}]}
                              )["jobId"]
    job = wait_job(batch, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert job["parameters"] == {"greeting": "hello", "who": "world"}
    lines = job_output(logs, job)
    assert lines[0] == "hello world"
    assert lines[1].startswith(local_batch.workdir) and lines[2].strip() == "0"  # a fresh, empty cwd
    env = dict(line.split("=", 1) for line in lines[3:])
    assert env["FROM_JD"] == "jd" and env["FROM_BOTH"] == "ovr"
    assert env["AWS_BATCH_JOB_ID"] == job_id and env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert env["AWS_BATCH_JQ_NAME"] == local_entities.job_queue
    assert env["AWS_BATCH_CE_NAME"] == local_entities.compute_environment
    for key, value in local_batch.client_env().items():
        assert env[key] == value
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in env


def test_aws_cli_inside_job_reaches_emulated_s3(batch, s3, local_entities, submit):
    key = f"cli/{uuid.uuid4().hex}.txt"
    job_id = submit(["sh", "-c", f"echo from-job > f.txt && aws s3 cp f.txt s3://{local_entities.bucket}/{key}"],
                    name="awscli")
    job = wait_job(batch, job_id, timeout=40)
    assert job["status"] == "SUCCEEDED", job
    assert s3.get_object(Bucket=local_entities.bucket, Key=key)["Body"].read() == b"from-job\n"


def test_fetch_and_run_script_and_zip(batch, s3, logs, local_entities, submit):
    bucket = local_entities.bucket
    s3.put_object(Bucket=bucket, Key="jobs/myjob.sh",
                  Body=b"#!/bin/sh\necho \"args: $*\"\necho \"tmp: ${TMPDIR##*/}\"\nexit 7\n")
    script = submit(["myjob.sh", "a b", "c"], name="far-script",
                    env={"BATCH_FILE_TYPE": "script", "BATCH_FILE_S3_URL": f"s3://{bucket}/jobs/myjob.sh"})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bin/run.sh", "#!/bin/sh\necho \"zip $1\"; cat data.txt\n")
        zf.writestr("data.txt", "payload\n")
    s3.put_object(Bucket=bucket, Key="jobs/bundle.zip", Body=buf.getvalue())
    zipjob = submit(["bin/run.sh", "arg1"], name="far-zip",
                    env={"BATCH_FILE_TYPE": "zip", "BATCH_FILE_S3_URL": f"s3://{bucket}/jobs/bundle.zip"})
    usage = submit(["x"], name="far-usage", env={"BATCH_FILE_TYPE": "script"})
    nofetch = submit(["x"], name="far-missing",
                     env={"BATCH_FILE_TYPE": "script", "BATCH_FILE_S3_URL": f"s3://{bucket}/jobs/missing"})

    job = wait_job(batch, script)
    assert job["container"]["exitCode"] == 7
    assert job_output(logs, job) == ["args: a b c", "tmp: tmp.fetch_and_run"]
    job = wait_job(batch, zipjob)
    assert job["status"] == "SUCCEEDED", job_output(logs, job)
    assert job_output(logs, job) == ["zip arg1", "payload"]
    job = wait_job(batch, usage)
    assert job["container"]["exitCode"] == 2
    assert any("BATCH_FILE_S3_URL not set" in line for line in job_output(logs, job))
    job = wait_job(batch, nofetch)
    assert job["container"]["exitCode"] == 1
    assert any("Failed to download S3 script" in line for line in job_output(logs, job))


def test_log_stream_pages_many_lines(batch, logs, submit):
    job = wait_job(batch, submit(["sh", "-c", "i=0; while [ $i -lt 50 ]; do echo line$i; i=$((i+1)); done"],
                                 name="many"))
    assert job_output(logs, job) == [f"line{i}" for i in range(50)]


def test_timeout_kills_and_is_not_retried(local_batch, batch, submit, monkeypatch):
    monkeypatch.setattr(local_batch, "min_timeout_seconds", 1)
    t0 = time.monotonic()
    job_id = submit(["sleep", "30"], name="slow", timeout={"attemptDurationSeconds": 1},
                    retryStrategy={"attempts": 3})
    job = wait_job(batch, job_id, timeout=15)
    assert time.monotonic() - t0 < 10
    assert job["status"] == "FAILED" and job["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(job["attempts"]) == 1 and job["timeout"] == {"attemptDurationSeconds": 1}
    assert local_batch.job_pids(job_id) == []


def test_timeout_below_aws_minimum_rejected(submit):
    with pytest.raises(ClientError) as exc:
        submit(["true"], timeout={"attemptDurationSeconds": 5})
    assert code_of(exc) == "ClientException"


def test_terminate_running_job_leaves_no_process(local_batch, batch, submit):
    # The shell ignores SIGTERM, so the SIGKILL after the grace period is needed too.
    job_id = submit(["sh", "-c", "trap '' TERM; sleep 60 & sleep 60 & wait"], name="term")
    wait_job(batch, job_id, states=("RUNNING",))
    pids = wait_for(lambda: len(local_batch.job_pids(job_id)) >= 3 and local_batch.job_pids(job_id),
                    message="job processes")
    batch.terminate_job(jobId=job_id, reason="condor_rm")
    job = wait_job(batch, job_id, timeout=15)
    assert job["status"] == "FAILED" and job["statusReason"] == "condor_rm" and job["isTerminated"]
    assert local_batch.job_pids(job_id) == []
    assert not [p for p in pids if pid_alive(p)]


def test_cancel_semantics(local_batch, batch, submit):
    ents = local_batch.create_default_entities(prefix="one", max_vcpus=1)
    blocker = submit(["sleep", "30"], name="blocker", jobQueue=ents.job_queue)
    queued = submit(["true"], name="queued", jobQueue=ents.job_queue)
    wait_job(batch, blocker, states=("RUNNING",))
    wait_job(batch, queued, states=("RUNNABLE",))
    batch.cancel_job(jobId=queued, reason="not needed")
    batch.cancel_job(jobId=blocker, reason="ignored for running jobs")
    batch.cancel_job(jobId="no-such-job", reason="x")
    batch.terminate_job(jobId="no-such-job", reason="x")
    job = wait_job(batch, queued)
    assert job["status"] == "FAILED" and job["isCancelled"] and job["statusReason"] == "not needed"
    assert job["attempts"] == []
    assert describe_job(batch, blocker)["status"] == "RUNNING"
    batch.terminate_job(jobId=blocker, reason="done")
    assert wait_job(batch, blocker)["statusReason"] == "done"
    # terminate before start acts as cancel
    waiting = submit(["true"], name="w", dependsOn=[{"jobId": submit(["sleep", "30"], name="dep",
                                                                     jobQueue=ents.job_queue)}])
    batch.terminate_job(jobId=waiting, reason="gone")
    job = wait_job(batch, waiting)
    assert job["status"] == "FAILED" and job["statusReason"] == "gone"


def test_vcpu_limit_holds_jobs_runnable(local_batch, batch, submit):
    ents = local_batch.create_default_entities(prefix="two", max_vcpus=2)
    ids = [submit(["sleep", "30"], name=f"v{i}", jobQueue=ents.job_queue) for i in range(3)]
    wait_for(lambda: sum(describe_job(batch, j)["status"] == "RUNNING" for j in ids) == 2,
             message="two running")
    statuses = sorted(describe_job(batch, j)["status"] for j in ids)
    assert statuses == ["RUNNABLE", "RUNNING", "RUNNING"]
    big = submit(["true"], name="big", jobQueue=ents.job_queue,
                 containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]})
    job = wait_for(lambda: (describe_job(batch, big).get("statusReason") or "").startswith(
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT") and describe_job(batch, big), message="misconfig")
    assert job["status"] == "RUNNABLE"
    for j in ids + [big]:
        batch.terminate_job(jobId=j, reason="cleanup")
    for j in ids:
        wait_job(batch, j)


def test_retries_and_evaluate_on_exit(batch, logs, submit):
    retried = submit(["sh", "-c", 'echo attempt $AWS_BATCH_JOB_ATTEMPT; [ "$AWS_BATCH_JOB_ATTEMPT" = 3 ]'],
                     name="retry", retryStrategy={"attempts": 3})
    job = wait_job(batch, retried)
    assert job["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 1, 0]
    assert len({a["container"]["logStreamName"] for a in job["attempts"]}) == 3
    assert job_output(logs, job) == ["attempt 3"]
    assert read_log(logs, job["attempts"][0]["container"]["logStreamName"]) == ["attempt 1"]
    stopped = submit(["sh", "-c", "exit 42"], name="exitrule", retryStrategy={
        "attempts": 5, "evaluateOnExit": [{"onExitCode": "4*", "action": "EXIT"}]})
    job = wait_job(batch, stopped)
    assert job["status"] == "FAILED" and len(job["attempts"]) == 1
    kept = submit(["sh", "-c", "exit 9"], name="retryrule", retryStrategy={
        "attempts": 2, "evaluateOnExit": [{"onExitCode": "9", "action": "RETRY"},
                                          {"onReason": "*", "action": "EXIT"}]})
    assert len(wait_job(batch, kept)["attempts"]) == 2


def test_array_job_per_index_output(batch, logs, submit):
    parent = submit(["sh", "-c", "echo index=$AWS_BATCH_JOB_ARRAY_INDEX size=$AWS_BATCH_JOB_ARRAY_SIZE"],
                    name="arr", arrayProperties={"size": 5})
    job = wait_job(batch, parent)
    assert job["status"] == "SUCCEEDED"
    assert job["arrayProperties"]["size"] == 5
    assert job["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 5
    children = batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(5)])["jobs"]
    assert [c["arrayProperties"]["index"] for c in children] == list(range(5))
    for i, child in enumerate(children):
        assert child["jobId"] == f"{parent}:{i}"
        assert job_output(logs, child) == [f"index={i} size=5"]
    listed = batch.list_jobs(arrayJobId=parent, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == sorted(c["jobId"] for c in children)
    failing = submit(["sh", "-c", "exit $AWS_BATCH_JOB_ARRAY_INDEX"], name="arrfail",
                     arrayProperties={"size": 2})
    job = wait_job(batch, failing)
    assert job["status"] == "FAILED"
    assert job["arrayProperties"]["statusSummary"]["FAILED"] == 1
    for size in (1, 10001):
        with pytest.raises(ClientError) as exc:
            submit(["true"], arrayProperties={"size": size})
        assert code_of(exc) == "ClientException"


def test_depends_on_chain_and_failure(batch, submit, tmp_path):
    marker = tmp_path / "order"
    a = submit(["sh", "-c", f"sleep 0.3; echo a >> {marker}"], name="a")
    b = submit(["sh", "-c", f"echo b >> {marker}"], name="b", dependsOn=[{"jobId": a}])
    c = submit(["sh", "-c", f"echo c >> {marker}"], name="c", dependsOn=[{"jobId": b}])
    assert describe_job(batch, c)["status"] in ("SUBMITTED", "PENDING")
    assert wait_job(batch, c)["status"] == "SUCCEEDED"
    assert marker.read_text() == "a\nb\nc\n"
    bad = submit(["false"], name="bad")
    after = submit(["true"], name="after", dependsOn=[{"jobId": bad}])
    job = wait_job(batch, after)
    assert job["status"] == "FAILED" and job["statusReason"] == "Dependent Job failed"
    assert job["attempts"] == []
    with pytest.raises(ClientError):
        submit(["true"], dependsOn=[{"jobId": "nope"}])
    with pytest.raises(ClientError):
        submit(["true"], dependsOn=[{"jobId": a}] * 21)


def test_n_to_n_and_sequential(batch, submit, tmp_path):
    log_file = tmp_path / "seq"
    first = submit(["sh", "-c", f"sleep 0.$((3 - AWS_BATCH_JOB_ARRAY_INDEX)); "
                                f"echo first$AWS_BATCH_JOB_ARRAY_INDEX >> {log_file}"],
                   name="first", arrayProperties={"size": 3})
    second = submit(["sh", "-c", f"echo second$AWS_BATCH_JOB_ARRAY_INDEX >> {log_file}"],
                    name="second", arrayProperties={"size": 3},
                    dependsOn=[{"jobId": first, "type": "N_TO_N"}])
    assert wait_job(batch, second)["status"] == "SUCCEEDED"
    lines = log_file.read_text().split()
    for i in range(3):
        assert lines.index(f"first{i}") < lines.index(f"second{i}")
    seq_file = tmp_path / "sequential"
    seq = submit(["sh", "-c", f"sleep 0.$((4 - AWS_BATCH_JOB_ARRAY_INDEX)); "
                              f"echo $AWS_BATCH_JOB_ARRAY_INDEX >> {seq_file}"],
                 name="seq", arrayProperties={"size": 4}, dependsOn=[{"type": "SEQUENTIAL"}])
    assert wait_job(batch, seq)["status"] == "SUCCEEDED"
    assert seq_file.read_text().split() == ["0", "1", "2", "3"]
    children = batch.describe_jobs(jobs=[f"{seq}:{i}" for i in range(4)])["jobs"]
    for prev, nxt in zip(children, children[1:]):
        assert nxt["startedAt"] >= prev["stoppedAt"]


def test_describe_and_list_limits(batch, local_entities, submit):
    job_id = submit(["true"], name="lister-one")
    with pytest.raises(ClientError) as exc:
        batch.describe_jobs(jobs=[job_id] * 101)
    assert code_of(exc) == "ClientException" and "100" in exc.value.response["Error"]["Message"]
    assert batch.describe_jobs(jobs=["unknown-id"])["jobs"] == []
    wait_job(batch, job_id)
    running = submit(["sleep", "30"], name="lister-two")
    wait_job(batch, running, states=("RUNNING",))
    default = batch.list_jobs(jobQueue=local_entities.job_queue)["jobSummaryList"]
    assert {j["status"] for j in default} == {"RUNNING"} and running in {j["jobId"] for j in default}
    named = batch.list_jobs(jobQueue=local_entities.job_queue,
                            filters=[{"name": "JOB_NAME", "values": ["lister-*"]}])["jobSummaryList"]
    assert [j["jobId"] for j in named][:2] == [running, job_id]
    pages = list(batch.get_paginator("list_jobs").paginate(
        jobQueue=local_entities.job_queue, jobStatus="SUCCEEDED", PaginationConfig={"PageSize": 2}))
    assert len(pages) > 1 and all(len(p["jobSummaryList"]) <= 2 for p in pages)
    batch.terminate_job(jobId=running, reason="cleanup")
    wait_job(batch, running)


def test_submit_validation(batch, local_entities, submit):
    for name in ("-bad", "a" * 129, "has space"):
        with pytest.raises(ClientError) as exc:
            submit(["true"], name=name)
        assert code_of(exc) == "ClientException"
    with pytest.raises(ClientError) as exc:
        submit(["true"], jobQueue="nope")
    assert exc.value.response["Error"]["Message"] == "Job queue nope does not exist"
    with pytest.raises(ClientError) as exc:
        submit(["true"], jobDefinition="nope")
    assert exc.value.response["Error"]["Message"] == "Job definition nope does not exist"
    with pytest.raises(ClientError):
        submit(["true"], env={"AWS_BATCH_FOO": "x"})
    assert submit(["true"], name="x")  # one character is valid on AWS


# ---- review: escaped processes, descriptor leaks, terminate while STARTING ----------------

def test_wait_returns_when_a_child_left_the_process_group(tmp_path):
    """Reviewer's e2: a child that left the group (setsid) held the pipe and JobProcess.wait
    blocked forever in stdout.close(); the escaped child is killed like a container's."""
    import threading
    from gahp.local.runner import JobProcess, Plan
    pidfile = tmp_path / "pid"
    plan = Plan(["/bin/sh", "-c", f"echo hi; setsid sleep 30 & echo $! > {pidfile}; sleep 0.3; echo bye"],
                {"PATH": "/usr/bin:/bin"}, str(tmp_path))
    lines = []
    proc = JobProcess(plan, lines.append)
    proc.start()
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("rc", proc.wait()), daemon=True)
    waiter.start()
    waiter.join(4)
    assert not waiter.is_alive(), "JobProcess.wait hung"
    assert result["rc"] == 0 and lines == [b"hi\n", b"bye\n"]
    escaped = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(escaped), timeout=3, message="escaped child killed")


def test_wait_returns_even_if_an_unmarked_process_holds_the_pipe(tmp_path):
    """A process that dropped its environment cannot be found; the reader gives up on it."""
    from gahp.local import runner
    pidfile = tmp_path / "pid"
    plan = runner.Plan(["/bin/sh", "-c", f"setsid env -i /bin/sleep 30 & echo $! > {pidfile}; sleep 0.3; printf bye"],
                       {"PATH": "/usr/bin:/bin"}, str(tmp_path))
    lines = []
    proc = runner.JobProcess(plan, lines.append)
    proc.start()
    try:
        started = time.monotonic()
        assert proc.wait() == 0
        assert time.monotonic() - started < runner.DRAIN_TIMEOUT + 2
        assert lines == [b"bye"]          # a last line without newline is kept
        assert proc.proc.stdout.closed
    finally:
        import os
        import signal
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_no_descriptor_leak_per_attempt(tmp_path):
    """Reviewer's e7: each attempt leaked its pipe (and a ResourceWarning)."""
    import gc
    import os
    import warnings
    from gahp.local.runner import JobProcess, Plan
    before = len(os.listdir("/proc/self/fd"))
    keep = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for _ in range(30):
            p = JobProcess(Plan(["/bin/echo", "x"], {"PATH": "/bin"}, str(tmp_path)), lambda l: None)
            p.start()
            assert p.wait() == 0
            keep.append(p)
        gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_terminate_while_starting_never_starts_the_process(local_batch, batch, submit, monkeypatch,
                                                             tmp_path):
    marker = tmp_path / "ran"
    monkeypatch.setattr(local_batch, "state_delay", 0.5)
    job_id = submit(["sh", "-c", f"touch {marker}"], name="starting")
    wait_job(batch, job_id, states=("STARTING",), timeout=10)
    batch.terminate_job(jobId=job_id, reason="stop while starting")
    job = wait_job(batch, job_id, timeout=10)
    assert job["status"] == "FAILED" and job["statusReason"] == "stop while starting"
    assert job["isTerminated"]
    time.sleep(0.2)   # a process started by mistake would have touched the file by now
    assert not marker.exists()


def test_other_region_is_refused(local_batch, batch, submit):
    """Reviewer's e8: a us-west-2 client was answered from the emulator's region."""
    import boto3
    other = "eu-west-1" if local_batch.region != "eu-west-1" else "us-west-2"
    b2 = boto3.client("batch", endpoint_url=local_batch.endpoint_url, region_name=other,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    job_id = submit(["true"], name="region")
    for call in (lambda: b2.describe_jobs(jobs=[job_id]), lambda: b2.describe_job_queues(),
                 lambda: b2.terminate_job(jobId=job_id, reason="x")):
        with pytest.raises(ClientError) as exc:
            call()
        assert code_of(exc) == "ClientException"
        assert f"serves only {local_batch.region}" in str(exc.value)
    assert describe_job(batch, job_id)["jobName"] == "region"
