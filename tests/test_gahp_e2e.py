"""End to end: the awsbatch_gahp process, driven like condor_gridmanager, on the local AWS Batch.

Jobs really run (as local processes) through the emulated Batch API over HTTP, so exit
codes, output and cancellation are real.  Covers the conformance checklist items that
need a process (gahp-protocol.md §11, C1-C17).
"""

import math
import time
import uuid

import pytest

from fixtures_gahp import job_ad
from fixtures_local import pid_alive, wait_for
from gahp import protocol
from gahp.submission import parse_job_id


def test_handshake_banner_commands_and_ping(start_gahp):
    gm = start_gahp()
    assert gm.banner.startswith("$GahpVersion: ") and gm.banner.endswith("awsbatch-gahp $")
    assert gm.banner_seconds < 5
    for needed in ("BLAH_JOB_SUBMIT", "BLAH_JOB_STATUS", "BLAH_JOB_CANCEL", "ASYNC_MODE_ON", "BLAH_PING",
                   "BLAH_JOB_REFRESH_PROXY", "RESULTS", "COMMANDS", "VERSION", "QUIT"):
        assert needed in gm.commands
    assert gm.first_ping.fields == [gm.first_ping.reqid, "0", "NULL"]
    assert gm.sync("version") == ["S", gm.banner]  # case-insensitive, VERSION -> S <banner>
    assert gm.sync("NO_SUCH_COMMAND")[0] == "E"
    assert gm.send("")[0] == "E"  # a blank line is answered, not fatal
    assert gm.poll() == []  # nothing queued: S 0
    assert gm.sync("QUIT") == ["S"]
    assert gm.proc.wait(timeout=5) == 0


def test_ping_reports_a_missing_queue(start_gahp):
    gm = start_gahp(JOB_QUEUE="no-such-queue")
    assert gm.first_ping.rc == 1 and "no-such-queue" in gm.first_ping.error


def test_ping_reports_an_unreachable_endpoint(start_gahp):
    gm = start_gahp(ENDPOINT_URL="http://127.0.0.1:9", handshake=False)
    gm.sync("COMMANDS")
    gm.sync("ASYNC_MODE_ON")
    result = gm.wait(gm.request("BLAH_PING", "awsbatch"), timeout=120)
    assert result.rc == 1 and "reach" in result.error


def test_job_runs_and_output_comes_home_before_status_4(start_gahp, tmp_path):
    gm = start_gahp()
    ad = job_ad(tmp_path, arguments="-c 'echo hello $FOO; echo oops >&2; exit 0'", Environment="FOO=from' 'condor")
    result = gm.submit(ad)
    assert result.rc == 0, result.fields
    job_id = result.job_id
    region, batch_id = parse_job_id(job_id)
    status = gm.wait_for_status(job_id, timeout=60)
    assert status.status == 4
    ad = status.ad
    assert ad["ExitCode"] == 0 and ad["AWSBatchStatus"] == "SUCCEEDED" and ad["AWSBatchJobId"] == batch_id
    # CloudWatch carries stdout and stderr merged, as on AWS
    assert (tmp_path / "job.out").read_text().splitlines() == ["hello from condor", "oops"]
    assert (tmp_path / "job.err").read_text() == ""


def test_failing_command_reports_its_exit_code(start_gahp, tmp_path):
    gm = start_gahp()
    job_id = gm.submit(job_ad(tmp_path, arguments="-c 'echo about to fail; exit 3'")).job_id
    status = gm.wait_for_status(job_id, timeout=60)
    assert status.status == 4 and status.ad["ExitCode"] == 3
    assert "about to fail" in (tmp_path / "job.out").read_text()


