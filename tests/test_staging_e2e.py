"""S3 staging end to end: the awsbatch_gahp process, driven like condor_gridmanager, with
AWSBATCH_GAHP_S3_URL set, on the local AWS Batch (jobs really run the generated wrapper
through fetch-and-run, with the host's ``aws`` CLI against the emulated S3)."""

import os

import pytest

from fixtures_gahp import job_ad
from fixtures_local import describe_job, pid_alive, wait_for
from gahp.staging import split_s3_url
from gahp.submission import JobRecord, parse_job_id

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def staged_gahp(start_gahp, local_entities):
    return start_gahp(S3_URL=local_entities.s3_url)


@pytest.fixture
def batch(local_batch):
    return local_batch.client("batch")


@pytest.fixture
def s3(local_batch):
    return local_batch.client("s3")


def staging_url_of(batch, job_id):
    detail = describe_job(batch, parse_job_id(job_id)[1])
    return JobRecord.from_detail(detail).staging_url


def keys_under(s3, url):
    bucket, prefix = split_s3_url(url)
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def run(gm, ad, timeout=60):
    result = gm.submit(ad)
    assert result.rc == 0, result.fields
    return result.job_id, gm.wait_for_status(result.job_id, timeout=timeout)


def test_issue_scenario_outputs_in_place_before_status_4(staged_gahp, tmp_path, batch, s3):
    (tmp_path / "in.txt").write_text("the input\n")
    ad = job_ad(tmp_path, cmd="/bin/sh",
                arguments="-c 'echo out-$FOO; echo err >&2; cat in.txt > result.txt; exit 3'",
                Environment="FOO=bar", Out="out.txt", Err="err.txt",
                TransferInput="in.txt", TransferOutput="result.txt")
    job_id, status = run(staged_gahp, ad)
    assert status.status == 4, status.fields
    assert status.ad["ExitCode"] == 3 and status.ad["ExitBySignal"] is False
    assert (tmp_path / "out.txt").read_text() == "out-bar\n"
    assert (tmp_path / "err.txt").read_text() == "err\n"
    assert (tmp_path / "result.txt").read_text() == "the input\n"
    # the prefix is deleted after a successful stage-out, and nothing else is left behind
    assert keys_under(s3, staging_url_of(batch, job_id)) == []
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".awsbatch-gahp")]


def test_exact_argv_and_environment_round_trip(staged_gahp, tmp_path, batch):
    args = ["two words", "it's", '"dq"', "$HOME", "*", "back\\slash", "new\nline", "", "  lead", "x" * 20000]
    v2 = " ".join("'" + a.replace("'", "''") + "'" for a in args)
    env_values = {"A": "sp ace", "B": "$(touch /tmp/pwned)", "C": "q'uo\"te", "D": "back\\slash\nnl", "E": "*"}
    environment = " ".join(f"{k}='" + v.replace("'", "''") + "'" for k, v in env_values.items())
    script = ("for a in \"$@\"; do printf '%s\\0' \"$a\"; done; "
              "printf '%s\\0' \"$A\" \"$B\" \"$C\" \"$D\" \"$E\" >&2")
    ad = job_ad(tmp_path, cmd="/bin/sh", arguments=f"-c '{script.replace(chr(39), chr(39) * 2)}' argv0 {v2}",
                Environment=environment, Out="args.out", Err="env.out")
    job_id, status = run(staged_gahp, ad)
    assert status.status == 4 and status.ad["ExitCode"] == 0, status.fields
    assert (tmp_path / "args.out").read_bytes().split(b"\0")[:-1] == [a.encode() for a in args]
    assert (tmp_path / "env.out").read_bytes().split(b"\0")[:-1] == [v.encode() for v in env_values.values()]
    detail = describe_job(batch, parse_job_id(job_id)[1])
    overrides = str(detail["container"].get("command")) + str(detail["container"].get("environment"))
    assert "x" * 100 not in overrides and "sp ace" not in overrides  # argv and env travel through S3


