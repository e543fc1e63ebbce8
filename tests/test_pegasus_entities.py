"""pegasus-aws-batch: flags/properties precedence, entity create/delete (Pegasus 4.9 sample
shapes), bucket hygiene.  Entities are checked with boto3 against a moto server."""
import json
import logging
import os
import socket

import boto3
import pytest
import requests

from gahp.pegasus import PegasusAWSBatchError
from gahp.pegasus import cli
from gahp.pegasus.entities import EntityManager, conform, _batch_model, load_request
from gahp.pegasus.properties import parse_properties_text, resolve_settings

DATA = os.path.join(os.path.dirname(__file__), "data", "pegasus")
REGION = "us-west-2"
ACCOUNT = "123456789012"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    requests.post(f"{url}/moto-api/config", json={"batch": {"use_docker": False}})
    yield url
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return moto_endpoint


def client(endpoint, svc):
    return boto3.client(svc, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def network(moto_endpoint):
    """What moto needs for a Pegasus-sample compute environment: the roles named in the
    samples, the instance profile, a subnet and a security group."""
    iam, ec2 = client(moto_endpoint, "iam"), client(moto_endpoint, "ec2")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"},
         "Action": "sts:AssumeRole"}]})
    # moto's backends are per process, so another module may have made these already
    for role in ("AWSBatchServiceRole", "ecsInstanceRole", "batchJobRole"):
        try:
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
    try:
        iam.create_instance_profile(InstanceProfileName="ecsInstanceRole")
        iam.add_role_to_instance_profile(InstanceProfileName="ecsInstanceRole",
                                         RoleName="ecsInstanceRole")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="pegasus", Description="x", VpcId=vpc)["GroupId"]
    return {"subnet": subnet, "sg": sg}


@pytest.fixture
def sample_files(tmp_path, network):
    out = {}
    for kind in ("compute-env", "job-queue", "job-definition"):
        text = open(os.path.join(DATA, f"sample-{kind}.json")).read()
        text = text.replace("@SUBNET@", network["subnet"]).replace("@SECURITY_GROUP@", network["sg"])
        path = tmp_path / "conf" / f"sample-{kind}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        out[kind] = str(path)
    return out


# ---------------------------------------------------------------- properties

def test_properties_syntax():
    props = parse_properties_text(
        "# comment\n! also a comment\npegasus.aws.region = us-west-2\n"
        "pegasus.aws.account:123456789012\nkey\\ with\\ blank value\n"
        "long = a\\\n    b\nempty=\n")
    assert props["pegasus.aws.region"] == "us-west-2"
    assert props["pegasus.aws.account"] == "123456789012"
    assert props["key with blank"] == "value"
    assert props["long"] == "ab"
    assert props["empty"] == ""


def test_flags_override_properties(tmp_path):
    conf = tmp_path / "pegasusrc"
    conf.write_text("pegasus.aws.region=eu-west-1\npegasus.aws.account=111\n"
                    "pegasus.aws.batch.job_queue=conf-queue\n"
                    "pegasus.aws.batch.job_definition=conf-def\n"
                    "pegasus.aws.batch.compute_environment=conf-ce\n"
                    "pegasus.aws.batch.s3_bucket=s3://conf-bucket/x\n")
    s = resolve_settings({"prefix": "p", "region": "us-west-2", "job_queue": None,
                          "job_definition": "flag-def"}, str(conf), environ={})
    assert (s.region, s.source["region"]) == ("us-west-2", "flag")
    assert (s.job_definition, s.source["job_definition"]) == ("flag-def", "flag")
    assert (s.job_queue, s.source["job_queue"]) == ("conf-queue", "conf")
    assert s.account == "111" and s.compute_environment == "conf-ce"
    assert s.s3 == "s3://conf-bucket/x"
    # environment comes last
    s2 = resolve_settings({"prefix": "p"}, None,
                          environ={"AWS_REGION": "ap-south-1", "AWS_ENDPOINT_URL": "http://e"})
    assert s2.region == "ap-south-1" and s2.endpoint_url == "http://e"
    assert s2.source["endpoint_url"] == "env"


def test_cli_parses_pegasus_short_and_long_flags():
    p = cli.build_parser()
    a = p.parse_args(["-a", "1", "-r", "r", "-C", "c", "--ce", "ce", "-j", "jd", "-q", "jq",
                      "-s", "s3://b", "-p", "pre", "-f", "x,y", "-m", "merged", "-l", "lf",
                      "-L", "debug", "job.in"])
    assert (a.account, a.region, a.conf, a.compute_environment, a.job_definition,
            a.job_queue, a.s3, a.prefix, a.files, a.merge_logs, a.log_file, a.log_level,
            a.job_files) == ("1", "r", "c", "ce", "jd", "jq", "s3://b", "pre", "x,y", "merged",
                             "lf", "debug", ["job.in"])
    a = p.parse_args(["--account", "1", "--region", "r", "--conf", "c",
                      "--compute-environment", "ce", "--job-definition", "jd", "--job-queue",
                      "jq", "--s3", "s3://b", "--prefix", "pre", "--create", "--files", "f",
                      "--merge-logs", "m", "--log-file", "lf", "--log-level", "info"])
    assert a.create and a.compute_environment == "ce"
    assert p.parse_args(["-d", "-p", "x"]).delete


