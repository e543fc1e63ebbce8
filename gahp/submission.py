"""Pure pieces of a Batch submission: job ids, the job record, the SubmitJob request.

* **Job ids** returned to the gridmanager are ``awsbatch/<region>/<batch job id>``: no
  spaces, and enough for a freshly started GAHP to find the job (gahp-protocol.md §3.4).
* **The job record** (where ``Out``/``Err``/``TransferOutput`` go on the submit host, and
  the S3 staging prefix) travels with the Batch job itself as a SubmitJob ``parameter``
  that DescribeJobs echoes, so any later GAHP process can bring the outputs home.
* **The SubmitJob request** is built from a :class:`~gahp.jobad.JobSpec`, the settings
  and a :class:`Launch` (the container command and environment: the job's own command,
  or the staging wrapper's fetch-and-run launch).
"""

from __future__ import annotations

import dataclasses
import json
import re

from .config import Settings
from .jobad import JobAdError, JobSpec

JOB_ID_PREFIX = "awsbatch"
#: Name of the SubmitJob parameter that carries the :class:`JobRecord`.
RECORD_PARAMETER = "awsbatchGahpJob"
#: Container overrides are capped by AWS at 8192 characters (hyp3#3041).
MAX_OVERRIDES_CHARS = 8192

_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_-]{0,255}$")


# --------------------------------------------------------------------------- job ids


def format_job_id(region: str, batch_job_id: str) -> str:
    """The id given to the gridmanager; checked so that it always parses back."""
    if not _REGION.match(region) or not _BATCH_ID.match(batch_job_id):
        raise ValueError(f"cannot make a job id of region {region!r} and Batch job {batch_job_id!r}")
    return f"{JOB_ID_PREFIX}/{region}/{batch_job_id}"


def parse_job_id(job_id: str) -> tuple[str, str]:
    """``awsbatch/<region>/<id>`` -> (region, id); ValueError with a readable message."""
    parts = job_id.split("/")
    if len(parts) != 3 or parts[0] != JOB_ID_PREFIX:
        raise ValueError(f"{job_id!r} is not an awsbatch-gahp job id (awsbatch/<region>/<batch job id>)")
    region, batch_id = parts[1], parts[2]
    if not _REGION.match(region) or not _BATCH_ID.match(batch_id):
        raise ValueError(f"{job_id!r} is not an awsbatch-gahp job id (awsbatch/<region>/<batch job id>)")
    return region, batch_id


# --------------------------------------------------------------------------- record


@dataclasses.dataclass
class JobRecord:
    """What a later GAHP process needs to finish the job on the submit host."""

    iwd: str
    stdout: str | None
    stderr: str | None
    transfer_output: list[str] = dataclasses.field(default_factory=list)
    output_remaps: dict[str, str] = dataclasses.field(default_factory=dict)
    staging_url: str | None = None  # s3://bucket/prefix/ of this submit attempt

    @classmethod
    def from_spec(cls, spec: JobSpec, staging_url: str | None = None) -> "JobRecord":
        return cls(
            iwd=spec.iwd,
            stdout=spec.stdout,
            stderr=spec.stderr,
            transfer_output=list(spec.transfer_output),
            output_remaps=dict(spec.output_remaps),
            staging_url=staging_url,
        )

    def to_parameter(self) -> str:
        data = {
            "v": 1,
            "iwd": self.iwd,
            "out": self.stdout,
            "err": self.stderr,
            "tout": self.transfer_output,
            "remaps": self.output_remaps,
            "s3": self.staging_url,
        }
        return json.dumps({k: v for k, v in data.items() if v not in (None, [], {})}, separators=(",", ":"))

    @classmethod
    def from_detail(cls, detail: dict) -> "JobRecord | None":
        """The record of a DescribeJobs ``JobDetail``, or None (a job we did not submit)."""
        raw = (detail.get("parameters") or {}).get(RECORD_PARAMETER)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                iwd=data["iwd"],
                stdout=data.get("out"),
                stderr=data.get("err"),
                transfer_output=list(data.get("tout", [])),
                output_remaps=dict(data.get("remaps", {})),
                staging_url=data.get("s3"),
            )
        except (ValueError, KeyError, TypeError):
            return None


# --------------------------------------------------------------------------- request


@dataclasses.dataclass
class Launch:
    """The container command and extra environment of a Batch job."""

    command: list[str]
    environment: dict[str, str]


def direct_launch(spec: JobSpec) -> Launch:
    """Run the job's own command in the container (no staging)."""
    command = [spec.cmd, *spec.args]
    for i, arg in enumerate(command):
        if arg == "":
            raise JobAdError(
                f"argument {i} is empty, and AWS Batch commands cannot contain empty strings; "
                "set AWSBATCH_GAHP_S3_URL so the job runs through the staging wrapper"
            )
    return Launch(command=command, environment=dict(spec.env))


def _vcpu_text(vcpus: float) -> str:
    return str(int(vcpus)) if float(vcpus).is_integer() else f"{vcpus:g}"


def build_submit_request(spec: JobSpec, settings: Settings, launch: Launch, record: JobRecord) -> dict:
    """The SubmitJob request for one grid job (raises :class:`JobAdError`)."""
    queue = spec.queue or settings.job_queue
    if not queue:
        raise JobAdError(
            "no AWS Batch job queue: set batch_queue in the submit file or "
            "AWSBATCH_GAHP_JOB_QUEUE in the HTCondor configuration"
        )
    definition = spec.job_definition or settings.job_definition
    if not definition:
        raise JobAdError(
            "no AWS Batch job definition: set +remote_JobDefinition in the submit file or "
            "AWSBATCH_GAHP_JOB_DEFINITION in the HTCondor configuration"
        )
    for name in launch.environment:
        if name.startswith("AWS_BATCH"):
            raise JobAdError(f"environment variable {name}: names starting with AWS_BATCH are reserved by AWS Batch")

    resources = []
    if spec.vcpus is not None:
        resources.append({"type": "VCPU", "value": _vcpu_text(spec.vcpus)})
    if spec.memory_mib is not None:
        resources.append({"type": "MEMORY", "value": str(int(spec.memory_mib))})
    if spec.gpus:
        resources.append({"type": "GPU", "value": str(int(spec.gpus))})

    overrides: dict = {"command": list(launch.command)}
    if launch.environment:
        overrides["environment"] = [{"name": k, "value": v} for k, v in launch.environment.items()]
    if resources:
        overrides["resourceRequirements"] = resources
    size = len(json.dumps(overrides))
    if size > MAX_OVERRIDES_CHARS:
        raise JobAdError(
            f"the job's command line and environment take {size} characters, over AWS Batch's "
            f"{MAX_OVERRIDES_CHARS}; set AWSBATCH_GAHP_S3_URL so they travel through S3"
        )

    request: dict = {
        "jobName": spec.job_name,
        "jobQueue": queue,
        "jobDefinition": definition,
        "containerOverrides": overrides,
        "parameters": {RECORD_PARAMETER: record.to_parameter()},
    }
    if spec.runtime is not None:
        request["timeout"] = {"attemptDurationSeconds": int(spec.runtime)}
    if spec.retry_attempts is not None:
        request["retryStrategy"] = {"attempts": int(spec.retry_attempts)}
    if spec.tags:
        request["tags"] = dict(spec.tags)
    return request
