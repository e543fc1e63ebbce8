"""Compute environment, job queue, job definition and S3 bucket: resolve, create, wait, delete.

Each value (flag or property) is interpreted as Pegasus does:

* ``arn:aws...``  -- an existing entity, used as it is and never deleted;
* a value containing a path separator, or naming an existing file -- a JSON file in the AWS
  request-body format (keys matched without regard to case).  The entity is created, named
  ``<prefix>-compute-env``, ``<prefix>-job-queue``, ``<prefix>-job-definition`` or
  ``<prefix>-bucket`` unless the JSON names it, and deleted at the end of the run;
* anything else -- the name of an existing entity.

Unlike Pegasus's builders, every field of the request is accepted (the JSON is mapped onto the
botocore request shape), so ``resourceRequirements``, ``platformCapabilities`` (Fargate),
``timeout``, ``retryStrategy.evaluateOnExit`` and ``logConfiguration`` work.  Waiting for
VALID is bounded and fails with the entity's ``statusReason``.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from . import PegasusAWSBatchError
from .credentials import S3Location, parse_s3_url

log = logging.getLogger("pegasus-aws-batch")

#: the folder (under the run's key prefix) that holds the client's own launcher and task files
INTERNAL_DIR = "_pegasus-aws-batch"

KINDS = {
    "compute_environment": ("CreateComputeEnvironment", "computeEnvironmentName", "compute-env"),
    "job_queue": ("CreateJobQueue", "jobQueueName", "job-queue"),
    "job_definition": ("RegisterJobDefinition", "jobDefinitionName", "job-definition"),
}

#: bounded wait for VALID: total seconds and the backoff cap (env overrides for tests / slow CEs)
WAIT_TIMEOUT = float(os.environ.get("PEGASUS_AWS_BATCH_ENTITY_TIMEOUT", "600"))
WAIT_MAX_SLEEP = 16.0

_MODEL = None


def _batch_model():
    global _MODEL
    if _MODEL is None:
        _MODEL = botocore.session.get_session().get_service_model("batch")
    return _MODEL


def is_json_value(value: str) -> bool:
    """Pegasus's rule: a path separator in it, or an existing file."""
    return os.sep in value or "/" in value or os.path.isfile(value)


def conform(shape, data, where="", dropped=None):
    """Map ``data`` onto a botocore ``shape``, matching structure keys without regard to case.
    Unknown keys are dropped (and listed in ``dropped``)."""
    dropped = [] if dropped is None else dropped
    tname = shape.type_name
    if tname == "structure":
        if not isinstance(data, dict):
            raise PegasusAWSBatchError(f"{where or 'JSON'}: expected an object")
        lower = {k.lower(): k for k in shape.members}
        out = {}
        for key, value in data.items():
            real = lower.get(str(key).lower())
            if real is None:
                dropped.append(f"{where}{key}")
                continue
            out[real] = conform(shape.members[real], value, f"{where}{real}.", dropped)
        return out
    if tname == "list":
        if not isinstance(data, list):
            data = [data]
        return [conform(shape.member, v, where, dropped) for v in data]
    if tname == "map":
        return {str(k): conform(shape.value, v, where, dropped) for k, v in (data or {}).items()}
    if tname in ("integer", "long"):
        return int(data)
    if tname in ("float", "double"):
        return float(data)
    if tname == "boolean":
        if isinstance(data, str):
            return data.strip().lower() in ("true", "1", "yes")
        return bool(data)
    if tname == "string" and not isinstance(data, str):
        return str(data)
    return data


def load_request(kind: str, path: str) -> dict:
    op, _, _ = KINDS[kind]
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PegasusAWSBatchError(f"cannot read {kind.replace('_', ' ')} JSON {path}: {exc}")
    dropped: list = []
    req = conform(_batch_model().operation_model(op).input_shape, data, "", dropped)
    if dropped:
        log.warning("%s: ignoring unknown fields %s", path, ", ".join(dropped))
    return req


def arn_name(value: str) -> str:
    """``arn:aws:batch:r:a:job-queue/name`` -> ``name`` (job definitions keep ``:rev``)."""
    if value.startswith("arn:"):
        return value.split("/", 1)[1] if "/" in value else value
    return value


@dataclass
class Entity:
    kind: str
    name: str                    # name (or ARN for existing ones)
    arn: Optional[str] = None
    created: bool = False        # created by this run -> delete at the end
    request: Optional[dict] = None


@dataclass
class BucketEntity:
    location: S3Location
    created: bool = False

    @property
    def bucket(self):
        return self.location.bucket

    @property
    def key_prefix(self) -> str:
        """The run's key prefix, ending in "/"."""
        return self.location.key + "/" if self.location.key else ""


@dataclass
class Setup:
    compute_environment: Optional[Entity] = None
    job_queue: Optional[Entity] = None
    job_definition: Optional[Entity] = None
    bucket: Optional[BucketEntity] = None
    errors: list = field(default_factory=list)


