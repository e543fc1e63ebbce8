"""The job state machine and fetch-and-run planning, without processes or HTTP."""
import io
import zipfile

import pytest

from gahp.local import store as st
from gahp.local.runner import plan_attempt

CE = {"ce": 2.0}


def spec(**kw):
    base = dict(name="j", queue_name="q", queue_arn="arn:q", ce_order=["ce"], jobdef_name="jd",
                jobdef_arn="arn:aws:batch:us-east-1:1:job-definition/jd:1", command=["true"],
                environment={})
    base.update(kw)
    return st.JobSpec(**base)


def new_store(delay=0.0):
    return st.JobStore("us-east-1", "123456789012", state_delay=delay)


def run_to_end(store, job_id, t, code):
    """Simulate the runner for one attempt."""
    store.new_attempt(job_id, f"task{t}", "cluster")
    store.mark_running(job_id, t, f"jd/default/task{t}")
    store.mark_stopped(job_id, t + 0.1, code)


def test_state_walk_honours_delay():
    s = new_store(delay=1.0)
    rec = s.submit(spec(), 0.0)
    seen = [rec.status]
    for t in (0.5, 1.0, 2.0, 3.0):
        acts = s.advance(t, CE)
        seen.append(rec.status)
    assert seen == ["SUBMITTED", "SUBMITTED", "PENDING", "RUNNABLE", "STARTING"]
    assert [a.job_id for a in acts] == [rec.job_id]
    run_to_end(s, rec.job_id, 3.5, 0)
    assert rec.status == "SUCCEEDED" and rec.status_reason == st.REASON_EXITED
    assert [h[0] for h in rec.history] == list(st.STATES[:6])


def test_capacity_limits_concurrency_and_misconfiguration():
    s = new_store()
    a, b, c = (s.submit(spec(name=n), 0.0) for n in "abc")
    big = s.submit(spec(name="big", vcpus=3), 0.0)
    started = {x.job_id for x in s.advance(0.0, CE)}
    assert started == {a.job_id, b.job_id}
    assert c.status == "RUNNABLE" and c.status_reason is None
    assert big.status == "RUNNABLE" and big.status_reason.startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    run_to_end(s, a.job_id, 1.0, 0)
    assert [x.job_id for x in s.advance(1.2, CE)] == [c.job_id]
    assert s.advance(1.3, {}) == []  # a disabled/unknown CE starts nothing


