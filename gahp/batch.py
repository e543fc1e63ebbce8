"""The one adapter between the GAHP and AWS (Batch, CloudWatch Logs, S3), over boto3.

Everything that talks to AWS lives here, behind a small interface the service layer
and the tests use.  Throttling (HTTP 429 ``TooManyRequestsException``) is botocore's
job: the clients use its ``adaptive`` retry mode, which backs off with jitter and
rate-limits the client side, instead of a hand-written retry loop.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable

from .config import Settings

log = logging.getLogger(__name__)

#: DescribeJobs takes at most 100 job ids per call.
DESCRIBE_CHUNK = 100
DEFAULT_LOG_GROUP = "/aws/batch/job"


class AWSError(Exception):
    """An AWS call failed; the message is meant for a user (hold reason, ping error)."""


GAHP_CREDENTIALS_HINT = "configure ~/.aws/credentials for the job owner, AWSBATCH_GAHP_PROFILE, or an instance role"


def describe_error(exc: BaseException, credentials_hint: str = GAHP_CREDENTIALS_HINT) -> str:
    """A short, actionable text for a boto3/botocore exception."""
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError,
                                     NoRegionError)

    if isinstance(exc, AWSError):
        return str(exc)
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'ClientError')}: {err.get('Message', str(exc))}"
    if isinstance(exc, NoCredentialsError):
        return f"no AWS credentials found: {credentials_hint}"
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWSBATCH_GAHP_REGION (or a region in ~/.aws/config)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS: {exc}"
    if isinstance(exc, BotoCoreError):
        return f"cannot talk to AWS: {exc}"
    return f"{type(exc).__name__}: {exc}"


def read_log_stream(logs_client, group: str, stream: str) -> list[str] | None:
    """Every event of one CloudWatch Logs stream, oldest first, or None if it does not exist.

    Pages with ``startFromHead`` until ``nextForwardToken`` repeats (the documented end)."""
    lines: list[str] = []
    token = None
    while True:
        kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        try:
            page = logs_client.get_log_events(**kwargs)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        lines.extend(event.get("message", "") for event in page.get("events", []))
        next_token = page.get("nextForwardToken")
        if not next_token or next_token == token:
            return lines
        token = next_token


class BatchBackend:
    """boto3 clients for one region/profile/endpoint, created lazily and shared by threads."""

    def __init__(self, settings: Settings, *, region: str | None = None):
        self.settings = settings
        self._region = region or settings.region
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, bool], object] = {}
        self._session = None

    # ------------------------------------------------------------------ plumbing
    def _get_session(self):
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(profile_name=self.settings.profile, region_name=self._region)
        return self._session

    @property
    def region(self) -> str:
        with self._lock:
            region = self._get_session().region_name
        if not region:
            raise AWSError("no AWS region: set AWSBATCH_GAHP_REGION (or a region in ~/.aws/config)")
        return region

    def client(self, service: str, *, quick: bool = False):
        """A shared client.  ``quick`` ones (for ping) give up after one retry, so an
        unreachable endpoint is reported in seconds rather than after a long backoff."""
        key = (service, quick)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": 2} if quick else {"mode": "adaptive", "max_attempts": 8},
                    max_pool_connections=max(10, self.settings.workers + 4),
                    connect_timeout=5 if quick else 10,
                    read_timeout=20 if quick else 60,
                )
                client = self._get_session().client(
                    service, endpoint_url=self.settings.endpoint_url, config=config
                )
                self._clients[key] = client
            return client

    @property
    def batch(self):
        return self.client("batch")

    # ------------------------------------------------------------------ Batch
    def submit_job(self, request: dict) -> str:
        return self.batch.submit_job(**request)["jobId"]

    def find_active_job(self, queue: str, job_name: str) -> str | None:
        """The newest not-yet-finished job with this exact name in the queue, if any."""
        response = self.batch.list_jobs(
            jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
        )
        active = [
            s for s in response.get("jobSummaryList", [])
            if s.get("jobName") == job_name and s.get("status") not in ("SUCCEEDED", "FAILED")
        ]
        if not active:
            return None
        return max(active, key=lambda s: s.get("createdAt", 0))["jobId"]

    def describe_jobs(self, job_ids: Iterable[str]) -> dict[str, dict]:
        """``JobDetail`` by job id, in DescribeJobs calls of at most 100 ids each."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, dict] = {}
        for start in range(0, len(ids), DESCRIBE_CHUNK):
            chunk = ids[start:start + DESCRIBE_CHUNK]
            for detail in self.batch.describe_jobs(jobs=chunk).get("jobs", []):
                found[detail["jobId"]] = detail
        return found

    def terminate_job(self, job_id: str, reason: str) -> None:
        self.batch.terminate_job(jobId=job_id, reason=reason[:1024])

    def check_queue(self, queue: str | None) -> str | None:
        """None when the queue is usable, else a reason; raises on AWS errors."""
        batch = self.client("batch", quick=True)
        if not queue:
            batch.describe_job_queues(maxResults=1)
            return None
        queues = batch.describe_job_queues(jobQueues=[queue]).get("jobQueues", [])
        if not queues:
            return f"AWS Batch job queue {queue!r} does not exist in {self.region}"
        q = queues[0]
        if q.get("state") != "ENABLED" or q.get("status") not in ("VALID", "UPDATING"):
            return (f"AWS Batch job queue {queue!r} is {q.get('state')}/{q.get('status')}: "
                    f"{q.get('statusReason') or 'not accepting jobs'}")
        return None

    # ------------------------------------------------------------------ logs
    def read_job_log(self, detail: dict) -> list[str] | None:
        """Every line of the job's CloudWatch Logs stream (all pages), or None if absent."""
        container = detail.get("container") or {}
        stream = container.get("logStreamName")
        if not stream:
            for attempt in reversed(detail.get("attempts") or []):
                stream = (attempt.get("container") or {}).get("logStreamName")
                if stream:
                    break
        if not stream:
            return None
        options = ((container.get("logConfiguration") or {}).get("options")) or {}
        return read_log_stream(self.client("logs"), options.get("awslogs-group", DEFAULT_LOG_GROUP), stream)
