"""LocalBatch: moto plus our job runner behind one loopback HTTP endpoint."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from .api import BatchJobAPI, BatchMiddleware
from .engine import Engine
from .entities import LocalEntities, MotoEntities, account_id, create_default_entities

log = logging.getLogger(__name__)

TEST_KEY = "testing"


class LocalBatch:
    """An AWS Batch that runs jobs as local processes, plus moto's other AWS APIs.

    ``port=0`` picks a free port. ``workdir`` holds the per-attempt job
    directories (a temporary directory, removed on ``stop``, when None).
    ``state_delay`` (seconds) slows every SUBMITTED/PENDING/RUNNABLE/STARTING
    step down for demos and for observing states; ``min_timeout_seconds`` is
    AWS's 60 s floor on ``attemptDurationSeconds`` (tests lower it);
    ``kill_grace`` is the SIGTERM-to-SIGKILL delay of TerminateJob and timeouts.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", region: str = "us-east-1",
                 workdir: str | None = None, *, state_delay: float = 0.0,
                 min_timeout_seconds: int = 60, kill_grace: float = 2.0):
        self.host = host
        self.port = port
        self.region = region
        self.account_id = account_id()
        self.min_timeout_seconds = min_timeout_seconds
        self._own_workdir = workdir is None
        self.workdir = workdir
        self._state_delay = state_delay
        self._kill_grace = kill_grace
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._s3: Any = None
        self._session: Any = None
        self._s3_lock = threading.Lock()
        self.engine: Engine | None = None

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> "LocalBatch":
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="awsbatch-local-")
        os.makedirs(self.workdir, exist_ok=True)
        entities = MotoEntities(self.account_id, self.region)
        self.engine = Engine(self.region, self.account_id, self.workdir, entities.ce_limits,
                             self._fetch_s3, self.client_env, state_delay=self._state_delay,
                             kill_grace=self._kill_grace)
        api = BatchJobAPI(self.engine, entities, lambda: self.min_timeout_seconds)
        app = BatchMiddleware(api, DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self.host, self.port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-batch-http",
                                        daemon=True)
        self._thread.start()
        self.engine.start()
        log.info("local AWS Batch listening on %s (jobs in %s)", self.endpoint_url, self.workdir)
        return self

    def stop(self) -> None:
        """Stop serving, kill every job's process group, join all threads."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self.engine is not None:
            self.engine.stop()
        if self._own_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        log.info("local AWS Batch stopped")

    def __enter__(self) -> "LocalBatch":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- settings -------------------------------------------------------------------------------
    @property
    def state_delay(self) -> float:
        return self.engine.state_delay if self.engine else self._state_delay

    @state_delay.setter
    def state_delay(self, value: float) -> None:
        self._state_delay = value
        if self.engine is not None:
            self.engine.state_delay = value

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for AWS SDKs/CLI (and for jobs) to reach this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": TEST_KEY,
            "AWS_SECRET_ACCESS_KEY": TEST_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, service: str) -> Any:
        """A boto3 client for this emulator (one shared session: model loading is slow)."""
        import boto3

        with self._s3_lock:
            if self._session is None:
                self._session = boto3.session.Session()
            return self._session.client(
                service, endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id=TEST_KEY, aws_secret_access_key=TEST_KEY)

    def create_default_entities(self, prefix: str = "local", max_vcpus: int = 8) -> LocalEntities:
        return create_default_entities(self.client, prefix=prefix, max_vcpus=max_vcpus)

    def job_pids(self, job_id: str) -> list[int]:
        """Live pids in the job's current process group (empty when not running)."""
        return self.engine.pids(job_id) if self.engine else []

    # ---- helpers ------------------------------------------------------------------------------------
    def _fetch_s3(self, url: str) -> bytes:
        """Read ``s3://bucket/key`` from the emulated S3 (fetch-and-run)."""
        bucket, _, key = url[len("s3://"):].partition("/")
        if self._s3 is None:
            self._s3 = self.client("s3")
        s3 = self._s3
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
