"""awsbatch_gahp doctor against the local AWS Batch: a healthy setup passes, problems fail."""

import subprocess

from fixtures_gahp import gahp_argv
from gahp.gridmanager import gahp_environment


def run_doctor(home, knobs):
    env = gahp_environment(str(home), knobs)
    proc = subprocess.run(gahp_argv() + ["doctor"], env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout


def knobs_for(local_batch, ents, **extra):
    knobs = {
        "AWSBATCH_GAHP_ENDPOINT_URL": local_batch.endpoint_url,
        "AWSBATCH_GAHP_JOB_QUEUE": ents.job_queue,
        "AWSBATCH_GAHP_JOB_DEFINITION": ents.job_definition,
        "AWSBATCH_GAHP_S3_URL": ents.s3_url,
    }
    knobs.update(extra)
    return knobs


def test_doctor_passes_on_the_local_default(local_batch, local_entities, gahp_home):
    code, out = run_doctor(gahp_home, knobs_for(local_batch, local_entities))
    assert code == 0, out
    lines = out.splitlines()
    for name in ("region", "credentials", "job queue", "compute environment", "job definition", "staging bucket"):
        assert any(line.startswith("PASS " + name) for line in lines), (name, out)
    assert lines[-1].endswith("0 failed")


def test_doctor_fails_clearly(local_batch, local_entities, gahp_home):
    code, out = run_doctor(gahp_home, knobs_for(local_batch, local_entities, AWSBATCH_GAHP_JOB_QUEUE="nope",
                                                AWSBATCH_GAHP_S3_URL="s3://no-such-bucket-here/x"))
    assert code == 1
    assert "FAIL job queue: 'nope' does not exist" in out
    assert "FAIL staging bucket" in out


def test_doctor_without_credentials(local_batch, local_entities, tmp_path):
    home = tmp_path / "empty-home"
    home.mkdir()
    code, out = run_doctor(home, knobs_for(local_batch, local_entities, AWSBATCH_GAHP_REGION=local_batch.region))
    assert code == 1 and "FAIL credentials" in out and "no AWS credentials" in out


def test_doctor_without_region(local_batch, local_entities, tmp_path):
    home = tmp_path / "empty-home"
    home.mkdir()
    code, out = run_doctor(home, knobs_for(local_batch, local_entities))
    assert code == 1 and out.startswith("FAIL region: no AWS region: set AWSBATCH_GAHP_REGION")