def _role_arn(value: str, account: Optional[str], kind="role") -> str:
    if value and not value.startswith("arn:") and account:
        return f"arn:aws:iam::{account}:{kind}/{value}"
    return value


def _aws_error(exc) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', exc)}"
    return str(exc)


class EntityManager:
    def __init__(self, clients, prefix: str, account: Optional[str] = None,
                 wait_timeout: float = None, sleep=time.sleep, clock=time.monotonic,
                 stop=None):
        self.c = clients
        self.stop = stop          # a StopFlag: waits for VALID end early on a signal
        self.prefix = prefix
        self.account = account
        self.wait_timeout = WAIT_TIMEOUT if wait_timeout is None else wait_timeout
        self.sleep = sleep
        self.clock = clock

    # ------------------------------------------------------------------ resolve
    def resolve(self, kind: str, value: Optional[str]) -> Optional[Entity]:
        if not value:
            return None
        op, name_key, suffix = KINDS[kind]
        if value.startswith("arn:aws"):
            return Entity(kind, value, arn=value)
        if is_json_value(value):
            req = load_request(kind, value)
            if not req.get(name_key):
                req[name_key] = f"{self.prefix}-{suffix}"
            return Entity(kind, req[name_key], request=req)
        return Entity(kind, value)

    def resolve_bucket(self, value: Optional[str]) -> BucketEntity:
        if not value:
            return BucketEntity(S3Location(bucket=f"{self.prefix}-bucket", key=self.prefix))
        if not value.startswith("s3://") and is_json_value(value) and value.endswith(".json"):
            with open(value, encoding="utf-8") as fh:
                data = {k.lower(): v for k, v in json.load(fh).items()}
            name = data.get("bucket") or data.get("bucketname") or data.get("name") \
                or f"{self.prefix}-bucket"
            return BucketEntity(S3Location(bucket=name, key=self.prefix))
        loc = parse_s3_url(value)
        if not loc.key:
            loc.key = self.prefix   # never work at the bucket's root
        return BucketEntity(loc)

    # ------------------------------------------------------------------ create
    def _wait(self, what: str, describe, ok, bad=("INVALID",)):
        deadline = self.clock() + self.wait_timeout
        delay = 1.0
        while True:
            if self.stop is not None and self.stop.is_set():
                raise PegasusAWSBatchError(f"waiting for {what}: {self.stop.message}")
            item = describe()
            if item is not None:
                status = item.get("status")
                if ok(item):
                    return item
                if status in bad:
                    raise PegasusAWSBatchError(
                        f"{what} is {status}: {item.get('statusReason') or 'no reason given'}")
            if self.clock() >= deadline:
                raise PegasusAWSBatchError(
                    f"{what} did not become VALID within {self.wait_timeout:.0f}s "
                    f"(last status {item.get('status') if item else 'missing'}: "
                    f"{(item or {}).get('statusReason') or '-'})")
            pause = min(delay, max(0.0, deadline - self.clock()))
            if self.stop is not None and self.sleep is time.sleep:
                self.stop.wait(pause)
            else:
                self.sleep(pause)
            delay = min(delay * 2, WAIT_MAX_SLEEP)

    def _describe_ce(self, name):
        r = self.c.batch.describe_compute_environments(computeEnvironments=[name])
        envs = r.get("computeEnvironments", [])
        return envs[0] if envs else None

    def _describe_jq(self, name):
        r = self.c.batch.describe_job_queues(jobQueues=[name])
        qs = r.get("jobQueues", [])
        return qs[0] if qs else None

    def create_compute_environment(self, ent: Entity):
        req = dict(ent.request)
        req.setdefault("type", "MANAGED")
        req.setdefault("state", "ENABLED")
        if "serviceRole" in req:
            req["serviceRole"] = _role_arn(req["serviceRole"], self.account)
        cr = req.get("computeResources")
        if cr:
            ctype = cr.get("type", "EC2")
            if ctype not in ("SPOT",):
                cr.pop("bidPercentage", None)       # meaningless outside SPOT
            if ctype in ("FARGATE", "FARGATE_SPOT"):
                for k in ("desiredvCpus", "minvCpus", "instanceTypes", "instanceRole",
                          "ec2KeyPair", "spotIamFleetRole", "tags", "allocationStrategy"):
                    cr.pop(k, None)
            if cr.get("spotIamFleetRole"):
                cr["spotIamFleetRole"] = _role_arn(cr["spotIamFleetRole"], self.account)
        r = self.c.batch.create_compute_environment(**req)
        ent.arn = r.get("computeEnvironmentArn")
        ent.created = True
        log.info("created compute environment %s", ent.name)
        self._wait(f"compute environment {ent.name}", lambda: self._describe_ce(ent.name),
                   lambda it: it.get("status") == "VALID")

    def create_job_queue(self, ent: Entity, ce: Optional[Entity]):
        req = dict(ent.request or {})
        req.setdefault("jobQueueName", ent.name)
        req.setdefault("priority", 1)
        req.setdefault("state", "ENABLED")
        order = req.get("computeEnvironmentOrder") or [{"order": 1}]
        for i, entry in enumerate(order):
            entry.setdefault("order", i + 1)
            if not entry.get("computeEnvironment"):
                if ce is None:
                    raise PegasusAWSBatchError(
                        f"job queue {ent.name} needs a compute environment (--compute-environment)")
                entry["computeEnvironment"] = ce.arn or ce.name
        req["computeEnvironmentOrder"] = order
        r = self.c.batch.create_job_queue(**req)
        ent.arn = r.get("jobQueueArn")
        ent.created = True
        log.info("created job queue %s", ent.name)
        self._wait(f"job queue {ent.name}", lambda: self._describe_jq(ent.name),
                   lambda it: it.get("status") == "VALID" and it.get("state") == "ENABLED")

    def create_job_definition(self, ent: Entity):
        req = dict(ent.request)
        req.setdefault("type", "container")
        cp = req.get("containerProperties")
        if cp and cp.get("jobRoleArn"):
            cp["jobRoleArn"] = _role_arn(cp["jobRoleArn"], self.account)
        if cp and cp.get("executionRoleArn"):
            cp["executionRoleArn"] = _role_arn(cp["executionRoleArn"], self.account)
        r = self.c.batch.register_job_definition(**req)
        ent.arn = r.get("jobDefinitionArn")
        ent.name = f"{r['jobDefinitionName']}:{r['revision']}"
        ent.created = True
        log.info("registered job definition %s", ent.name)

    def ensure_bucket(self, b: BucketEntity):
        s3 = self.c.s3
        try:
            s3.head_bucket(Bucket=b.bucket)
            log.info("using existing bucket %s", b.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs = {"Bucket": b.bucket}
        region = self.c.region
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
            b.created = True
            log.info("created bucket %s", b.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def setup(self, settings, need_queue: bool) -> Setup:
        """Resolve all entities and create the JSON-defined ones.  On error, what was created
        so far is recorded in the returned Setup (so the caller can tear it down) and the
        exception is re-raised."""
        st = Setup()
        st.compute_environment = self.resolve("compute_environment", settings.compute_environment)
        st.job_queue = self.resolve("job_queue", settings.job_queue)
        st.job_definition = self.resolve("job_definition", settings.job_definition)
        if st.job_queue is None and need_queue:
            st.job_queue = Entity("job_queue", f"{self.prefix}-job-queue", request={})
        st.bucket = self.resolve_bucket(settings.s3)
        self._current = st
        try:
            if st.compute_environment and st.compute_environment.request is not None:
                self.create_compute_environment(st.compute_environment)
            if st.job_queue and st.job_queue.request is not None:
                self.create_job_queue(st.job_queue, st.compute_environment)
            if st.job_definition and st.job_definition.request is not None:
                self.create_job_definition(st.job_definition)
            self.ensure_bucket(st.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise PegasusAWSBatchError(f"creating AWS entities: {_aws_error(exc)}") from exc
        return st

    def resolve_for_delete(self, settings) -> Setup:
        """``--delete``: the entities a ``--create`` run with the same settings made."""
        st = Setup()
        for kind in KINDS:
            ent = self.resolve(kind, getattr(settings, kind))
            if kind == "job_queue" and ent is None and settings.compute_environment \
                    and is_json_value(settings.compute_environment):
                ent = Entity("job_queue", f"{self.prefix}-job-queue", request={})
            if ent is not None and ent.request is not None:
                ent.created = True
            setattr(st, kind, ent)
        st.bucket = self.resolve_bucket(settings.s3)
        st.bucket.created = st.bucket.bucket == f"{self.prefix}-bucket"
        return st

    # ------------------------------------------------------------------ delete
    def teardown(self, st: Setup, empty_prefix: bool = False) -> list:
        """Delete what ``st`` marks as created, in Pegasus's order (queue, compute environment,
        job definition, bucket).  Every step is attempted; errors are returned as strings.

        S3 is emptied only where this client owns it: the run's key prefix only when
        ``empty_prefix`` is true *and* the bucket is marked as created (ours); otherwise only
        the internal ``<key prefix>_pegasus-aws-batch/<prefix>/`` objects are removed.  A
        user-supplied path in a bucket this client did not create is never emptied."""
        errors: list = []

        def step(what, fn):
            try:
                fn()
                return True
            except Exception as exc:  # noqa: BLE001 - every step is attempted
                msg = f"deleting {what}: {_aws_error(exc)}"
                log.error(msg)
                errors.append(msg)
                return False

        queue_ok = True
        if st.job_queue and st.job_queue.created:
            queue_ok = step(f"job queue {st.job_queue.name}", lambda: self._delete_queue(st.job_queue))
        if st.compute_environment and st.compute_environment.created:
            if queue_ok:
                step(f"compute environment {st.compute_environment.name}",
                     lambda: self._delete_ce(st.compute_environment))
            else:
                errors.append(f"compute environment {st.compute_environment.name} not deleted "
                              "because its job queue could not be deleted")
        if st.job_definition and st.job_definition.created:
            step(f"job definition {st.job_definition.name}",
                 lambda: self._delete_jd(st.job_definition))
        if st.bucket is not None:
            step(f"s3://{st.bucket.bucket}/{st.bucket.key_prefix}",
                 lambda: self._delete_bucket(st.bucket, empty_prefix))
        return errors

    def _wait_gone(self, what, describe, timeout=None):
        deadline = self.clock() + (self.wait_timeout if timeout is None else timeout)
        delay = 0.5
        while True:
            item = describe()
            if item is None or item.get("status") == "DELETED":
                return
            if self.clock() >= deadline:
                raise PegasusAWSBatchError(f"{what} still {item.get('status')} after waiting")
            self.sleep(delay)
            delay = min(delay * 2, WAIT_MAX_SLEEP)

    def _wait_not_updating(self, what, describe):
        deadline = self.clock() + self.wait_timeout
        delay = 0.5
        while True:
            item = describe()
            if item is None or item.get("status") != "UPDATING":
                return item
            if self.clock() >= deadline:
                raise PegasusAWSBatchError(f"{what} still UPDATING after waiting")
            self.sleep(delay)
            delay = min(delay * 2, WAIT_MAX_SLEEP)

    def _disable_and_delete(self, what: str, name: str, describe, disable, delete):
        """Pegasus's order for a queue or compute environment: DISABLED, wait, delete, wait gone."""
        if describe() is None:
            log.info("%s already gone", what)
            return
        disable()
        self._wait_not_updating(what, describe)
        delete()
        self._wait_gone(what, describe)
        log.info("deleted %s", what)

    def _delete_queue(self, ent: Entity):
        name = ent.arn or ent.name
        self._disable_and_delete(
            f"job queue {ent.name}", name, lambda: self._describe_jq(name),
            lambda: self.c.batch.update_job_queue(jobQueue=name, state="DISABLED"),
            lambda: self.c.batch.delete_job_queue(jobQueue=name))

    def _delete_ce(self, ent: Entity):
        name = ent.arn or ent.name
        self._disable_and_delete(
            f"compute environment {ent.name}", name, lambda: self._describe_ce(name),
            lambda: self.c.batch.update_compute_environment(computeEnvironment=name, state="DISABLED"),
            lambda: self.c.batch.delete_compute_environment(computeEnvironment=name))

    def _delete_jd(self, ent: Entity):
        if ":" in arn_name(ent.name):
            targets = [ent.arn or ent.name]
        else:
            # --delete mode: every ACTIVE revision of the name
            r = self.c.batch.describe_job_definitions(jobDefinitionName=ent.name, status="ACTIVE")
            targets = [d["jobDefinitionArn"] for d in r.get("jobDefinitions", [])]
        for t in targets:
            self.c.batch.deregister_job_definition(jobDefinition=t)
            log.info("deregistered job definition %s", t)

    def internal_key(self, b: BucketEntity) -> str:
        """The objects only this client writes: ``<key prefix>_pegasus-aws-batch/<prefix>/``."""
        return f"{b.key_prefix}{INTERNAL_DIR}/{self.prefix}/"

    def _delete_bucket(self, b: BucketEntity, empty_prefix: bool):
        s3 = self.c.s3
        if not b.created:
            # not our bucket: only our own internal objects may go
            delete_prefix(s3, b.bucket, self.internal_key(b))
            return
        if empty_prefix and b.key_prefix:
            delete_prefix(s3, b.bucket, b.key_prefix)
        else:
            delete_prefix(s3, b.bucket, self.internal_key(b))
        if b.created:
            left = s3.list_objects_v2(Bucket=b.bucket, MaxKeys=1).get("KeyCount", 0)
            if left:
                raise PegasusAWSBatchError(
                    f"bucket {b.bucket} still holds objects outside s3://{b.bucket}/{b.key_prefix}; "
                    "it was left in place")
            s3.delete_bucket(Bucket=b.bucket)
            log.info("deleted bucket %s", b.bucket)


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` (which must be non-empty) and nothing else."""
    if not prefix:
        raise PegasusAWSBatchError("refusing to empty a whole bucket")
    n = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
            n += len(keys[i:i + 1000])
    log.info("deleted %d objects under s3://%s/%s", n, bucket, prefix)
    return n
