"""The Pegasus.api examples and the condor_config.d routing snippet."""
import os
import re
import runpy
import sys

import classad2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUTING = os.path.join(ROOT, "condor_config.d", "60-pegasus-routing.conf")
GENERATE = os.path.join(ROOT, "examples", "pegasus", "generate.py")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("examples")
    sys.path.insert(0, os.path.dirname(GENERATE))
    try:
        mod = runpy.run_path(GENERATE)
        assert mod["main"](["--out", str(out), "--bucket", "stage-bucket", "--queue", "q1"]) == 0
    finally:
        sys.path.pop(0)
    return out


def _site(path, name):
    from Pegasus import site_catalog
    with open(path) as fh:
        sc = site_catalog.load(fh)
    return sc.sites[name]


def test_via_gahp_site(generated):
    site = _site(generated / "via-gahp" / "sites.yml", "aws-batch")
    prof = site.profiles
    assert prof["pegasus"]["style"] == "glite"
    assert prof["condor"]["grid_resource"] == "batch awsbatch"
    assert prof["pegasus"]["queue"] == "q1" and prof["pegasus"]["runtime"] == 3600
    assert prof["pegasus"]["project"] == "pegasus"


def test_pegasus_49_site_properties_and_tc(generated):
    from Pegasus import transformation_catalog
    from Pegasus.properties import Properties  # noqa: F401  (import check)
    site = _site(generated / "pegasus-4.9" / "sites.yml", "aws-batch")
    assert site.profiles["pegasus"]["style"] == "condor"
    assert site.profiles["pegasus"]["clusters.num"] == 1
    text = (generated / "pegasus-4.9" / "pegasus.properties").read_text()
    props = dict(re.findall(r"^(\S+) = (.*)$", text, re.M))
    assert props["pegasus.clusterer.job.aggregator"] == "AWSBatch"
    assert props["pegasus.clusterer.allow.single"] == "true"
    assert props["pegasus.aws.batch.s3_bucket"] == "s3://stage-bucket"
    # our client reads these very properties
    from gahp.pegasus.properties import resolve_settings
    s = resolve_settings({"prefix": "x"}, str(generated / "pegasus-4.9" / "pegasus.properties"),
                         environ={})
    assert (s.job_queue, s.s3, s.account) == ("q1", "s3://stage-bucket", "123456789012")
    with open(generated / "pegasus-4.9" / "transformations.yml") as fh:
        tc = transformation_catalog.load(fh)
    assert any(t.name == "aws-batch" and t.namespace == "pegasus"
               for t in tc.transformations.values())


def test_condor_routed_site(generated):
    site = _site(generated / "condor-routed" / "sites.yml", "aws-batch")
    assert site.profiles["pegasus"]["style"] == "condor"
    assert site.profiles["condor"]["+remote_queue"] == '"q1"'


# ------------------------------------------------------------------ routing


def _transform():
    text = open(ROUTING).read()
    macros = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", text, re.M))
    body = re.search(r"JOB_TRANSFORM_PegasusAWSBatch @=end\n(.*?)\n@end", text, re.S).group(1)
    sub = lambda s: re.sub(r"\$\((\w+)\)", lambda m: macros[m.group(1)], s)
    req = sets = None
    sets = {}
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("REQUIREMENTS "):
            req = sub(line[len("REQUIREMENTS "):])
        elif line.startswith("SET "):
            _, attr, expr = line.split(None, 2)
            sets[attr] = sub(expr)
    assert "PegasusAWSBatch" in macros["JOB_TRANSFORM_NAMES"]
    return req, sets


def pegasus_ad(site, universe=5, **extra):
    """A job ad shaped like those Pegasus's condor style writes (attributes from +pegasus_*)."""
    ad = classad2.ClassAd({
        "JobUniverse": universe, "Cmd": "/usr/bin/pegasus-kickstart",
        "pegasus_site": site, "pegasus_wf_name": "diamond-0",
        "pegasus_wf_uuid": "0f6f1b3e-1111-2222-3333-444455556666",
        "pegasus_wf_xformation": "pegasus::findrange:4.0", "pegasus_job_class": 1,
        "pegasus_cluster_size": 1, "pegasus_cores": 1, "pegasus_version": "5.1.3",
        "DAGManJobId": 17, "DAGNodeName": "findrange_ID0000002",
    })
    for k, v in extra.items():
        ad[k] = v
    return ad


def test_routing_matches_only_aws_batch_vanilla_jobs():
    req, _ = _transform()
    expr = classad2.ExprTree(req)
    assert expr.eval(pegasus_ad("aws-batch")) is True
    for ad in (pegasus_ad("condorpool"), pegasus_ad("local", universe=12),
               pegasus_ad("aws-batch", universe=9, GridResource="batch awsbatch"),
               pegasus_ad("aws-batch", universe=12),       # Pegasus 4.9 style clustered job
               pegasus_ad("AWS-Batch"),
               classad2.ClassAd({"JobUniverse": 5, "Cmd": "/bin/sleep"})):
        assert expr.eval(ad) is not True


def test_routing_transform_body_uses_no_config_macros():
    """The schedd reads a native-syntax transform body unexpanded (param_unexpanded): a
    $(MACRO) inside it would reach the job's REQUIREMENTS literally."""
    text = open(ROUTING).read()
    body = re.search(r"JOB_TRANSFORM_PegasusAWSBatch @=end\n(.*?)\n@end", text, re.S).group(1)
    assert "$(" not in body
    assert 'pegasus_site =?= "aws-batch"' in body
    assert "AWSBATCH_PEGASUS_SITE" not in text


def test_routing_sets_grid_job():
    _, sets = _transform()
    assert classad2.ExprTree(sets["JobUniverse"]).eval() == 9
    assert classad2.ExprTree(sets["GridResource"]).eval() == "batch awsbatch"
