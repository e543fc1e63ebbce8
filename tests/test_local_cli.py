"""``python -m gahp.local.cli``: export lines, a job through them, clean SIGINT shutdown."""
import os
import signal
import socket
import subprocess
import sys

import boto3
import pytest

from fixtures_local import pid_alive, wait_for
from gahp.local.runner import process_table

pytestmark = pytest.mark.timeout(120)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLEEP = "300.25"  # a duration no other test uses, so leftovers are this test's own


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """All live descendants of ``pid``."""
    children = {}
    for child, _, parent, _ in process_table():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return [p for p in out if pid_alive(p)]


def test_cli_prints_settings_runs_jobs_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "gahp.local.cli", "--port", str(port), "--max-vcpus", "4"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("# AWSBATCH_GAHP_S3_URL") for line in lines):
            line = proc.stdout.readline()
            assert line, f"cli exited early: {proc.stderr.read()}"
            lines.append(line.rstrip("\n"))
        exports = dict(line[len("export "):].split("=", 1) for line in lines if line.startswith("export "))
        assert all(line.startswith(("export ", "#")) for line in lines)
        assert exports["_CONDOR_AWSBATCH_GAHP_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert exports["_CONDOR_AWSBATCH_GAHP_S3_URL"].startswith("s3://")
        assert f"# AWSBATCH_GAHP_JOB_QUEUE = {exports['_CONDOR_AWSBATCH_GAHP_JOB_QUEUE']}" in lines
        batch = boto3.client("batch", endpoint_url=exports["_CONDOR_AWSBATCH_GAHP_ENDPOINT_URL"],
                             region_name=exports["_CONDOR_AWSBATCH_GAHP_REGION"],
                             aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        done = batch.submit_job(jobName="cli-ok", jobQueue=exports["_CONDOR_AWSBATCH_GAHP_JOB_QUEUE"],
                                jobDefinition=exports["_CONDOR_AWSBATCH_GAHP_JOB_DEFINITION"],
                                containerOverrides={"command": ["true"]})["jobId"]
        wait_for(lambda: batch.describe_jobs(jobs=[done])["jobs"][0]["status"] == "SUCCEEDED", 20,
                 message="job to succeed")
        running = batch.submit_job(jobName="cli-long", jobQueue=exports["_CONDOR_AWSBATCH_GAHP_JOB_QUEUE"],
                                   jobDefinition=exports["_CONDOR_AWSBATCH_GAHP_JOB_DEFINITION"],
                                   containerOverrides={"command": ["sleep", SLEEP]})["jobId"]
        wait_for(lambda: batch.describe_jobs(jobs=[running])["jobs"][0]["status"] == "RUNNING", 20,
                 message="job to run")
        wait_for(lambda: descendants(proc.pid), 10, message="job process")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert descendants(proc.pid) == []
        assert not [p for p in _sleepers() if p]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sleepers():
    """pids of any leftover ``sleep SLEEP`` (this test's job process) anywhere."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if fh.read() == b"sleep\x00" + SLEEP.encode() + b"\x00" and pid_alive(int(name)):
                        out.append(int(name))
            except OSError:
                pass
    return out
