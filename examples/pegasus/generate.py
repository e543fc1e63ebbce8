#!/usr/bin/env python3
"""Write ready-to-use Pegasus catalogs and properties for the three ways of running a Pegasus
workflow on AWS Batch with awsbatch-gahp (see README.rst in this directory).

    python generate.py [--out DIR] [--bucket BUCKET] [--queue QUEUE] [--region REGION]
                       [--account ACCOUNT] [--job-definition JD]

Creates DIR/via-gahp, DIR/pegasus-4.9 and DIR/condor-routed, each holding `sites.yml` and
`pegasus.properties` (plus `transformations.yml` for the pegasus-4.9 variant).  Needs only the
`pegasus-wms.api` package (``pip install 'awsbatch-gahp[pegasus]'``).
"""
import argparse
import os
import shutil
import sys

from Pegasus.api import (Directory, FileServer, Namespace, Operation, Properties, Site,
                         SiteCatalog, Transformation, TransformationCatalog)

SITE = "aws-batch"


def _local_site(workdir):
    local = Site("local")
    local.add_directories(
        Directory(Directory.SHARED_SCRATCH, os.path.join(workdir, "scratch"))
        .add_file_servers(FileServer("file://" + os.path.join(workdir, "scratch"), Operation.ALL)),
        Directory(Directory.LOCAL_STORAGE, os.path.join(workdir, "outputs"))
        .add_file_servers(FileServer("file://" + os.path.join(workdir, "outputs"), Operation.ALL)))
    return local


def _staging_site(bucket):
    """An S3 staging site; pegasus-s3 reads endpoint and keys from ~/.pegasus/credentials.conf
    ([aws-batch-s3] and [pegasus@aws-batch-s3])."""
    s3 = Site("aws-batch-s3")
    s3.add_directories(
        Directory(Directory.SHARED_SCRATCH, f"/{bucket}/scratch")
        .add_file_servers(FileServer(f"s3://pegasus@aws-batch-s3/{bucket}/scratch", Operation.ALL)))
    return s3


def via_gahp(a):
    """Site aws-batch as a glite-style batch site whose jobs go to the GAHP."""
    site = Site(SITE)
    site.add_directories(
        Directory(Directory.SHARED_SCRATCH, f"/{a.bucket}/scratch")
        .add_file_servers(FileServer(f"s3://pegasus@aws-batch-s3/{a.bucket}/scratch", Operation.ALL)))
    site.add_pegasus_profile(style="glite", queue=a.queue, runtime=3600, project="pegasus",
                             cores=1, memory=2048, data_configuration="nonsharedfs")
    site.add_condor_profile(grid_resource="batch awsbatch")
    site.add_env(key="AWS_DEFAULT_REGION", value=a.region)
    sc = SiteCatalog().add_sites(_local_site(a.workdir), site, _staging_site(a.bucket))
    props = Properties()
    props["pegasus.data.configuration"] = "nonsharedfs"
    props["pegasus.catalog.site.file"] = "sites.yml"
    return sc, props, None


def pegasus_49(a):
    """Pegasus 4.9's documented way: clustered jobs run pegasus-aws-batch on the submit host."""
    site = Site(SITE)
    site.add_directories(
        Directory(Directory.SHARED_SCRATCH, f"/{a.bucket}/scratch")
        .add_file_servers(FileServer(f"s3://pegasus@aws-batch-s3/{a.bucket}/scratch", Operation.ALL)))
    site.add_pegasus_profile(style="condor", clusters_num=1, data_configuration="nonsharedfs")
    sc = SiteCatalog().add_sites(_local_site(a.workdir), site, _staging_site(a.bucket))
    props = Properties()
    props["pegasus.data.configuration"] = "nonsharedfs"
    props["pegasus.clusterer.job.aggregator"] = "AWSBatch"
    props["pegasus.clusterer.allow.single"] = "true"
    props["pegasus.aws.region"] = a.region
    props["pegasus.aws.account"] = a.account
    props["pegasus.aws.batch.job_definition"] = a.job_definition
    props["pegasus.aws.batch.compute_environment"] = a.compute_environment
    props["pegasus.aws.batch.job_queue"] = a.queue
    props["pegasus.aws.batch.s3_bucket"] = f"s3://{a.bucket}"
    props["pegasus.catalog.site.file"] = "sites.yml"
    exe = shutil.which("pegasus-aws-batch") or "/usr/local/bin/pegasus-aws-batch"
    tc = TransformationCatalog().add_transformations(
        Transformation("aws-batch", namespace="pegasus", site="local", pfn=exe, is_stageable=False))
    return sc, props, tc


def condor_routed(a):
    """style = condor for site aws-batch; 60-pegasus-routing.conf turns the vanilla jobs into
    grid jobs for the GAHP at submit time."""
    site = Site(SITE)
    site.add_directories(
        Directory(Directory.SHARED_SCRATCH, f"/{a.bucket}/scratch")
        .add_file_servers(FileServer(f"s3://pegasus@aws-batch-s3/{a.bucket}/scratch", Operation.ALL)))
    site.add_pegasus_profile(style="condor", data_configuration="nonsharedfs")
    site.add_condor_profile(request_cpus=1, request_memory=2048)
    site.add_profiles(Namespace.CONDOR, key="+remote_queue", value=f'"{a.queue}"')
    sc = SiteCatalog().add_sites(_local_site(a.workdir), site, _staging_site(a.bucket))
    props = Properties()
    props["pegasus.data.configuration"] = "nonsharedfs"
    props["pegasus.catalog.site.file"] = "sites.yml"
    return sc, props, None


VARIANTS = {"via-gahp": via_gahp, "pegasus-4.9": pegasus_49, "condor-routed": condor_routed}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".")
    p.add_argument("--bucket", default="pegasus-staging")
    p.add_argument("--queue", default="pegasus-queue")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--account", default="123456789012")
    p.add_argument("--job-definition", default="conf/job-definition.json")
    p.add_argument("--compute-environment", default="conf/compute-env.json")
    p.add_argument("--workdir", default=os.path.abspath("work"))
    a = p.parse_args(argv)
    for name, make in VARIANTS.items():
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        sc, props, tc = make(a)
        sc.write(os.path.join(d, "sites.yml"))
        props.write(os.path.join(d, "pegasus.properties"))
        if tc is not None:
            tc.write(os.path.join(d, "transformations.yml"))
        print(f"wrote {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