def test_prefix_required(capsys):
    assert cli.main(["-c"]) == 2
    assert "--prefix is required" in capsys.readouterr().err


# ---------------------------------------------------------------- JSON shapes

def test_json_keys_case_insensitive_and_dropped_fields_kept():
    req = load_request("job_definition", os.path.join(DATA, "fargate-job-definition.json"))
    assert req["jobDefinitionName"] == "fargate-def"
    assert req["platformCapabilities"] == ["FARGATE"]
    assert req["timeout"] == {"attemptDurationSeconds": 600}
    assert req["retryStrategy"]["evaluateOnExit"][0]["onStatusReason"] == "Host EC2*"
    cp = req["containerProperties"]
    assert cp["resourceRequirements"][0] == {"type": "VCPU", "value": "0.25"}
    assert cp["logConfiguration"]["options"]["awslogs-group"] == "/pegasus/tasks"
    shape = _batch_model().operation_model("CreateComputeEnvironment").input_shape
    dropped = []
    out = conform(shape, {"COMPUTERESOURCES": {"MAXVCPUS": "4", "subnets": "subnet-1"},
                          "bogus": 1}, "", dropped)
    assert out == {"computeResources": {"maxvCpus": 4, "subnets": ["subnet-1"]}}
    assert dropped == ["bogus"]


# ---------------------------------------------------------------- create / delete

def _run(args, endpoint):
    return cli.main(args + ["--endpoint-url", endpoint, "-r", REGION, "-a", ACCOUNT,
                            "-L", "error"])


def test_create_and_delete_from_sample_json(aws_env, sample_files):
    ep = aws_env
    batch, s3 = client(ep, "batch"), client(ep, "s3")
    args = ["-p", "wf1-ID01", "--ce", sample_files["compute-env"],
            "-q", sample_files["job-queue"], "-j", sample_files["job-definition"]]
    assert _run(args + ["--create"], ep) == 0
    ce = batch.describe_compute_environments(computeEnvironments=["wf1-ID01-compute-env"])
    ce = ce["computeEnvironments"][0]
    assert ce["status"] == "VALID" and ce["state"] == "ENABLED"
    assert ce["serviceRole"] == f"arn:aws:iam::{ACCOUNT}:role/AWSBatchServiceRole"
    assert ce["computeResources"]["maxvCpus"] == 2
    q = batch.describe_job_queues(jobQueues=["wf1-ID01-job-queue"])["jobQueues"][0]
    assert q["priority"] == 10 and q["state"] == "ENABLED"
    assert q["computeEnvironmentOrder"][0]["computeEnvironment"] == ce["computeEnvironmentArn"]
    jd = batch.describe_job_definitions(jobDefinitionName="wf1-ID01-job-definition",
                                        status="ACTIVE")["jobDefinitions"]
    assert len(jd) == 1
    assert jd[0]["containerProperties"]["jobRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/batchJobRole"
    assert jd[0]["retryStrategy"]["attempts"] == 1
    s3.head_bucket(Bucket="wf1-ID01-bucket")

    assert _run(args + ["--delete"], ep) == 0
    assert batch.describe_compute_environments(
        computeEnvironments=["wf1-ID01-compute-env"])["computeEnvironments"] == []
    assert batch.describe_job_queues(jobQueues=["wf1-ID01-job-queue"])["jobQueues"] == []
    assert batch.describe_job_definitions(jobDefinitionName="wf1-ID01-job-definition",
                                          status="ACTIVE")["jobDefinitions"] == []
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "wf1-ID01-bucket" not in names


def test_names_inside_json_win_and_fargate_definition(aws_env, tmp_path):
    ep = aws_env
    batch = client(ep, "batch")
    assert _run(["-p", "fg", "-j", os.path.join(DATA, "fargate-job-definition.json"),
                 "-s", "s3://fg-stage/run", "--create"], ep) == 0
    d = batch.describe_job_definitions(jobDefinitionName="fargate-def",
                                       status="ACTIVE")["jobDefinitions"]
    assert d and d[0]["platformCapabilities"] == ["FARGATE"]
    assert d[0]["timeout"]["attemptDurationSeconds"] == 600
    assert _run(["-p", "fg", "-j", os.path.join(DATA, "fargate-job-definition.json"),
                 "-s", "s3://fg-stage/run", "--delete"], ep) == 0
    assert batch.describe_job_definitions(jobDefinitionName="fargate-def",
                                          status="ACTIVE")["jobDefinitions"] == []


def test_delete_leaves_shared_bucket_and_existing_entities(aws_env, sample_files):
    ep = aws_env
    batch, s3 = client(ep, "batch"), client(ep, "s3")
    s3.create_bucket(Bucket="shared-stage", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="shared-stage", Key="other-workflow/keep.txt", Body=b"keep")
    s3.put_object(Bucket="shared-stage", Key="run7-sibling.txt", Body=b"keep too")
    # an existing queue given by name must survive --delete
    assert _run(["-p", "base", "--ce", sample_files["compute-env"], "--create"], ep) == 0
    args = ["-p", "run7", "--ce", "base-compute-env", "-q", sample_files["job-queue"],
            "-j", sample_files["job-definition"], "-s", "s3://shared-stage/run7"]
    assert _run(args + ["--create"], ep) == 0
    s3.put_object(Bucket="shared-stage", Key="run7/staged.txt", Body=b"x")
    s3.put_object(Bucket="shared-stage", Key="run7/sub/deeper.txt", Body=b"x")
    s3.put_object(Bucket="shared-stage", Key="run7/_pegasus-aws-batch/run7/launcher", Body=b"x")
    s3.put_object(Bucket="shared-stage", Key="run7/_pegasus-aws-batch/run8/launcher", Body=b"x")
    assert _run(args + ["--delete"], ep) == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="shared-stage").get("Contents", []))
    # a user-supplied path in a bucket the client did not create is never emptied; only the
    # client's own internal objects for this prefix go
    assert keys == ["other-workflow/keep.txt", "run7-sibling.txt",
                    "run7/_pegasus-aws-batch/run8/launcher", "run7/staged.txt",
                    "run7/sub/deeper.txt"]
    assert batch.describe_job_queues(jobQueues=["run7-job-queue"])["jobQueues"] == []
    # the compute environment was given by name: not ours, not deleted
    assert batch.describe_compute_environments(
        computeEnvironments=["base-compute-env"])["computeEnvironments"]
    assert _run(["-p", "base", "--ce", sample_files["compute-env"], "--delete"], ep) == 0