def test_user_executable_directory_input_stdin_and_merged_output(staged_gahp, tmp_path):
    exe = tmp_path / "analyze.sh"
    exe.write_text("#!/bin/sh\necho \"args: $*\"\necho to-stderr >&2\nread line\necho \"stdin: $line\"\n"
                   "ls data | sort\ncat data/sub/deep.txt\nmkdir -p res/inner\necho r > res/inner/r.txt\n")
    exe.chmod(0o755)
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("a")
    (tmp_path / "data" / "sub" / "deep.txt").write_text("deep\n")
    (tmp_path / "stdin.txt").write_text("from stdin\n")
    ad = job_ad(tmp_path, cmd=str(exe), arguments="one two", In="stdin.txt", Out="both.txt", Err="both.txt",
                TransferInput="data", TransferOutput="res")
    _, status = run(staged_gahp, ad)
    assert status.status == 4 and status.ad["ExitCode"] == 0, status.fields
    lines = (tmp_path / "both.txt").read_text().splitlines()
    assert lines == ["args: one two", "to-stderr", "stdin: from stdin", "a.txt", "sub", "deep"]
    assert (tmp_path / "res" / "inner" / "r.txt").read_text() == "r\n"


def test_missing_executable_is_a_submit_failure_naming_it(staged_gahp, tmp_path):
    result = staged_gahp.submit(job_ad(tmp_path, cmd=str(tmp_path / "nope.sh")))
    assert result.rc == 1 and "nope.sh" in result.error


def test_job_killed_by_a_signal(staged_gahp, tmp_path):
    _, status = run(staged_gahp, job_ad(tmp_path, arguments="-c 'echo before; kill -9 $$'"))
    assert status.status == 4, status.fields
    assert status.ad["ExitBySignal"] is True and status.ad["ExitSignal"] == 9
    assert (tmp_path / "job.out").read_text() == "before\n"


def test_escaping_output_name_and_symlink_are_refused(staged_gahp, tmp_path):
    iwd = tmp_path / "a" / "b"
    iwd.mkdir(parents=True)
    _, status = run(staged_gahp, job_ad(iwd, arguments="-c 'mkdir -p x/y; echo bad > x/y/z; exit 0'",
                                        TransferOutput="../../etc/x"))
    assert status.status == 5 and "../../etc/x" in status.ad["HoldReason"], status.fields
    assert not (tmp_path / "etc").exists()
    _, status = run(staged_gahp, job_ad(iwd, arguments="-c 'ln -s /etc/passwd result.txt'",
                                        TransferOutput="result.txt"))
    assert status.status == 5 and "result.txt" in status.ad["HoldReason"]
    assert "symbolic link" in status.ad["HoldReason"]
    assert not (iwd / "result.txt").exists()


def test_missing_output_is_a_hold_naming_the_file(staged_gahp, tmp_path):
    _, status = run(staged_gahp, job_ad(tmp_path, arguments="-c 'exit 0'", TransferOutput="never.txt"))
    assert status.status == 5 and "never.txt" in status.ad["HoldReason"], status.fields
    assert "No such file" in status.ad["HoldReason"]
    assert (status.ad["HoldReasonCode"], status.ad["HoldReasonSubCode"]) == (12, 2)  # as for vanilla jobs


def test_corrupted_staged_input_is_detected(staged_gahp, tmp_path, local_batch, s3, batch):
    (tmp_path / "in.txt").write_text("good data\n")
    old_delay = local_batch.state_delay
    local_batch.state_delay = 0.5  # time to tamper with the object before the job starts
    try:
        result = staged_gahp.submit(job_ad(tmp_path, arguments="-c 'cat in.txt'", TransferInput="in.txt"))
        assert result.rc == 0, result.fields
        bucket, prefix = split_s3_url(staging_url_of(batch, result.job_id))
        s3.put_object(Bucket=bucket, Key=prefix + "in/work/in.txt", Body=b"evil data\n")
    finally:
        local_batch.state_delay = old_delay
    status = staged_gahp.wait_for_status(result.job_id, timeout=60)
    assert status.status == 5, status.fields
    assert "in.txt" in status.ad["HoldReason"] and "corrupted" in status.ad["HoldReason"]


def test_cancel_of_a_running_staged_job(staged_gahp, tmp_path, local_batch, batch, s3):
    result = staged_gahp.submit(job_ad(tmp_path, arguments="-c 'echo started; sleep 60'"))
    assert result.rc == 0, result.fields
    url = staging_url_of(batch, result.job_id)
    batch_id = parse_job_id(result.job_id)[1]
    pids = wait_for(lambda: len(local_batch.job_pids(batch_id)) >= 2 and local_batch.job_pids(batch_id),
                    timeout=30, message="the job to run")
    assert staged_gahp.cancel(result.job_id).rc == 0
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=20, message="the job's processes to end")
    wait_for(lambda: keys_under(s3, url) == [], timeout=30, message="the staging prefix to be deleted")