@pytest.mark.parametrize("rules,code,status_reason,expected", [
    ([], 1, st.REASON_EXITED, "RETRY"),
    ([{"onExitCode": "1", "action": "EXIT"}], 1, None, "EXIT"),
    ([{"onExitCode": "1*", "action": "EXIT"}], 237, None, "RETRY"),
    ([{"onExitCode": "13*", "action": "EXIT"}], 137, None, "EXIT"),
    ([{"onStatusReason": "Host EC2*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
     1, "Host EC2 (instance i-1) terminated.", "RETRY"),
    ([{"onStatusReason": "Host EC2*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
     1, st.REASON_EXITED, "RETRY"),  # onReason with no container reason does not match
    ([{"onExitCode": "2", "onStatusReason": "Ess*", "action": "exit"}], 2, st.REASON_EXITED, "EXIT"),
    ([{"onExitCode": "2", "onStatusReason": "Host*", "action": "EXIT"}], 2, st.REASON_EXITED, "RETRY"),
])
def test_retry_decision(rules, code, status_reason, expected):
    assert st.retry_decision(rules, code, status_reason, None) == expected


def test_retry_then_exit_rule():
    s = new_store()
    rec = s.submit(spec(retry_strategy={"attempts": 3, "evaluateOnExit": [
        {"onExitCode": "5", "action": "EXIT"}]}), 0.0)
    s.advance(0, CE)
    run_to_end(s, rec.job_id, 1, 1)
    assert rec.status == "RUNNABLE" and rec.attempt_number == 1
    assert s.advance(2, CE)[0].attempt == 2
    run_to_end(s, rec.job_id, 3, 5)
    assert rec.status == "FAILED" and len(rec.attempts) == 2
    assert [a.exit_code for a in rec.attempts] == [1, 5]
    assert s.ce_used["ce"] == 0


def test_timeout_and_terminate_are_not_retried():
    s = new_store()
    rec = s.submit(spec(timeout=60, retry_strategy={"attempts": 3}), 0.0)
    s.advance(0, CE)
    s.new_attempt(rec.job_id, "t", "c")
    s.mark_running(rec.job_id, 10.0, "jd/default/t")
    assert s.due_timeouts(69.0) == []
    assert s.next_wakeup(20.0) == pytest.approx(50.0)
    assert s.due_timeouts(70.0) == [rec.job_id]
    s.mark_stopped(rec.job_id, 71.0, 143)
    assert rec.status == "FAILED" and rec.status_reason == st.REASON_TIMEOUT
    assert not rec.is_terminated

    rec2 = s.submit(spec(retry_strategy={"attempts": 3}), 100.0)
    s.advance(100, CE)
    s.new_attempt(rec2.job_id, "t2", "c")
    s.mark_running(rec2.job_id, 100.0, "jd/default/t2")
    assert s.terminate(rec2.job_id, "bye", 101.0) == [rec2.job_id]
    assert rec2.status == "RUNNING"  # until the process is gone
    s.mark_stopped(rec2.job_id, 102.0, 143)
    assert rec2.status == "FAILED" and rec2.status_reason == "bye" and rec2.is_terminated


def test_cancel_only_before_start():
    s = new_store()
    running = s.submit(spec(name="r"), 0.0)
    queued = s.submit(spec(name="q", vcpus=2), 0.0)
    s.advance(0, CE)
    assert running.status == "STARTING" and queued.status == "RUNNABLE"
    s.cancel(running.job_id, "no", 1.0)
    s.cancel(queued.job_id, "no", 1.0)
    s.cancel("unknown", "no", 1.0)
    assert running.status == "STARTING" and not running.is_cancelled
    assert queued.status == "FAILED" and queued.is_cancelled and queued.status_reason == "no"
    assert s.terminate(running.job_id, "stop", 2.0) == [running.job_id]
    assert s.terminate("unknown", "stop", 2.0) == []


def test_dependencies_and_failure_propagation():
    s = new_store()
    a = s.submit(spec(name="a"), 0.0)
    b = s.submit(spec(name="b", depends_on=[{"jobId": a.job_id}]), 0.0)
    c = s.submit(spec(name="c", depends_on=[{"jobId": b.job_id}]), 0.0)
    s.advance(0, CE)
    assert (a.status, b.status, c.status) == ("STARTING", "PENDING", "PENDING")
    run_to_end(s, a.job_id, 1, 0)
    s.advance(1.2, CE)
    assert b.status == "STARTING" and c.status == "PENDING"
    run_to_end(s, b.job_id, 2, 4)
    s.advance(2.2, CE)
    assert c.status == "FAILED" and c.status_reason == st.REASON_DEPENDENCY
    with pytest.raises(st.ClientError):
        s.submit(spec(depends_on=[{"jobId": "nope"}]), 3.0)


def test_array_n_to_n_and_sequential():
    s = new_store()
    first = s.submit(spec(name="a", array_size=3), 0.0)
    n2n = s.submit(spec(name="b", array_size=3, depends_on=[{"jobId": first.job_id, "type": "N_TO_N"}]), 0.0)
    seq = s.submit(spec(name="c", array_size=3, depends_on=[{"type": "SEQUENTIAL"}]), 0.0)
    assert s.jobs[f"{n2n.job_id}:1"].waits_for == {f"{first.job_id}:1"}
    assert s.jobs[f"{seq.job_id}:2"].waits_for == {f"{seq.job_id}:1"}
    assert s.jobs[f"{seq.job_id}:0"].waits_for == set()
    big = {"ce": 100.0}
    started = {a.job_id for a in s.advance(0, big)}
    assert started == {f"{first.job_id}:{i}" for i in range(3)} | {f"{seq.job_id}:0"}
    assert first.status == "PENDING"
    assert s.status_summary(first)["STARTING"] == 3
    run_to_end(s, f"{first.job_id}:1", 1, 0)
    run_to_end(s, f"{first.job_id}:2", 1, 9)
    started = {a.job_id for a in s.advance(1.2, big)}
    assert started == {f"{n2n.job_id}:1"}
    assert s.jobs[f"{n2n.job_id}:2"].status == "FAILED"
    run_to_end(s, f"{first.job_id}:0", 2, 0)
    assert first.status == "FAILED"  # one child failed
    detail = s.describe(first)
    assert detail["arrayProperties"] == {"size": 3, "statusSummary": {
        "SUBMITTED": 0, "PENDING": 0, "RUNNABLE": 0, "STARTING": 0, "RUNNING": 0,
        "SUCCEEDED": 2, "FAILED": 1}}
    assert s.describe(s.jobs[f"{seq.job_id}:2"])["dependsOn"] == [
        {"jobId": f"{seq.job_id}:1", "type": "SEQUENTIAL"}]
    with pytest.raises(st.ClientError):
        s.submit(spec(array_size=4, depends_on=[{"jobId": first.job_id, "type": "N_TO_N"}]), 3.0)


def test_describe_limit_and_unknown_ids():
    s = new_store()
    rec = s.submit(spec(), 0.0)
    assert [j["jobId"] for j in s.describe_many([rec.job_id, "nope", rec.job_id])] == [rec.job_id]
    with pytest.raises(st.ClientError, match="Maximum number of jobs supported is 100"):
        s.describe_many([f"id{i}" for i in range(101)])


def test_list_jobs_default_filters_and_paging():
    s = new_store()
    recs = [s.submit(spec(name=f"alpha-{i}"), float(i)) for i in range(5)]
    s.submit(spec(name="beta"), 9.0)
    s.advance(10, {"ce": 100})
    for r in recs[:2]:
        s.new_attempt(r.job_id, "t", "c")
        s.mark_running(r.job_id, 10, "x")
    jobs, token = s.list_jobs(queue_arn="arn:q")
    assert {j["jobId"] for j in jobs} == {recs[0].job_id, recs[1].job_id} and token is None
    jobs, _ = s.list_jobs(queue_arn="arn:q", filters=[{"name": "JOB_NAME", "values": ["ALPHA*"]}])
    assert [j["jobName"] for j in jobs] == [f"alpha-{i}" for i in (4, 3, 2, 1, 0)]  # newest first
    names, token = [], None
    while True:
        page, token = s.list_jobs(queue_arn="arn:q", status="STARTING", max_results=2, next_token=token)
        assert len(page) <= 2
        names += [j["jobName"] for j in page]
        if not token:
            break
    assert names == ["beta", "alpha-4", "alpha-3", "alpha-2"]
    assert s.list_jobs(queue_arn="other", status="STARTING")[0] == []


def test_job_names_and_parameters():
    for good in ("x", "a" * 128, "A-b_9"):
        st.validate_job_name(good)
    for bad in ("", "a" * 129, "-a", "a b", "a.b", None):
        with pytest.raises(st.ClientError):
            st.validate_job_name(bad)
    assert st.substitute_parameters(["echo", "Ref::a", "Ref::ab", "x-Ref::a"], {"a": "1", "ab": "2"}) \
        == ["echo", "1", "2", "x-1"]


def fetcher(objects):
    def fetch(url):
        if url not in objects:
            raise KeyError(url)
        return objects[url]
    return fetch


def test_fetch_and_run_planning(tmp_path):
    env = {"BATCH_FILE_TYPE": "script", "BATCH_FILE_S3_URL": "s3://b/s.sh"}
    plan = plan_attempt(["ignored", "a1", "a2"], env, str(tmp_path / "1"), fetcher({"s3://b/s.sh": b"#!/bin/sh\n"}))
    assert plan.exit_code is None and plan.argv[1:] == ["a1", "a2"]
    assert open(plan.argv[0], "rb").read() == b"#!/bin/sh\n"
    assert plan.env["TMPDIR"] == str(tmp_path / "1" / "tmp.fetch_and_run")

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("dir/run.sh", "#!/bin/sh\necho hi\n")
    plan = plan_attempt(["dir/run.sh", "x"], {**env, "BATCH_FILE_TYPE": "zip"}, str(tmp_path / "2"),
                        fetcher({"s3://b/s.sh": buf.getvalue()}))
    assert plan.argv == ["./dir/run.sh", "x"] and plan.cwd.endswith("tmp.fetch_and_run")

    def code(cmd, e):
        (tmp_path / "n").mkdir(exist_ok=True)
        d = tmp_path / "n" / str(len(list((tmp_path / "n").iterdir())))
        d.mkdir()
        return plan_attempt(cmd, e, str(d), fetcher({})).exit_code

    assert code(["x"], {"BATCH_FILE_TYPE": "script"}) == 2
    assert code(["x"], {"BATCH_FILE_S3_URL": "s3://b/k"}) == 2
    assert code(["x"], {"BATCH_FILE_TYPE": "script", "BATCH_FILE_S3_URL": "http://b/k"}) == 2
    assert code(["x"], {"BATCH_FILE_TYPE": "tar", "BATCH_FILE_S3_URL": "s3://b/k"}) == 2
    assert code([], {"BATCH_FILE_TYPE": "zip", "BATCH_FILE_S3_URL": "s3://b/k"}) == 2
    assert code(["x"], {"BATCH_FILE_TYPE": "script", "BATCH_FILE_S3_URL": "s3://b/missing"}) == 1
    assert code(["x"], {"PATH": "/bin"}) is None  # no fetch-and-run variables: plain command


def test_mark_stopped_leaves_a_final_job_alone():
    """An attempt thread ending after the emulator abandoned its job must not finish it twice
    (nor give its vCPUs back twice)."""
    s = new_store()
    rec = s.submit(spec(vcpus=1), 0.0)
    other = s.submit(spec(name="o", vcpus=1), 0.0)
    s.advance(0, CE)
    for r in (rec, other):
        s.new_attempt(r.job_id, f"t-{r.spec.name}", "c")
        s.mark_running(r.job_id, 1.0, "jd/default/t")
    s.abandon(rec.job_id, 2.0, "shut down")
    assert rec.status == "FAILED" and s.ce_used["ce"] == 1.0
    history = list(rec.history)
    s.mark_stopped(rec.job_id, 3.0, 0)
    assert rec.status == "FAILED" and rec.status_reason == "shut down"
    assert rec.history == history and s.ce_used["ce"] == 1.0


def test_large_array_scheduling_is_linear():
    """Reviewer's e1: advance() refreshed the parent by scanning all its children once per
    child, O(n^2) under the engine lock (minutes for 10,000 children).  The parent now keeps
    counters; its children are walked once, when it becomes final."""
    import time
    s = new_store()
    parent = s.submit(spec(array_size=10000), 0.0)
    started = time.monotonic()
    acts = s.advance(0.0, {"ce": 8})
    acts += s.advance(0.1, {"ce": 8})
    assert time.monotonic() - started < 3.0           # generous: well under 1 s in practice
    assert len(acts) == 8 and s.child_scans == 0
    assert parent.status == "PENDING"
    summary = s.describe(parent)["arrayProperties"]["statusSummary"]
    assert summary["STARTING"] == 8 and summary["RUNNABLE"] == 9992
    t = 1.0
    while acts:
        for a in acts:
            run_to_end(s, a.job_id, t, 0 if int(a.job_id.rsplit(":", 1)[1]) % 1000 else 1)
        acts = s.advance(t + 0.2, {"ce": 8000})
        t += 1.0
    assert parent.status == "FAILED" and parent.status_reason == "Array Child Job failed"
    summary = s.status_summary(parent)
    assert summary["SUCCEEDED"] == 9990 and summary["FAILED"] == 10
    assert s.child_scans == 1 and parent.started_at is not None