def test_timeout_is_a_hold_with_advice(start_gahp, tmp_path, local_batch, local_entities):
    # A real attempt timeout, from a job definition with a 2 s timeout (the emulator's
    # 60 s minimum is lowered for this test; the GAHP itself never asks for less).
    batch = local_batch.client("batch")
    local_batch.min_timeout_seconds = 1
    try:
        batch.register_job_definition(
            jobDefinitionName="short-timeout", type="container", timeout={"attemptDurationSeconds": 2},
            containerProperties={"image": "local/fetch_and_run", "vcpus": 1, "memory": 128, "command": ["/bin/true"]})
        gm = start_gahp()
        job_id = gm.submit(job_ad(tmp_path, arguments="-c 'sleep 30'", JobDefinition="short-timeout")).job_id
        status = gm.wait_for_status(job_id, timeout=60)
    finally:
        local_batch.min_timeout_seconds = 60
    assert status.status == 5 and "batch_runtime" in status.ad["HoldReason"]
    assert "ExitCode" not in status.ad


def test_cancel_of_a_running_job_kills_it_and_is_idempotent(start_gahp, tmp_path, local_batch):
    gm = start_gahp()
    job_id = gm.submit(job_ad(tmp_path, arguments="-c 'sleep 120'")).job_id
    _, batch_id = parse_job_id(job_id)
    running = gm.wait_for_status(job_id, wanted=(2,), timeout=60)
    assert running.ad["AWSBatchStatus"] == "RUNNING"
    pids = wait_for(lambda: local_batch.job_pids(batch_id), timeout=10, message="job processes")
    assert gm.cancel(job_id).fields[1:] == ["0", "NULL"]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15, message="job processes to die")
    status = gm.wait_for_status(job_id, wanted=(5,), timeout=30)
    assert "HTCondor" in status.ad["AWSBatchStatusReason"]
    assert gm.cancel(job_id).rc == 0  # already cancelled
    assert gm.cancel(f"awsbatch/{local_batch.region}/{uuid.uuid4()}").rc == 0  # unknown


def test_status_and_cancel_work_from_a_fresh_gahp_process(start_gahp, tmp_path):
    first = start_gahp()
    done_id = first.submit(job_ad(tmp_path, arguments="-c 'echo survived the restart'")).job_id
    running_id = first.submit(job_ad(tmp_path, arguments="-c 'sleep 120'", Out="other.out", Err="other.err")).job_id
    assert first.close("eof") == 0  # the gridmanager crashed: the GAHP only sees stdin EOF
    second = start_gahp()
    status = second.wait_for_status(done_id, timeout=60)
    assert status.status == 4 and status.ad["ExitCode"] == 0
    assert (tmp_path / "job.out").read_text().strip() == "survived the restart"
    second.wait_for_status(running_id, wanted=(2,), timeout=60)
    assert second.cancel(running_id).rc == 0
    assert second.wait_for_status(running_id, wanted=(5,), timeout=30).status == 5


def test_unknown_and_malformed_job_ids(start_gahp, local_batch):
    gm = start_gahp(NOT_FOUND_GRACE=0)
    unknown = gm.status(f"awsbatch/{local_batch.region}/{uuid.uuid4()}")
    assert unknown.rc != 0 and unknown.status == 0 and "no longer knows" in unknown.error
    bad = gm.status("fake/20261125/16263001")
    assert bad.rc != 0 and bad.status == 0 and "not an awsbatch-gahp job id" in bad.error
    assert gm.cancel("NULL").rc == 0  # nothing of ours: rc 0, so a held job is not stuck with it


@pytest.mark.parametrize("ad, message", [
    ("[ this is not a classad", "cannot parse"),
    ("[ Cmd = \"/bin/true\"; Iwd = \"/tmp\" ]", "JobDirectory"),
])
def test_malformed_ads_are_submit_failures(start_gahp, ad, message):
    gm = start_gahp()
    result = gm.submit(ad)
    assert result.rc == 1 and message in result.error and result.job_id == "N/A"


def test_no_queue_configured_is_a_clear_submit_failure(start_gahp, tmp_path):
    gm = start_gahp(JOB_QUEUE=None)
    result = gm.submit(job_ad(tmp_path, cmd="/bin/true"))
    assert result.rc == 1 and "batch_queue" in result.error and "AWSBATCH_GAHP_JOB_QUEUE" in result.error