def test_terminated_job_still_uploads_what_exists(local_batch, local_entities, batch, s3, tmp_path):
    """SIGTERM (TerminateJob, timeout, spot reclaim): the wrapper stops the command and
    uploads the partial output and a result record before the container is gone."""
    from gahp.config import Settings
    from gahp.jobad import JobSpec
    from gahp.staging import Stager, parse_result
    from gahp.submission import build_submit_request

    settings = Settings(s3_url=local_entities.s3_url, job_queue=local_entities.job_queue,
                        job_definition=local_entities.job_definition)
    stager = Stager(s3, settings)
    spec = JobSpec(job_directory="home_bl_term", job_name="condor-term", cmd="/bin/sh",
                   args=["-c", "echo partial; exec sleep 60"], env={}, iwd=str(tmp_path), stdin=None,
                   stdout=str(tmp_path / "o"), stderr=str(tmp_path / "e"), stage_cmd=False)
    launch, url = stager.stage_in(spec)
    request = build_submit_request(spec, settings, launch, JobRecord.from_spec(spec, url))
    batch_id = batch.submit_job(**request)["jobId"]
    bucket, prefix = split_s3_url(url)

    def started():
        log = local_batch.job_pids(batch_id)
        return len(log) >= 2 and log
    wait_for(started, timeout=30, message="the job to run")
    wait_for(lambda: "running the job" in job_log(local_batch, batch, batch_id), timeout=20,
             message="the command to start")
    batch.terminate_job(jobId=batch_id, reason="test")
    detail = wait_for(lambda: (d := describe_job(batch, batch_id)) and d["status"] == "FAILED" and d,
                      timeout=20, message="the job to fail")
    record = parse_result(s3.get_object(Bucket=bucket, Key=prefix + "out/1/result")["Body"].read().decode())
    assert record["terminated"] == "TERM" and record["exit_signal"] == "15", record
    result = stager.stage_out(JobRecord.from_detail(detail), detail)
    assert result.exit_signal == 15 and (tmp_path / "o").read_text() == "partial\n"
    stager.cleanup(url)


def job_log(local_batch, batch, batch_id):
    detail = describe_job(batch, batch_id)
    stream = (detail or {}).get("container", {}).get("logStreamName")
    if not stream:
        return ""
    try:
        events = local_batch.client("logs").get_log_events(
            logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)["events"]
    except Exception:
        return ""
    return "\n".join(e["message"] for e in events)


# --------------------------------------------------------------------------- review regressions


def test_job_environment_never_reaches_the_wrapper(staged_gahp, tmp_path):
    """Variables the wrapper once used itself, and PATH/AWS_CONFIG_FILE/PYTHONPATH that
    would break its aws CLI: the job sees them, staging does not."""
    env = "out=somewhere root=/x PATH=/opt/mytools/bin AWS_CONFIG_FILE=/nonexistent PYTHONPATH=/x"
    ad = job_ad(tmp_path, arguments="-c 'echo \"$out|$root|$PATH|$AWS_CONFIG_FILE|$PYTHONPATH\" > result.txt; echo hi'",
                Environment=env, TransferOutput="result.txt")
    _, status = run(staged_gahp, ad)
    assert status.status == 4 and status.ad["ExitCode"] == 0, status.fields
    assert (tmp_path / "result.txt").read_text() == "somewhere|/x|/opt/mytools/bin|/nonexistent|/x\n"
    assert (tmp_path / "job.out").read_text() == "hi\n"


def test_staged_executable_runs_with_a_non_identifier_environment_name(staged_gahp, tmp_path):
    exe = tmp_path / "run.sh"
    exe.write_text("#!/bin/sh\necho \"ran $*\"\n/usr/bin/tr '\\0' '\\n' < /proc/$$/environ | /usr/bin/grep '^my.var='\n")
    exe.chmod(0o644)  # not executable here: the wrapper makes the staged copy executable
    _, status = run(staged_gahp, job_ad(tmp_path, cmd=str(exe), arguments="a b",
                                        Environment="my.var=1 PATH=/opt/mytools/bin"))
    assert status.status == 4 and status.ad["ExitCode"] == 0, (status.fields, (tmp_path / "job.err").read_text())
    assert (tmp_path / "job.out").read_text() == "ran a b\nmy.var=1\n"