def test_delete_never_empties_a_user_path_in_a_foreign_bucket(aws_env):
    """Reviewer's e5: --delete with -s s3://mybucket/wf/scratch used to empty wf/scratch/."""
    ep = aws_env
    s3 = client(ep, "s3")
    s3.create_bucket(Bucket="mybucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    for key in ("wf/scratch/f.a", "wf/scratch/f.b", "other/x"):
        s3.put_object(Bucket="mybucket", Key=key, Body=b"data")
    assert _run(["--delete", "-p", "merge_1", "-s", "s3://mybucket/wf/scratch"], ep) == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="mybucket")["Contents"])
    assert keys == ["other/x", "wf/scratch/f.a", "wf/scratch/f.b"]
    # no key in the URL: the derived <prefix>/ folder of a foreign bucket is not emptied either
    s3.put_object(Bucket="mybucket", Key="merge_1/f.c", Body=b"data")
    assert _run(["--delete", "-p", "merge_1", "-s", "s3://mybucket"], ep) == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="mybucket")["Contents"])
    assert keys == ["merge_1/f.c", "other/x", "wf/scratch/f.a", "wf/scratch/f.b"]


def test_created_bucket_with_foreign_objects_is_left(aws_env):
    ep = aws_env
    s3 = client(ep, "s3")
    assert _run(["-p", "own", "--create"], ep) == 0          # creates own-bucket
    s3.put_object(Bucket="own-bucket", Key="someone-else/file", Body=b"x")
    s3.put_object(Bucket="own-bucket", Key="own/ours", Body=b"x")
    assert _run(["-p", "own", "--delete"], ep) == 2          # reports it could not delete
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="own-bucket")["Contents"]]
    assert keys == ["someone-else/file"]


def test_invalid_compute_environment_fails_clearly():
    class FakeBatch:
        def describe_compute_environments(self, **kw):
            return {"computeEnvironments": [{"status": "INVALID",
                                             "statusReason": "CLIENT_ERROR - bad subnet"}]}

    class C:
        batch = FakeBatch()

    mgr = EntityManager(C(), "p", wait_timeout=5, sleep=lambda s: None)
    with pytest.raises(PegasusAWSBatchError, match="INVALID: CLIENT_ERROR - bad subnet"):
        mgr._wait("compute environment x", lambda: mgr._describe_ce("x"),
                  lambda it: it["status"] == "VALID")


def test_wait_is_bounded():
    clock = {"t": 0.0}
    mgr = EntityManager(None, "p", wait_timeout=30, clock=lambda: clock["t"],
                        sleep=lambda s: clock.update(t=clock["t"] + s))
    calls = []

    def describe():
        calls.append(1)
        return {"status": "CREATING"}

    with pytest.raises(PegasusAWSBatchError, match="did not become VALID"):
        mgr._wait("job queue q", describe, lambda it: False)
    assert 1 < len(calls) < 10


def test_unreachable_endpoint_is_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("PEGASUS_AWS_BATCH_MAX_ATTEMPTS", "1")
    monkeypatch.chdir(tmp_path)
    port = _free_port()
    rc = cli.main(["-p", "x", "-r", REGION, "--endpoint-url", f"http://127.0.0.1:{port}",
                   "--create", "-L", "fatal"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "pegasus-aws-batch: error:" in err and f"127.0.0.1:{port}" in err
