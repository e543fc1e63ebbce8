"""Batch entities (queues, compute environments, job definitions) as moto keeps them.

Entities are created and described by moto's own Batch backend, so plain
boto3 calls against the emulator work as they do against AWS. This module
only reads them in-process for scheduling, and builds the default set that
``awsbatch_gahp local`` offers.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CE_VCPUS = 2.0


def account_id() -> str:
    """The account moto uses for our test credentials (123456789012 unless overridden)."""
    from moto.core import DEFAULT_ACCOUNT_ID

    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    name: str
    arn: str
    state: str
    ce_names: list[str]


class MotoEntities:
    """Read-only view of moto's Batch backend for one account and region."""

    def __init__(self, account: str, region: str):
        self.account = account
        self.region = region

    @property
    def backend(self) -> Any:
        from moto.batch.models import batch_backends

        return batch_backends[self.account][self.region]

    def queue(self, identifier: str) -> QueueInfo | None:
        q = self.backend.get_job_queue(identifier)
        if q is None:
            return None
        order = sorted(q.env_order_json or [], key=lambda e: int(e.get("order", 0)))
        names = []
        for entry in order:
            ce = self.backend.get_compute_environment(entry.get("computeEnvironment", ""))
            if ce is not None:
                names.append(ce.name)
        return QueueInfo(q.name, q.arn, q.state, names)

    def job_definition(self, identifier: str) -> Any | None:
        """Name (newest ACTIVE revision), ``name:revision`` or ARN, like AWS.

        moto alone would pick the newest revision even when it is INACTIVE.
        """
        be = self.backend
        jd = be.get_job_definition_by_arn(identifier)
        if jd is not None:
            return jd
        if ":" in identifier:
            name, _, rev = identifier.partition(":")
            if not rev.isdigit():
                return None
            return be.get_job_definition_by_name_revision(name, rev)
        best = None
        for cand in be._job_definitions.values():  # noqa: SLF001 - moto has no "latest active" lookup
            if cand.name == identifier and cand.status == "ACTIVE":
                if best is None or cand.revision > best.revision:
                    best = cand
        return best

    def ce_limits(self) -> dict[str, float]:
        """vCPU capacity of every ENABLED compute environment."""
        out: dict[str, float] = {}
        for ce in list(self.backend._compute_environments.values()):  # noqa: SLF001
            if getattr(ce, "state", "ENABLED") != "ENABLED":
                continue
            out[ce.name] = ce_vcpus(ce)
        return out


def ce_vcpus(ce: Any) -> float:
    res = getattr(ce, "compute_resources", None) or {}
    for value in (res.get("maxvCpus"), getattr(ce, "unmanaged_vcpus", None),
                  getattr(ce, "unmanagedvCpus", None)):
        if value:
            return float(value)
    return DEFAULT_CE_VCPUS


@dataclasses.dataclass(frozen=True)
class LocalEntities:
    """Names of the ready-made entities ``create_default_entities`` provides."""

    compute_environment: str
    job_queue: str
    job_definition: str
    bucket: str
    s3_url: str


def create_default_entities(client: Any, prefix: str = "local", max_vcpus: int = 8) -> LocalEntities:
    """Create (or find) a usable CE, queue, fetch-and-run job definition and bucket.

    ``client(service)`` returns a boto3 client for the emulator. Idempotent:
    existing entities are reused, a different ``max_vcpus`` updates the CE.
    """
    iam, ec2, batch, s3 = client("iam"), client("ec2"), client("batch"), client("s3")
    names = LocalEntities(
        compute_environment=f"{prefix}-ce",
        job_queue=f"{prefix}-queue",
        job_definition=f"{prefix}-fetch-and-run",
        bucket=f"{prefix}-bucket",
        s3_url=f"s3://{prefix}-bucket/jobs",
    )
    trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
             '{"Service":"batch.amazonaws.com"},"Action":"sts:AssumeRole"}]}')

    def role(name: str) -> str:
        try:
            return iam.get_role(RoleName=name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]

    service_role = role(f"{prefix}-batch-service-role")
    instance_role = role(f"{prefix}-ecs-instance-role")
    profile_name = f"{prefix}-ecs-instance-profile"
    try:
        profile = iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
        iam.add_role_to_instance_profile(InstanceProfileName=profile_name,
                                         RoleName=f"{prefix}-ecs-instance-role")
    del instance_role

    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{prefix}-vpc"]}])["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock="10.77.0.0/16", TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"{prefix}-vpc"}]}])["Vpc"]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    subnet_id = subnets[0]["SubnetId"] if subnets else ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [f"{prefix}-sg"]}])
    if groups["SecurityGroups"]:
        sg_id = groups["SecurityGroups"][0]["GroupId"]
    else:
        sg_id = ec2.create_security_group(GroupName=f"{prefix}-sg", Description="local batch",
                                          VpcId=vpc_id)["GroupId"]

    ces = batch.describe_compute_environments(
        computeEnvironments=[names.compute_environment])["computeEnvironments"]
    if not ces:
        batch.create_compute_environment(
            computeEnvironmentName=names.compute_environment, type="MANAGED", state="ENABLED",
            serviceRole=service_role,
            computeResources={
                "type": "EC2", "minvCpus": 0, "desiredvCpus": 0, "maxvCpus": int(max_vcpus),
                "instanceTypes": ["optimal"], "instanceRole": profile["Arn"],
                "subnets": [subnet_id], "securityGroupIds": [sg_id],
            })
    elif ces[0].get("computeResources", {}).get("maxvCpus") != int(max_vcpus):
        batch.update_compute_environment(computeEnvironment=names.compute_environment,
                                         computeResources={"maxvCpus": int(max_vcpus)})

    if not batch.describe_job_queues(jobQueues=[names.job_queue])["jobQueues"]:
        batch.create_job_queue(jobQueueName=names.job_queue, state="ENABLED", priority=1,
                               computeEnvironmentOrder=[{"order": 1,
                                                         "computeEnvironment": names.compute_environment}])

    defs = batch.describe_job_definitions(jobDefinitionName=names.job_definition,
                                          status="ACTIVE")["jobDefinitions"]
    if not [d for d in defs if d.get("status") == "ACTIVE"]:
        batch.register_job_definition(
            jobDefinitionName=names.job_definition, type="container",
            containerProperties={"image": "local/fetch_and_run", "command": ["/bin/true"],
                                 "vcpus": 1, "memory": 512})

    region = s3.meta.region_name
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=names.bucket)
        else:
            s3.create_bucket(Bucket=names.bucket,
                             CreateBucketConfiguration={"LocationConstraint": region})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return names