def test_a_retried_job_brings_back_only_its_last_attempts_outputs(staged_gahp, tmp_path):
    script = ('mkdir res; echo a$AWS_BATCH_JOB_ATTEMPT > res/a; '
              '[ "$AWS_BATCH_JOB_ATTEMPT" = 2 ] && exit 0; echo b > res/b; exit 1')
    _, status = run(staged_gahp, job_ad(tmp_path, arguments=f"-c '{script}'", TransferOutput="res",
                                        RetryAttempts=2), timeout=90)
    assert status.status == 4 and status.ad["ExitCode"] == 0, status.fields
    assert sorted(os.listdir(tmp_path / "res")) == ["a"]
    assert (tmp_path / "res" / "a").read_text() == "a2\n"


def test_a_job_writing_a_garbage_record_is_held_cleanly(staged_gahp, tmp_path):
    """A job that forges its own result record (bytes that are not UTF-8, an absurd exit
    code) and kills the wrapper: a hold with a printable reason, and the GAHP lives on."""
    script = ("u=$(tr \"\\\\0\" \"\\\\n\" < /proc/$PPID/environ | sed -n \"s/^AWSBATCH_GAHP_URL=//p\"); "
              "printf \"attempt=1\\\\nexit_code=99999999999999999999\\\\nerror=x\\\\377y\\\\033\\\\n\" > r; "
              "aws s3 cp --only-show-errors r \"${u}out/1/result\"; kill -9 $PPID")
    _, status = run(staged_gahp, job_ad(tmp_path, arguments="-c '" + script.replace("'", "''") + "'"))
    assert status.status == 5, status.fields
    reason = status.ad["HoldReason"]
    assert "x\ufffdy" in reason and reason.isprintable(), reason


def test_sigterm_stops_the_whole_job_and_waits_for_it(local_batch, local_entities, batch, s3, tmp_path):
    """The job's process group gets SIGTERM; the wrapper waits for the job to end (it may
    clean up) before it hashes and uploads the outputs, and records no signal the job
    did not die from."""
    from gahp.config import Settings
    from gahp.jobad import JobSpec
    from gahp.staging import Stager, parse_result
    from gahp.submission import build_submit_request

    settings = Settings(s3_url=local_entities.s3_url, job_queue=local_entities.job_queue,
                        job_definition=local_entities.job_definition)
    stager = Stager(s3, settings)
    script = ("(sleep 60; echo never >> r.txt) & echo bg=$!; "
              "trap 'sleep 1; echo late >> r.txt; exit 7' TERM; echo early > r.txt; wait")
    spec = JobSpec(job_directory="home_bl_term2", job_name="condor-term2", cmd="/bin/sh", args=["-c", script],
                   env={}, iwd=str(tmp_path), stdin=None, stdout=str(tmp_path / "o"), stderr=str(tmp_path / "e"),
                   stage_cmd=False, transfer_output=["r.txt"])
    launch, url = stager.stage_in(spec)
    request = build_submit_request(spec, settings, launch, JobRecord.from_spec(spec, url))
    old_grace = local_batch.engine.kill_grace
    local_batch.engine.kill_grace = 15.0  # Docker gives 30 s; the emulator's default is 2
    try:
        batch_id = batch.submit_job(**request)["jobId"]
        wait_for(lambda: "running the job" in job_log(local_batch, batch, batch_id), timeout=30,
                 message="the command to start")
        import time
        time.sleep(0.3)  # the job's shell sets its trap
        batch.terminate_job(jobId=batch_id, reason="test")
        detail = wait_for(lambda: (d := describe_job(batch, batch_id)) and d["status"] == "FAILED" and d,
                          timeout=30, message="the job to fail")
    finally:
        local_batch.engine.kill_grace = old_grace
    bucket, prefix = split_s3_url(url)
    record = parse_result(s3.get_object(Bucket=bucket, Key=prefix + "out/1/result")["Body"].read())
    assert record["terminated"] == "TERM" and record["exit_code"] == "7" and "exit_signal" not in record, record
    result = stager.stage_out(JobRecord.from_detail(detail), detail)
    assert result.exit_code == 7 and (tmp_path / "r.txt").read_text() == "early\nlate\n"
    bg = int((tmp_path / "o").read_text().split("bg=")[1].split()[0])
    assert not pid_alive(bg)
    stager.cleanup(url)
