"""Job translation: submit ClassAd -> JobSpec -> SubmitJob request, all pure."""

import json

import pytest

from gahp.config import Settings
from gahp.jobad import (JobAdError, job_name_for, job_spec_from_ad, parse_args_v1, parse_args_v2,
                        parse_env_v1, parse_env_v2, parse_submit_ad)
from gahp.submission import (RECORD_PARAMETER, JobRecord, Launch, build_submit_request, direct_launch,
                             format_job_id, parse_job_id)

# The ad of transcript phase 1, as the real gridmanager sent it.
PHASE1 = ('[ In = "/dev/null"; Cmd = "/bin/sh"; Err = "ok.err"; Iwd = "/srv/pool/jobs"; Out = "ok.out"; '
          'Queue = "fastq"; gridtype = "fake"; Arguments = "-c echo\' \'hello\' \'from\' \'fake\' \'batch;\' \'exit\' \'0"; '
          'FakeMarker = "copied via the Remote_ prefix"; Environment = "BAZ=two\' \'words FOO=bar"; '
          'BatchProject = "myproj"; BatchRuntime = 600; GridResource = "batch fake"; '
          'JobDirectory = "home_bl_127.0.0.1_0_htcuser_vm_2.0_1795575197"; RequestMemory = 256; '
          'TransferInput = "ok.sub"; TransferOutput = "result.txt" ]')


def spec_of(text):
    return job_spec_from_ad(parse_submit_ad(text))


def test_transcript_phase1_ad():
    spec = spec_of(PHASE1)
    assert spec.cmd == "/bin/sh"
    assert spec.args == ["-c", "echo hello from fake batch; exit 0"]
    assert spec.env == {"BAZ": "two words", "FOO": "bar"}
    assert spec.stdin is None
    assert spec.stdout == "/srv/pool/jobs/ok.out" and spec.stderr == "/srv/pool/jobs/ok.err"
    assert spec.queue == "fastq" and spec.runtime == 600 and spec.memory_mib == 256
    assert spec.transfer_input == ["ok.sub"] and spec.transfer_output == ["result.txt"]
    assert spec.tags == {"BatchProject": "myproj"}
    assert spec.job_name == "condor-127-0-0-1_0_htcuser_vm_2-0_1795575197"


@pytest.mark.parametrize("raw, args", [
    ("", []),
    ("a b  c", ["a", "b", "c"]),
    ("'two words' x", ["two words", "x"]),
    ("-c echo' 'hello", ["-c", "echo hello"]),
    ("'it''s'", ["it's"]),
    ("'' x", ["", "x"]),
    ("a''b", ["ab"]),
    ("'$HOME \"q\" \\'", ['$HOME "q" \\']),
])
def test_args_v2(raw, args):
    assert parse_args_v2(raw) == args


def test_args_v2_unbalanced_quote():
    with pytest.raises(JobAdError, match="unbalanced"):
        parse_args_v2("'oops")


def test_args_v1_and_env_v1():
    assert parse_args_v1(" 3600  x ") == ["3600", "x"]
    assert parse_env_v1("A=1;B=two words;", ";") == {"A": "1", "B": "two words"}
    assert parse_env_v1("A=1|B=2", "|") == {"A": "1", "B": "2"}
    assert parse_env_v2("A='x y' B=") == {"A": "x y", "B": ""}
    with pytest.raises(JobAdError, match="NAME=VALUE"):
        parse_env_v2("NOEQUALS")


def test_arguments_win_over_args_and_environment_over_env():
    spec = spec_of('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "run"; Arguments = "a"; Args = "b c"; '
                   'Environment = "E=1"; Env = "F=2" ]')
    assert spec.args == ["a"] and spec.env == {"E": "1"} and spec.cmd == "/w/run"
    spec = spec_of('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "/bin/x"; Args = "b c"; Env = "F=2;G=3" ]')
    assert spec.args == ["b", "c"] and spec.env == {"F": "2", "G": "3"}


