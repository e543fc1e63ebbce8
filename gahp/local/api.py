"""The AWS Batch *job* API over HTTP, in front of moto.

A WSGI middleware: requests signed for the ``batch`` service whose path is
one of the job operations (botocore's ``batch/2016-08-10`` model:
``POST /v1/submitjob``, ``/v1/describejobs``, ``/v1/listjobs``,
``/v1/canceljob``, ``/v1/terminatejob``) are answered from our own job
store; every other request (entity APIs, S3, Logs, IAM, EC2, ...) goes to
moto unchanged. Errors are AWS-shaped: HTTP 400, ``x-amzn-ErrorType:
ClientException`` and ``{"__type", "message"}``, so boto3 raises
``ClientError`` with code ``ClientException``.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable, Iterable

from . import store as st
from .engine import Engine
from .entities import MotoEntities

log = logging.getLogger(__name__)

ROUTES = {
    "/v1/submitjob": "submit_job",
    "/v1/describejobs": "describe_jobs",
    "/v1/listjobs": "list_jobs",
    "/v1/canceljob": "cancel_job",
    "/v1/terminatejob": "terminate_job",
}
MAX_REASON = 1024


def credential_scope(auth: str | None) -> tuple[str, str] | None:
    """(region, service) from a SigV4 ``Authorization`` header, else None."""
    if not auth or not auth.startswith("AWS4-HMAC-SHA256"):
        return None
    try:
        cred = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
        _akid, _date, region, service, _term = cred.split("/")
    except (IndexError, ValueError):
        return None
    return region, service


def _resource(container: dict[str, Any], kind: str) -> str | None:
    for req in container.get("resourceRequirements") or []:
        if str(req.get("type", "")).upper() == kind:
            return str(req.get("value"))
    return None


class BatchJobAPI:
    """The five job operations, from request JSON to response JSON."""

    def __init__(self, engine: Engine, entities: MotoEntities, min_timeout: Callable[[], int]):
        self.engine = engine
        self.entities = entities
        self.min_timeout = min_timeout

    # ---- SubmitJob ---------------------------------------------------------------------
    def build_spec(self, body: dict[str, Any]) -> st.JobSpec:
        """Validate a SubmitJob body and resolve its queue and job definition."""
        name = body.get("jobName")
        st.validate_job_name(name)
        queue_id = body.get("jobQueue") or ""
        queue = self.entities.queue(queue_id)
        if queue is None:
            raise st.ClientError(f"Job queue {queue_id} does not exist")
        if queue.state != "ENABLED":
            raise st.ClientError(f"Job queue {queue_id} is not ENABLED")
        jd_id = body.get("jobDefinition") or ""
        jd = self.entities.job_definition(jd_id)
        if jd is None:
            raise st.ClientError(f"Job definition {jd_id} does not exist")
        cp = jd.container_properties
        if jd.type != "container" or cp is None:
            raise st.ClientError(
                f"Job definition {jd_id} is not a container job definition; the local emulator "
                "runs only container jobs")
        overrides = body.get("containerOverrides") or {}

        command = overrides.get("command")
        if command is None:
            command = cp.get("command") or []
        if any(not isinstance(a, str) or a == "" for a in command):
            raise st.ClientError("Container command must not contain empty strings")
        parameters = {**(jd.parameters or {}), **(body.get("parameters") or {})}
        command = st.substitute_parameters(list(command), parameters)

        environment = {e["name"]: str(e.get("value", "")) for e in cp.get("environment") or []}
        for entry in overrides.get("environment") or []:
            env_name = entry.get("name", "")
            if env_name.startswith("AWS_BATCH"):
                raise st.ClientError(
                    f"Environment variable names starting with AWS_BATCH are reserved: {env_name}")
            environment[env_name] = str(entry.get("value", ""))

        vcpus = _resource(overrides, "VCPU")
        if vcpus is None and overrides.get("vcpus") is not None and _resource(cp, "VCPU") is None:
            vcpus = str(overrides["vcpus"])
        vcpus = vcpus or _resource(cp, "VCPU") or cp.get("vcpus") or 1
        memory = _resource(overrides, "MEMORY")
        if memory is None and overrides.get("memory") is not None and _resource(cp, "MEMORY") is None:
            memory = str(overrides["memory"])
        memory = memory or _resource(cp, "MEMORY") or cp.get("memory")
        try:
            vcpus_f = float(vcpus)
            memory_i = int(memory) if memory is not None else None
        except (TypeError, ValueError):
            raise st.ClientError("vCPU and memory must be numbers") from None
        if vcpus_f <= 0:
            raise st.ClientError("vCPU must be positive")

        timeout = (body.get("timeout") or {}).get("attemptDurationSeconds")
        if timeout is None:
            timeout = (jd.timeout or {}).get("attemptDurationSeconds")
        if timeout is not None:
            timeout = int(timeout)
            if timeout < self.min_timeout():
                raise st.ClientError(
                    f"timeout.attemptDurationSeconds must be at least {self.min_timeout()} seconds")

        retry = body.get("retryStrategy") or jd.retry_strategy or None
        if retry:
            attempts = int(retry.get("attempts") or 1)
            if not 1 <= attempts <= 10:
                raise st.ClientError("retryStrategy.attempts must be between 1 and 10")
            if len(retry.get("evaluateOnExit") or []) > 5:
                raise st.ClientError("retryStrategy.evaluateOnExit accepts at most 5 rules")

        depends_on = list(body.get("dependsOn") or [])
        if len(depends_on) > st.MAX_DEPENDS_ON:
            raise st.ClientError(f"Job cannot have more than {st.MAX_DEPENDS_ON} dependencies")
        array_size = None
        if body.get("arrayProperties"):
            array_size = body["arrayProperties"].get("size")
            if array_size is not None:
                array_size = int(array_size)
                if not 2 <= array_size <= st.MAX_ARRAY_SIZE:
                    raise st.ClientError(
                        f"Array size must be between 2 and {st.MAX_ARRAY_SIZE}, got {array_size}")
        tags = dict(body.get("tags") or {})
        if len(tags) > 50:
            raise st.ClientError("A job can have at most 50 tags")

        extra = {k: v for k, v in cp.items()
                 if k in ("jobRoleArn", "executionRoleArn", "volumes", "mountPoints", "ulimits",
                          "secrets", "resourceRequirements", "logConfiguration", "user",
                          "privileged", "readonlyRootFilesystem")}
        if overrides.get("resourceRequirements"):
            extra["resourceRequirements"] = overrides["resourceRequirements"]
        return st.JobSpec(
            name=name, queue_name=queue.name, queue_arn=queue.arn, ce_order=queue.ce_names,
            jobdef_name=jd.name, jobdef_arn=jd.arn, command=command, environment=environment,
            vcpus=vcpus_f, memory=memory_i, image=cp.get("image", ""), container_extra=extra,
            parameters=parameters, tags=tags, timeout=timeout, retry_strategy=retry,
            depends_on=depends_on, array_size=array_size,
            propagate_tags=body.get("propagateTags"),
        )

    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = self.build_spec(body)
        rec = self.engine.submit(spec)
        log.info("submitted job %s (%s): %s", rec.job_id, spec.name, spec.command)
        return {"jobArn": rec.arn, "jobName": spec.name, "jobId": rec.job_id}

    # ---- the rest ----------------------------------------------------------------------------
    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("jobs")
        if not isinstance(ids, list):
            raise st.ClientError("jobs is a required list")
        with self.engine.cond:
            return {"jobs": self.engine.store.describe_many([str(i) for i in ids])}

    def list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        sources = [k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if body.get(k)]
        if len(sources) != 1:
            raise st.ClientError("Exactly one of jobQueue, arrayJobId or multiNodeJobId is required")
        queue_arn = None
        if body.get("multiNodeJobId"):
            return {"jobSummaryList": []}
        if body.get("jobQueue"):
            queue = self.entities.queue(body["jobQueue"])
            if queue is None:
                raise st.ClientError(f"Job queue {body['jobQueue']} does not exist")
            queue_arn = queue.arn
        with self.engine.cond:
            jobs, token = self.engine.store.list_jobs(
                queue_arn=queue_arn, array_job_id=body.get("arrayJobId"),
                status=body.get("jobStatus"), filters=body.get("filters"),
                max_results=body.get("maxResults"), next_token=body.get("nextToken"))
        out: dict[str, Any] = {"jobSummaryList": jobs}
        if token:
            out["nextToken"] = token
        return out

    @staticmethod
    def _id_and_reason(body: dict[str, Any]) -> tuple[str, str]:
        job_id, reason = body.get("jobId") or "", body.get("reason") or ""
        if not job_id:
            raise st.ClientError("'jobId' is a required field (cannot be an empty string)")
        if not reason:
            raise st.ClientError("'reason' is a required field (cannot be an empty string)")
        if len(reason) > MAX_REASON:
            raise st.ClientError(f"reason must be at most {MAX_REASON} characters")
        return job_id, reason

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """CancelJob: 200 even when nothing happens (started, finished or unknown job).

        AWS answers 200 ``{}`` for an id it does not know (aws/aws-cli#2551), and
        for a STARTING/RUNNING job it succeeds without cancelling it.
        """
        self.engine.cancel(*self._id_and_reason(body))
        return {}

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """TerminateJob: 200 also for finished and unknown ids, as AWS (aws/aws-cli#2551)."""
        self.engine.terminate(*self._id_and_reason(body))
        return {}


class BatchMiddleware:
    """WSGI app: our job operations for ``batch``-signed requests, moto for the rest."""

    def __init__(self, api: BatchJobAPI, fallback: Callable[..., Iterable[bytes]]):
        self.api = api
        self.fallback = fallback

    @property
    def region(self) -> str:
        return self.api.engine.store.region

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        scope = credential_scope(environ.get("HTTP_AUTHORIZATION"))
        if scope is not None and scope[1] == "batch" and scope[0] != self.region:
            # jobs run only in the emulator's region: never answer (even entity calls, which
            # moto would serve from another, empty region) for a different one
            return self._reply(start_response, "400 Bad Request", {
                "__type": "ClientException",
                "message": f"this local AWS Batch serves only {self.region}, not {scope[0]}"},
                "ClientException", str(uuid.uuid4()))
        op = ROUTES.get(path.rstrip("/"))
        if op and environ.get("REQUEST_METHOD") == "POST":
            if scope is not None and scope[1] == "batch":
                return self._handle(op, environ, start_response)
        return self.fallback(environ, start_response)

    @staticmethod
    def _reply(start_response: Callable[..., Any], status: str, payload: dict[str, Any],
               kind: str | None, request_id: str) -> list[bytes]:
        data = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                   ("x-amzn-RequestId", request_id)]
        if kind:
            headers.append(("x-amzn-ErrorType", kind))
        start_response(status, headers)
        return [data]

    def _handle(self, op: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        request_id = str(uuid.uuid4())
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise st.ClientError("request body must be a JSON object")
            status, payload, kind = "200 OK", getattr(self.api, op)(body), None
        except st.ClientError as exc:
            status, payload, kind = "400 Bad Request", {"__type": "ClientException",
                                                        "message": str(exc)}, "ClientException"
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            status, payload, kind = "400 Bad Request", {"__type": "ClientException",
                                                        "message": f"Invalid request: {exc}"}, \
                "ClientException"
        except Exception as exc:  # noqa: BLE001 - report as the service would
            log.exception("%s failed", op)
            status, payload, kind = "500 Internal Server Error", {"__type": "ServerException",
                                                                  "message": str(exc)}, \
                "ServerException"
        return self._reply(start_response, status, payload, kind, request_id)