def test_resubmitting_an_active_job_returns_the_same_batch_job(start_gahp, tmp_path):
    """A gridmanager that died before committing the job id submits again (§3.4)."""
    gm = start_gahp()
    ad = job_ad(tmp_path, arguments="-c 'sleep 60'")
    first = gm.submit(ad).job_id
    second = gm.submit(ad).job_id
    assert first == second
    assert gm.cancel(first).rc == 0
    # hold + release: same JobDirectory, the old job is cancelled -> a new Batch job
    third = gm.submit(ad).job_id
    assert third != first
    assert gm.cancel(third).rc == 0


def test_200_pipelined_submits(start_gahp, tmp_path):
    gm = start_gahp()
    reqids = [gm.request("BLAH_JOB_SUBMIT", job_ad(tmp_path, cmd="/bin/true", Out="/dev/null", Err="/dev/null"))
              for _ in range(200)]
    assert max(gm.reply_latencies) < 2.0  # every S came at once, not after the AWS call
    results = [gm.wait(r, timeout=120) for r in reqids]
    assert all(r.rc == 0 for r in results), [r.fields for r in results if r.rc]
    assert len({r.job_id for r in results}) == 200


@pytest.mark.parametrize("how", ["eof", "sigterm"])
def test_shutdown_on_eof_and_sigterm(start_gahp, tmp_path, how):
    gm = start_gahp()
    gm.request("BLAH_JOB_STATUS", f"awsbatch/us-east-1/{uuid.uuid4()}")  # work in flight
    started = time.monotonic()
    code = gm.close(how, timeout=5)
    assert time.monotonic() - started < 5
    assert code == 0


def test_describe_calls_per_sweep_are_ceil_jobs_over_100(start_gahp, tmp_path, local_batch, mocker):
    """However many status requests arrive, a sweep costs ceil(jobs/100) DescribeJobs calls."""
    from gahp.local import api

    ents = local_batch.create_default_entities(prefix="sweep", max_vcpus=1)
    gm = start_gahp(JOB_QUEUE=ents.job_queue, POLL_INTERVAL=3)
    reqids = [gm.request("BLAH_JOB_SUBMIT", job_ad(tmp_path, arguments="-c 'sleep 300'", Out="/dev/null", Err="/dev/null"))
              for _ in range(250)]
    job_ids = [gm.wait(r, timeout=120).job_id for r in reqids]
    calls = []
    original = api.BatchJobAPI.describe_jobs

    def counting(self, body):
        calls.append((time.monotonic(), len(body.get("jobs", []))))
        return original(self, body)

    mocker.patch.object(api.BatchJobAPI, "describe_jobs", counting)
    status_reqids = [gm.request("BLAH_JOB_STATUS", job_id) for job_id in job_ids * 3]  # 750 requests
    results = [gm.wait(r, timeout=120) for r in status_reqids]
    assert all(r.rc == 0 and r.status in (1, 2) for r in results)
    assert calls and all(n <= 100 for _, n in calls)
    sweeps = []  # calls closer together than the poll interval belong to one sweep
    for stamp, n in calls:
        if sweeps and stamp - sweeps[-1][-1][0] < 1.5:
            sweeps[-1].append((stamp, n))
        else:
            sweeps.append([(stamp, n)])
    for sweep in sweeps:
        assert len(sweep) == math.ceil(sum(n for _, n in sweep) / 100)
        assert sum(n for _, n in sweep) <= 250
    assert len(calls) <= 3 * len(sweeps) and len(calls) < 750 / 10
    for job_id in job_ids:
        local_batch.client("batch").terminate_job(jobId=parse_job_id(job_id)[1], reason="test over")


def test_stdout_carries_only_protocol_lines(start_gahp, tmp_path):
    """Every line the GAHP wrote was consumed by the strict emulator; a stray one would
    have been taken as a reply and failed a test.  Check the raw stream too."""
    gm = start_gahp()
    gm.submit(job_ad(tmp_path, cmd="/bin/true"))
    gm.sync("QUIT")
    gm.proc.wait(timeout=5)
    while not gm._lines.empty():
        _, line = gm._lines.get()
        if line is not None:
            args = protocol.read_argv(line)
            assert args[0] in ("S", "R", "E") or args[0].isdigit(), line