def test_undefined_literals_are_tolerated():
    spec = spec_of('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "/bin/x"; In = undefined; Out = error; '
                   'RequestMemory = undefined; BatchRuntime = undefined; Arguments = undefined ]')
    assert spec.stdin is None and spec.stdout is None and spec.memory_mib is None and spec.runtime is None
    assert spec.args == []


def test_remote_attributes_and_cerequirements():
    spec = spec_of('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "/bin/x"; RequestCpus = 4; RequestGpus = 1; '
                   'JobDefinition = "gpu-def:3"; RetryAttempts = 3; Tags = "team=astro,cost=42"; '
                   'StageCmd = false; x509userproxy = "proxy.pem"; TransferOutputRemaps = "a.txt = out/a.txt; b = /abs/b" ]')
    assert spec.vcpus == 4 and spec.gpus == 1 and spec.job_definition == "gpu-def:3"
    assert spec.retry_attempts == 3 and spec.tags == {"team": "astro", "cost": "42"}
    assert spec.stage_cmd is False and spec.x509_proxy == "/w/proxy.pem"
    assert spec.output_remaps == {"a.txt": "out/a.txt", "b": "/abs/b"}


def test_pegasus_glite_cerequirements_string_and_expression():
    # Pegasus writes the requirements as a string (older) or as an expression (newer)
    text = ('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "/bin/x"; '
            'cerequirements = "JOBNAME==\\"findrange ID1\\" && PASSENV==1 && CORES==8 && NODES==1 && '
            'TOTAL_MEMORY==4096 && WALLTIME==7200 && PRIORITY==10" ]')
    spec = spec_of(text)
    assert (spec.vcpus, spec.memory_mib, spec.runtime) == (8, 4096, 7200)
    assert spec.tags["PegasusJobName"] == "findrange ID1"
    text = ('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "/bin/x"; '
            'CERequirements = JOBNAME == "j1" && PASSENV == 1 && CORES == pegasus_cores && TOTAL_MEMORY == 1024; '
            'environment = "A=1 B=\'x y\'" ]')
    spec = spec_of(text)
    assert spec.vcpus is None  # pegasus_cores is not in the submit ad: left out
    assert spec.memory_mib == 1024 and spec.env == {"A": "1", "B": "x y"}


def test_multinode_is_refused():
    with pytest.raises(JobAdError, match="multi-node"):
        spec_of('[ JobDirectory = "home_bl_x"; Iwd = "/w"; Cmd = "/bin/x"; cerequirements = "NODES==4" ]')


@pytest.mark.parametrize("text, message", [
    ("not a classad", "cannot parse"),
    ("[ Iwd = \"/w\"; Cmd = \"/bin/x\" ]", "JobDirectory"),
    ('[ JobDirectory = "d"; Iwd = "relative"; Cmd = "/bin/x" ]', "Iwd must be an absolute path"),
    ('[ JobDirectory = "d"; Iwd = "/w"; Cmd = "/bin/x"; BatchRuntime = 30 ]', "at least 60 s"),
    ('[ JobDirectory = "d"; Iwd = "/w"; Cmd = "/bin/x"; RequestMemory = "lots" ]', "must be a number"),
    ('[ JobDirectory = "d"; Iwd = "/w"; Cmd = "/bin/x"; RetryAttempts = 11 ]', "1 to 10"),
    ('[ JobDirectory = "d"; Iwd = "/w"; Cmd = "/bin/x"; Tags = "novalue" ]', "key=value"),
])
def test_rejected_ads_say_what_to_fix(text, message):
    with pytest.raises(JobAdError, match=message):
        spec_of(text)


def test_job_names_are_valid_and_deterministic():
    import re

    for directory in ["home_bl_127.0.0.1_0_u_vm_2.0_1795575197", "home_bl_" + "x" * 300, "home_bl_..", "weird dir!"]:
        name = job_name_for(directory)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", name), name
        assert name == job_name_for(directory)
    assert job_name_for("home_bl_" + "x" * 300) != job_name_for("home_bl_" + "x" * 299 + "y")


