"""The GAHP's settings, read as HTCondor configuration knobs (interface.md §3).

Knobs come through ``htcondor2.param``, so ``condor_config``/``condor_config.d`` and
``_CONDOR_<KNOB>`` environment variables both work, and with no HTCondor configuration
at all (``CONDOR_CONFIG=ONLY_ENV``) the environment variables alone are enough.
"""

from __future__ import annotations

import dataclasses
import os

KNOB_PREFIX = "AWSBATCH_GAHP_"

DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_WORKERS = 32

#: Documented knobs, with one line each; the README table and the shipped
#: condor_config.d snippet say the same.
KNOBS = {
    "REGION": "AWS region (default: the AWS SDK's own chain)",
    "PROFILE": "named profile in ~/.aws/credentials / ~/.aws/config",
    "ENDPOINT_URL": "one endpoint URL for every AWS service (the local emulator, VPC endpoints)",
    "JOB_QUEUE": "job queue name or ARN for jobs that name none (batch_queue)",
    "JOB_DEFINITION": "job definition name, name:revision or ARN for jobs that name none",
    "S3_URL": "staging prefix s3://bucket/prefix; unset = no staging, output from CloudWatch Logs",
    "POLL_INTERVAL": f"seconds between batched status sweeps (default {DEFAULT_POLL_INTERVAL:g})",
    "LOG": "the GAHP's own log file (default: stderr, copied into the GridmanagerLog)",
    "WORKERS": f"threads doing AWS work for pipelined requests (default {DEFAULT_WORKERS})",
    "KEEP_STAGING": "keep a job's S3 prefix after a successful stage-out (default false)",
    "STATE_DIR": "where final job states are remembered (default ~/.local/state/awsbatch-gahp)",
    "NOT_FOUND_GRACE": "seconds a just-submitted job may be missing from DescribeJobs (default 120)",
    "UPDATE_JOB_AD": "write the native Batch state into the schedd's job ad (default false)",
}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on", "t", "y"}


def _lookup(name: str) -> str | None:
    """One knob through the HTCondor bindings; ``_CONDOR_`` variables as the fallback."""
    knob = KNOB_PREFIX + name
    try:
        import htcondor2

        value = htcondor2.param.get(knob)
    except Exception:  # no usable configuration at all: environment only
        value = os.environ.get("_CONDOR_" + knob)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


@dataclasses.dataclass
class Settings:
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    job_queue: str | None = None
    job_definition: str | None = None
    s3_url: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    log: str | None = None
    workers: int = DEFAULT_WORKERS
    keep_staging: bool = False
    state_dir: str | None = None
    not_found_grace: float = 120.0
    update_job_ad: bool = False

    @classmethod
    def from_condor_config(cls) -> "Settings":
        """Read every knob; a malformed number is reported, not silently defaulted."""
        raw = {name: _lookup(name) for name in KNOBS}

        def number(name: str, default: float, minimum: float) -> float:
            text = raw[name]
            if text is None:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{KNOB_PREFIX}{name} = {text!r} is not a number") from None
            return max(value, minimum)

        return cls(
            region=raw["REGION"],
            profile=raw["PROFILE"],
            endpoint_url=raw["ENDPOINT_URL"],
            job_queue=raw["JOB_QUEUE"],
            job_definition=raw["JOB_DEFINITION"],
            s3_url=raw["S3_URL"],
            poll_interval=number("POLL_INTERVAL", DEFAULT_POLL_INTERVAL, 0.1),
            log=raw["LOG"],
            workers=int(number("WORKERS", DEFAULT_WORKERS, 2)),
            keep_staging=_truthy(raw["KEEP_STAGING"]),
            state_dir=raw["STATE_DIR"],
            not_found_grace=number("NOT_FOUND_GRACE", 120.0, 0.0),
            update_job_ad=_truthy(raw["UPDATE_JOB_AD"]),
        )

    def resolved_state_dir(self) -> str:
        if self.state_dir:
            return self.state_dir
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return os.path.join(base, "awsbatch-gahp")
