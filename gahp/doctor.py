"""``awsbatch_gahp doctor``: a preflight check of the account the GAHP will use.

It reads the same knobs as the GAHP (so it checks what the gridmanager's GAHP will see,
when run as the job owner) and prints one line per check: credentials, region, the job
queue and its compute environments, the job definition, the staging bucket and the IAM
roles.  Exit status 1 if any check fails, so it can gate a deployment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import uuid

from .batch import BatchBackend, describe_error
from .config import Settings

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclasses.dataclass
class Check:
    status: str
    name: str
    detail: str


def _role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    backend = BatchBackend(settings)

    def add(status, name, detail):
        checks.append(Check(status, name, detail))

    try:
        region = backend.region
        add(PASS, "region", region + (f" via {settings.endpoint_url}" if settings.endpoint_url else ""))
    except Exception as exc:
        add(FAIL, "region", describe_error(exc))
        return checks
    try:
        ident = backend.client("sts", quick=True).get_caller_identity()
        add(PASS, "credentials", f"{ident.get('Arn')} (account {ident.get('Account')})")
    except Exception as exc:
        add(FAIL, "credentials", describe_error(exc))
        return checks

    batch = backend.client("batch", quick=True)
    queue = settings.job_queue
    if not queue:
        add(WARN, "job queue", "AWSBATCH_GAHP_JOB_QUEUE is unset: every job must set batch_queue")
    else:
        try:
            queues = batch.describe_job_queues(jobQueues=[queue]).get("jobQueues", [])
            if not queues:
                add(FAIL, "job queue", f"{queue!r} does not exist in {region}")
            else:
                q = queues[0]
                ok = q.get("state") == "ENABLED" and q.get("status") == "VALID"
                add(PASS if ok else FAIL, "job queue", f"{q['jobQueueName']} is {q.get('state')}/{q.get('status')}"
                    + ("" if ok else f": {q.get('statusReason', '')}"))
                ces = [e["computeEnvironment"] for e in q.get("computeEnvironmentOrder", [])]
                found = batch.describe_compute_environments(computeEnvironments=ces).get("computeEnvironments", []) if ces else []
                if not found:
                    add(FAIL, "compute environment", f"queue {queue!r} has no compute environment")
                for ce in found:
                    ok = ce.get("state") == "ENABLED" and ce.get("status") == "VALID"
                    res = ce.get("computeResources") or {}
                    detail = f"{ce['computeEnvironmentName']} is {ce.get('state')}/{ce.get('status')}"
                    if res:
                        detail += f", {res.get('type')} maxvCpus={res.get('maxvCpus')}"
                    if not ok and ce.get("statusReason"):
                        detail += f": {ce['statusReason']}"
                    add(PASS if ok else FAIL, "compute environment", detail)
                    role = ce.get("serviceRole")
                    if role:
                        _check_role(backend, add, "service role", role)
        except Exception as exc:
            add(FAIL, "job queue", describe_error(exc))

    definition = settings.job_definition
    if not definition:
        add(WARN, "job definition", "AWSBATCH_GAHP_JOB_DEFINITION is unset: every job must set +remote_JobDefinition")
    else:
        try:
            if definition.startswith("arn:") or ":" in definition:
                defs = batch.describe_job_definitions(jobDefinitions=[definition]).get("jobDefinitions", [])
            else:
                defs = batch.describe_job_definitions(jobDefinitionName=definition, status="ACTIVE").get("jobDefinitions", [])
            defs = [d for d in defs if d.get("status") == "ACTIVE"]
            if not defs:
                add(FAIL, "job definition", f"{definition!r} has no ACTIVE revision in {region}")
            else:
                jd = max(defs, key=lambda d: d.get("revision", 0))
                props = jd.get("containerProperties") or {}
                add(PASS, "job definition", f"{jd['jobDefinitionName']}:{jd['revision']} ACTIVE, image {props.get('image')}")
                if settings.s3_url:
                    image = (props.get("image") or "").lower()
                    env = {e["name"] for e in props.get("environment") or []}
                    if "fetch" in image or "fetch_and_run" in image or "BATCH_FILE_TYPE" in env:
                        add(PASS, "fetch-and-run", "the image looks like a fetch-and-run image (needs sh and the aws CLI)")
                    else:
                        add(WARN, "fetch-and-run", f"staging needs a fetch-and-run entrypoint with sh and the aws CLI; "
                            f"cannot tell whether {props.get('image')!r} has one")
                    role = props.get("jobRoleArn")
                    if role:
                        _check_role(backend, add, "job role", role)
                    else:
                        add(WARN, "job role", "the job definition has no jobRoleArn: the job reaches S3 only "
                            "if the instance role allows it (see the README's minimal policy)")
        except Exception as exc:
            add(FAIL, "job definition", describe_error(exc))

    if settings.s3_url:
        _check_bucket(backend, add, settings.s3_url)
    else:
        add(PASS, "staging", "AWSBATCH_GAHP_S3_URL unset: no staging; output returns through CloudWatch Logs")
    return checks


def _check_role(backend, add, label, arn):
    try:
        backend.client("iam", quick=True).get_role(RoleName=_role_name(arn))
        add(PASS, label, arn)
    except Exception as exc:
        text = describe_error(exc)
        add(WARN if "AccessDenied" in text else FAIL, label, f"{arn}: {text}")


def _check_bucket(backend, add, url):
    if not url.startswith("s3://"):
        add(FAIL, "staging bucket", f"AWSBATCH_GAHP_S3_URL {url!r} must look like s3://bucket/prefix")
        return
    bucket, _, prefix = url[5:].partition("/")
    key = f"{prefix.strip('/') + '/' if prefix.strip('/') else ''}.awsbatch-gahp-doctor-{uuid.uuid4().hex}"
    s3 = backend.client("s3", quick=True)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"probe", ChecksumAlgorithm="SHA256")
        s3.delete_object(Bucket=bucket, Key=key)
        add(PASS, "staging bucket", f"s3://{bucket}/{key.rsplit('/', 1)[0] if '/' in key else ''} is writable")
    except Exception as exc:
        add(FAIL, "staging bucket", f"cannot write to s3://{bucket}/{prefix}: {describe_error(exc)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="awsbatch_gahp doctor", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        settings = Settings.from_condor_config()
    except ValueError as exc:
        print(f"FAIL configuration: {exc}")
        return 1
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    checks = run_checks(settings)
    colour = {PASS: "green", WARN: "yellow", FAIL: "bold red"}
    for check in checks:
        console.print(f"[{colour[check.status]}]{check.status}[/] {check.name}: {check.detail}")
    failed = sum(c.status == FAIL for c in checks)
    console.print(f"{len(checks)} checks, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