def test_job_ids_round_trip_and_reject_garbage():
    job_id = format_job_id("us-west-2", "4b3a8c5e-1111-2222-3333-444455556666:7")
    assert " " not in job_id
    assert parse_job_id(job_id) == ("us-west-2", "4b3a8c5e-1111-2222-3333-444455556666:7")
    for bad in ["fake/20261125/16263001", "awsbatch/us-east-1", "awsbatch/no region/x", "NULL"]:
        with pytest.raises(ValueError):
            parse_job_id(bad)


def test_submit_request():
    spec = spec_of(PHASE1.replace('RequestMemory = 256;', 'RequestMemory = 256; RequestCpus = 0.5;'))
    record = JobRecord.from_spec(spec)
    request = build_submit_request(spec, Settings(job_definition="jd"), direct_launch(spec), record)
    assert request["jobQueue"] == "fastq" and request["jobDefinition"] == "jd"
    assert request["containerOverrides"]["command"] == ["/bin/sh", "-c", "echo hello from fake batch; exit 0"]
    assert {"name": "BAZ", "value": "two words"} in request["containerOverrides"]["environment"]
    assert {"type": "VCPU", "value": "0.5"} in request["containerOverrides"]["resourceRequirements"]
    assert {"type": "MEMORY", "value": "256"} in request["containerOverrides"]["resourceRequirements"]
    assert request["timeout"] == {"attemptDurationSeconds": 600}
    assert request["tags"] == {"BatchProject": "myproj"}
    stored = JobRecord.from_detail({"parameters": request["parameters"]})
    assert stored == record and json.loads(request["parameters"][RECORD_PARAMETER])["out"] == "/srv/pool/jobs/ok.out"


def test_submit_request_needs_queue_and_definition_and_fits_overrides():
    spec = spec_of('[ JobDirectory = "d"; Iwd = "/w"; Cmd = "/bin/x" ]')
    record = JobRecord.from_spec(spec)
    with pytest.raises(JobAdError, match="batch_queue"):
        build_submit_request(spec, Settings(job_definition="jd"), direct_launch(spec), record)
    with pytest.raises(JobAdError, match="JOB_DEFINITION"):
        build_submit_request(spec, Settings(job_queue="q"), direct_launch(spec), record)
    with pytest.raises(JobAdError, match="8192"):
        build_submit_request(spec, Settings(job_queue="q", job_definition="d"), Launch(["x" * 9000], {}), record)
    with pytest.raises(JobAdError, match="reserved"):
        build_submit_request(spec, Settings(job_queue="q", job_definition="d"), Launch(["x"], {"AWS_BATCH_X": "1"}), record)
    spec.args = ["a", ""]
    with pytest.raises(JobAdError, match="empty"):
        direct_launch(spec)


@pytest.mark.parametrize("text", ['[ Cmd = "x" ; Foo = ]', '[ A = 1; B = 2 ', '[ JobDirectory = "d" ] trailing'])
def test_malformed_ads_are_not_half_parsed(text):
    with pytest.raises(JobAdError, match="cannot parse"):
        parse_submit_ad(text)


def test_only_htcondors_blanks_separate_arguments():
    assert parse_args_v2("a\u00a0b c") == ["a\u00a0b", "c"]
    assert parse_args_v1("a\u00a0b\tc") == ["a\u00a0b", "c"]


def test_error_messages_do_not_echo_huge_input():
    with pytest.raises(JobAdError) as err:
        parse_args_v2("'" + "x" * 100_000)
    assert len(str(err.value)) < 300


def test_job_ids_accept_any_aws_region_name():
    for region in ["eusc-de-east-1", "us-gov-west-1", "cn-north-1", "custom"]:
        assert parse_job_id(format_job_id(region, "abc-1")) == (region, "abc-1")
    with pytest.raises(ValueError):
        format_job_id("bad region", "abc")
