"""Running a bag of tasks: ``.in`` files -> S3 staging -> array / single jobs -> logs -> records.

The tasks of one ``.in`` file are independent.  Tasks of one file that share the job definition
and the job queue become **one array job** (one SubmitJob for up to 10,000 tasks); a group of one
task becomes a single job.  Every job runs :mod:`gahp.pegasus.launcher`, which finds its task's
description in S3 by array index.

Status is read with DescribeJobs in chunks of at most 100 IDs: the array parents (whose
``arrayProperties.statusSummary`` shows progress) and single jobs while they run, and the
children once their parent is final.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Optional

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from . import EXIT_NON_TASK_FAILURE, EXIT_OK, EXIT_TASK_FAILURE, PegasusAWSBatchError, StopFlag
from .entities import INTERNAL_DIR, BucketEntity, delete_prefix
from .launcher import LAUNCHER, LAUNCHER_NAME, task_script
from .logs import cluster_summary_record, cluster_task_record, task_logs, write_text

log = logging.getLogger("pegasus-aws-batch")

FINAL = ("SUCCEEDED", "FAILED")
MAX_ARRAY = 10000
DESCRIBE_CHUNK = 100

#: a job DescribeJobs does not return is given up only after MISSING_GRACE seconds since its
#: submission, then MISSING_POLLS consecutive misses spanning at least MISSING_TIME seconds
#: (finished jobs age out of DescribeJobs; a fresh one can lag right after SubmitJob)
MISSING_GRACE = 60.0
MISSING_POLLS = 5
MISSING_TIME = 30.0

#: what an S3 or file problem while staging looks like (boto3's S3UploadFailedError is a
#: Boto3Error, not a botocore one)
AWS_ERRORS = (ClientError, BotoCoreError, Boto3Error)


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


@dataclass
class Task:
    seq: int
    name: str
    executable: str
    arguments: str = ""
    environment: list = field(default_factory=list)      # [(name, value)]
    job_definition: Optional[str] = None
    job_queue: Optional[str] = None
    source: str = ""
    # filled in while running
    unit: Optional["Unit"] = None
    index: int = 0
    job_id: Optional[str] = None
    state: str = "unsubmitted"
    exit_code: Optional[int] = None
    reason: Optional[str] = None

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


@dataclass
class Unit:
    """One SubmitJob: an array job or a single job."""
    key: int
    tasks: list
    job_definition: str
    job_queue: str
    job_id: Optional[str] = None
    status: Optional[str] = None
    summary: dict = field(default_factory=dict)
    submitted_at: Optional[float] = None   # monotonic clock
    misses: int = 0                        # consecutive polls without a record
    first_miss: Optional[float] = None

    @property
    def is_array(self) -> bool:
        return len(self.tasks) > 1


def _ci(d: dict, *names, default=None):
    lower = {str(k).lower(): v for k, v in d.items()}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return default


def _env_pairs(env) -> list:
    if env is None:
        return []
    if isinstance(env, dict):
        return [(str(k), "" if v is None else str(v)) for k, v in env.items()]
    pairs = []
    for item in env:
        name = _ci(item, "name")
        if name is None:
            continue
        value = _ci(item, "value", default="")
        pairs.append((str(name), "" if value is None else str(value)))
    return pairs


def read_tasks(paths: list) -> list:
    """Tasks from one or more ``{"SubmitJob": [...]}`` files, numbered 1..N in file order."""
    tasks: list = []
    seq = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise PegasusAWSBatchError(f"cannot read job file {path}: {exc}")
        entries = _ci(data, "SubmitJob") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise PegasusAWSBatchError(f"{path}: expected {{\"SubmitJob\": [ ... ]}}")
        for entry in entries:
            seq += 1
            name = _ci(entry, "jobName", "name") or f"task{seq}"
            exe = _ci(entry, "executable")
            if not exe:
                raise PegasusAWSBatchError(f"{path}: task {name} has no executable")
            args = _ci(entry, "arguments", default="")
            if isinstance(args, list):   # tolerate a list, keep one argv element
                args = " ".join(str(a) for a in args)
            tasks.append(Task(seq=seq, name=str(name), executable=str(exe),
                              arguments=str(args or ""),
                              environment=_env_pairs(_ci(entry, "environment")),
                              job_definition=_ci(entry, "jobDefinition"),
                              job_queue=_ci(entry, "jobQueue"), source=path))
    return tasks


def aws_name(text: str) -> str:
    """A valid Batch job name (letters, digits, - and _, first alphanumeric, <= 128)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    if not name or not name[0].isalnum():
        name = "j" + name
    return name[:128]


class BagRunner:
    def __init__(self, clients, prefix: str, bucket: BucketEntity, job_definition: Optional[str],
                 job_queue: Optional[str], files: Optional[list] = None,
                 merge_logs: Optional[str] = None, workdir: Optional[str] = None,
                 poll_interval: Optional[float] = None, max_poll_interval: float = 5.0,
                 progress=None, stop: Optional[StopFlag] = None,
                 missing_grace: Optional[float] = None, missing_polls: Optional[int] = None,
                 missing_time: Optional[float] = None, clock=time.monotonic):
        self.c = clients
        self.prefix = prefix
        self.bucket = bucket
        self.job_definition = job_definition
        self.job_queue = job_queue
        self.files = [f for f in (files or []) if f]
        self.merge_logs = merge_logs
        if merge_logs:
            self.outdir = os.path.dirname(os.path.abspath(merge_logs))
        else:
            self.outdir = os.path.abspath(workdir or os.getcwd())
        env_poll = os.environ.get("PEGASUS_AWS_BATCH_POLL_INTERVAL")
        self.poll = float(poll_interval if poll_interval is not None else (env_poll or 0.5))
        max_poll_interval = float(os.environ.get("PEGASUS_AWS_BATCH_MAX_POLL_INTERVAL",
                                                 max_poll_interval))
        self.max_poll = max(self.poll, max_poll_interval)
        self.progress = progress          # callable(str) for human-readable progress
        self.units: list = []
        self.tasks: list = []
        self.jobstate_path = os.path.join(self.outdir, f"{prefix}.jobstate.log")
        self.stop = stop if stop is not None else StopFlag()
        env = os.environ.get
        self.missing_grace = float(missing_grace if missing_grace is not None
                                   else env("PEGASUS_AWS_BATCH_MISSING_GRACE", MISSING_GRACE))
        self.missing_polls = int(missing_polls if missing_polls is not None
                                 else env("PEGASUS_AWS_BATCH_MISSING_POLLS", MISSING_POLLS))
        self.missing_time = float(missing_time if missing_time is not None
                                  else env("PEGASUS_AWS_BATCH_MISSING_TIME", MISSING_TIME))
        self.clock = clock
        self.errors: list = []

    # ------------------------------------------------------------------ helpers
    @property
    def base_url(self) -> str:
        return f"s3://{self.bucket.bucket}/{self.bucket.key_prefix}".rstrip("/")

    @property
    def internal_key(self) -> str:
        return f"{self.bucket.key_prefix}{INTERNAL_DIR}/{self.prefix}/"

    def check_stop(self):
        """Raise :class:`Interrupted` once a signal has been received (checked between steps)."""
        if self.stop.is_set():
            raise Interrupted(self.stop.signum)

    def _say(self, msg: str):
        log.info(msg)
        if self.progress:
            self.progress(msg)

    def _jobstate(self, name: str, state: str, job_id: Optional[str]):
        with open(self.jobstate_path, "a", encoding="utf-8") as fh:
            fh.write(f"{int(time.time() * 1000)} {name} {state.upper()} {job_id or '-'}\n")

    # ------------------------------------------------------------------ staging
    def stage(self):
        s3 = self.c.s3
        uploaded: dict = {}

        def upload(path: str) -> str:
            path = os.path.expanduser(path.strip())
            base = os.path.basename(path)
            if path in uploaded:
                return base
            self.check_stop()
            if not os.path.isfile(path):
                raise PegasusAWSBatchError(f"input file {path} does not exist")
            key = f"{self.bucket.key_prefix}{base}"
            s3.upload_file(path, self.bucket.bucket, key)
            uploaded[path] = key
            log.debug("uploaded %s to s3://%s/%s", path, self.bucket.bucket, key)
            return base

        common = [upload(f) for f in self.files]
        for t in self.tasks:
            env = dict(t.environment)
            names = []
            tif = env.get("TRANSFER_INPUT_FILES", "")
            for f in [x for x in tif.split(",") if x.strip()]:
                names.append(upload(f))
            for n in common:
                if n not in names:
                    names.append(n)
            env["PEGASUS_AWS_BATCH_BUCKET"] = self.base_url
            env["PEGASUS_JOB_NAME"] = t.name
            if names or "TRANSFER_INPUT_FILES" in env:
                env["TRANSFER_INPUT_FILES"] = ",".join(names)
            t.environment = list(env.items())

        s3.put_object(Bucket=self.bucket.bucket, Key=self.internal_key + LAUNCHER_NAME,
                      Body=LAUNCHER.encode())

    def plan_units(self):
        groups: dict = {}
        for t in self.tasks:
            jd = t.job_definition or self.job_definition
            jq = t.job_queue or self.job_queue
            if not jd:
                raise PegasusAWSBatchError("no job definition: give --job-definition or "
                                           "pegasus.aws.batch.job_definition")
            if not jq:
                raise PegasusAWSBatchError("no job queue")
            groups.setdefault((t.source, jd, jq), []).append(t)
        key = 0
        for (_, jd, jq), tasks in groups.items():
            for i in range(0, len(tasks), MAX_ARRAY):
                chunk = tasks[i:i + MAX_ARRAY]
                unit = Unit(key=key, tasks=chunk, job_definition=jd, job_queue=jq)
                for idx, t in enumerate(chunk):
                    t.unit, t.index = unit, idx
                self.units.append(unit)
                key += 1

    def unit_url(self, unit: Unit) -> str:
        return f"s3://{self.bucket.bucket}/{self.internal_key}unit-{unit.key}"

    def upload_task_descriptions(self):
        for unit in self.units:
            for t in unit.tasks:
                self.check_stop()
                text, skipped = task_script(t.name, t.executable, t.arguments, t.environment)
                if skipped:
                    log.warning("task %s: environment names not passed: %s", t.name,
                                ", ".join(skipped))
                self.c.s3.put_object(
                    Bucket=self.bucket.bucket,
                    Key=f"{self.internal_key}unit-{unit.key}/task-{t.index}.sh",
                    Body=text.encode())

    # ------------------------------------------------------------------ submit
    def submit(self, unit: Unit):
        env = [
            {"name": "BATCH_FILE_TYPE", "value": "script"},
            {"name": "BATCH_FILE_S3_URL",
             "value": f"s3://{self.bucket.bucket}/{self.internal_key}{LAUNCHER_NAME}"},
            {"name": "PEGASUS_AWS_BATCH_CLUSTER_URL", "value": self.unit_url(unit)},
            {"name": "PEGASUS_AWS_BATCH_BUCKET", "value": self.base_url},
        ]
        req = {
            "jobQueue": unit.job_queue,
            "jobDefinition": unit.job_definition,
            "containerOverrides": {"command": [LAUNCHER_NAME], "environment": env},
        }
        if unit.is_array:
            suffix = f"-{unit.key}" if len(self.units) > 1 else ""
            req["jobName"] = aws_name(f"{self.prefix}{suffix}")
            req["arrayProperties"] = {"size": len(unit.tasks)}
        else:
            req["jobName"] = aws_name(unit.tasks[0].name)
            env.append({"name": "PEGASUS_AWS_BATCH_TASK_INDEX", "value": "0"})
            env.append({"name": "PEGASUS_JOB_NAME", "value": unit.tasks[0].name})
        resp = self.c.batch.submit_job(**req)
        unit.job_id = resp["jobId"]
        unit.status = "SUBMITTED"
        unit.submitted_at = self.clock()
        for t in unit.tasks:
            t.job_id = f"{unit.job_id}:{t.index}" if unit.is_array else unit.job_id
            t.state = "submitted"
            self._jobstate(t.name, "submitted", t.job_id)
        kind = f"array job of {len(unit.tasks)} tasks" if unit.is_array else \
            f"job for task {unit.tasks[0].name}"
        self._say(f"submitted {kind}: {unit.job_id}")

    # ------------------------------------------------------------------ monitor
    def _describe(self, ids: list) -> dict:
        out = {}
        for i in range(0, len(ids), DESCRIBE_CHUNK):
            r = self.c.batch.describe_jobs(jobs=ids[i:i + DESCRIBE_CHUNK])
            for j in r.get("jobs", []):
                out[j["jobId"]] = j
        return out

    def _finish_task(self, t: Task, detail: Optional[dict]):
        if detail is None:
            t.state = "failed"
            t.reason = "job record not found"
        else:
            t.state = detail.get("status", "FAILED").lower()
            t.reason = detail.get("statusReason")
            code = (detail.get("container") or {}).get("exitCode")
            if code is None:
                for att in detail.get("attempts") or []:
                    c = (att.get("container") or {}).get("exitCode")
                    if c is not None:
                        code = c
            t.exit_code = code
        self._jobstate(t.name, t.state, t.job_id)
        out, err, found = ("", "", False)
        interrupted = self.stop.is_set()
        if detail is not None and not interrupted:
            try:
                out, err, found = task_logs(self.c.logs, detail, sleep=self._sleep)
            except Exception as exc:  # noqa: BLE001 - logs are best effort
                log.warning("task %s: could not fetch logs: %s", t.name, exc)
        if t.exit_code is None:
            m = re.search(r"pegasus-aws-batch-launcher: task .* exitcode (-?\d+)", err)
            if m:
                t.exit_code = int(m.group(1))
        if interrupted:
            err += (f"pegasus-aws-batch: logs of task {t.name} ({t.job_id}) not fetched: "
                    f"{self.stop.message}; status {t.state}: {t.reason or '-'}\n")
        elif not found:
            err += (f"pegasus-aws-batch: no log stream found for task {t.name} "
                    f"({t.job_id}); status {t.state}: {t.reason or '-'}\n")
        record = cluster_task_record(t.seq, t.name, t.job_id, t.state, t.succeeded, t.executable)
        write_text(os.path.join(self.outdir, f"{t.name}.out"), out + record + "\n")
        write_text(os.path.join(self.outdir, f"{t.name}.err"), err)
        if not self.merge_logs:
            print(record, flush=True)
        self._say(f"task {t.name} {t.state}"
                  + (f" (exit code {t.exit_code})" if t.exit_code not in (None, 0) else ""))

    def _sleep(self, seconds: float):
        """A sleep that ends early on a signal (log retries, backoff)."""
        self.stop.wait(seconds)

    def _missing(self, u: Unit) -> bool:
        """Count a poll without a record for ``u``; True once it is given up: after the grace
        time since submission, ``missing_polls`` consecutive misses over ``missing_time`` s."""
        now = self.clock()
        if u.submitted_at is not None and now - u.submitted_at < self.missing_grace:
            return False      # can lag right after submission
        u.misses += 1
        if u.first_miss is None:
            u.first_miss = now
        return u.misses >= self.missing_polls and now - u.first_miss >= self.missing_time

    def monitor(self):
        delay = self.poll
        pending = [u for u in self.units if u.job_id]
        while pending:
            if self.stop.wait(delay):
                raise Interrupted(self.stop.signum)
            delay = min(delay * 1.5, self.max_poll)
            details = self._describe([u.job_id for u in pending])
            still = []
            for u in pending:
                d = details.get(u.job_id)
                if d is None:
                    if self._missing(u):
                        msg = (f"job {u.job_id}: job record not found by DescribeJobs "
                               f"({u.misses} polls); its tasks count as failed")
                        log.error(msg)
                        self.errors.append(msg)
                        u.status = "FAILED"
                        for t in u.tasks:
                            self._finish_task(t, None)
                    else:
                        still.append(u)
                    continue
                u.misses, u.first_miss = 0, None
                status = d.get("status")
                if status != u.status:
                    u.status = status
                    if u.is_array:
                        self._jobstate(f"{self.prefix}-array-{u.key}", status, u.job_id)
                    elif status not in FINAL:
                        u.tasks[0].state = status.lower()
                        self._jobstate(u.tasks[0].name, status, u.job_id)
                summary = (d.get("arrayProperties") or {}).get("statusSummary")
                if summary and summary != u.summary:
                    u.summary = summary
                    done = summary.get("SUCCEEDED", 0) + summary.get("FAILED", 0)
                    self._say(f"array {u.job_id}: {done}/{len(u.tasks)} done "
                              f"({summary.get('RUNNING', 0)} running, "
                              f"{summary.get('FAILED', 0)} failed)")
                if status in FINAL:
                    if u.is_array:
                        kids = self._describe([t.job_id for t in u.tasks])
                        for t in u.tasks:
                            self._finish_task(t, kids.get(t.job_id))
                    else:
                        self._finish_task(u.tasks[0], d)
                else:
                    still.append(u)
            pending = still

    # ------------------------------------------------------------------ terminate
    def terminate_all(self, reason: str):
        for u in self.units:
            if u.job_id and u.status not in FINAL:
                try:
                    self.c.batch.terminate_job(jobId=u.job_id, reason=reason)
                    self._say(f"terminated {u.job_id}")
                except AWS_ERRORS as exc:
                    log.error("terminating %s: %s", u.job_id, exc)
        for t in self.tasks:
            if t.state not in ("succeeded", "failed"):
                t.state = "failed"
                t.reason = reason

    # ------------------------------------------------------------------ merge
    def merge(self, start: float) -> tuple:
        n = len(self.tasks)
        ok = sum(1 for t in self.tasks if t.succeeded)
        failed = n - ok
        summary = cluster_summary_record(n, ok, failed, time.time() - start, start)
        if self.merge_logs:
            outp, errp = self.merge_logs + ".out", self.merge_logs + ".err"
            with open(outp, "w", encoding="utf-8") as out, open(errp, "w", encoding="utf-8") as err:
                for t in self.tasks:
                    for suffix, fh in ((".out", out), (".err", err)):
                        path = os.path.join(self.outdir, t.name + suffix)
                        if os.path.exists(path):
                            with open(path, encoding="utf-8") as src:
                                fh.write(src.read())
                            os.unlink(path)
                        elif suffix == ".out":
                            fh.write(cluster_task_record(t.seq, t.name, t.job_id, t.state,
                                                         t.succeeded, t.executable) + "\n")
                out.write(summary + "\n")
        else:
            print(summary, flush=True)
        return ok, failed

    def cleanup_internal(self):
        try:
            delete_prefix(self.c.s3, self.bucket.bucket, self.internal_key)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove s3://%s/%s: %s", self.bucket.bucket,
                        self.internal_key, exc)

    # ------------------------------------------------------------------ run
    def run(self, tasks: list, install_signals: bool = True) -> int:
        """Run the bag; returns 0, 1 (a task failed) or 2 (AWS / internal error).

        With ``install_signals`` SIGINT/SIGTERM set :attr:`stop` for the duration (the
        command line installs the handler itself, around setup, run and teardown)."""
        start = time.time()
        self.tasks = tasks
        old = self.stop.install() if install_signals else {}
        code = EXIT_OK
        try:
            try:
                self.check_stop()
                os.makedirs(self.outdir, exist_ok=True)
                open(self.jobstate_path, "a").close()
                self.stage()
                self.plan_units()
                self.upload_task_descriptions()
                for u in self.units:
                    self.check_stop()
                    self.submit(u)        # atomic: a signal only sets the flag
                self.monitor()
            except Interrupted as exc:
                code = self._abort(str(exc))
            except AWS_ERRORS + (PegasusAWSBatchError,) as exc:
                code = self._abort(_err(exc))
            except OSError as exc:
                code = self._abort(f"{exc.strerror or exc}"
                                   + (f": {exc.filename}" if exc.filename else ""))
            except Exception as exc:  # noqa: BLE001 - exit 2 with logs, never a traceback
                log.debug("internal error", exc_info=True)
                code = self._abort(f"internal error: {type(exc).__name__}: {exc}")
            if self.tasks:
                for t in self.tasks:
                    if t.state not in ("succeeded", "failed"):
                        t.state = "failed"
                try:
                    ok, failed = self.merge(start)
                except OSError as exc:
                    msg = f"cannot write the merged logs: {exc}"
                    log.error(msg)
                    self.errors.append(msg)
                    code, failed = EXIT_NON_TASK_FAILURE, 0
                if code == EXIT_OK and failed:
                    code = EXIT_TASK_FAILURE
            self.cleanup_internal()
        finally:
            StopFlag.restore(old)
        return code

    def _abort(self, msg: str) -> int:
        log.error(msg)
        self.errors.append(msg)
        self.terminate_all(f"pegasus-aws-batch {self.prefix}: {msg}")
        return EXIT_NON_TASK_FAILURE


def _err(exc) -> str:
    if isinstance(exc, ClientError):
        e = exc.response.get("Error", {})
        return f"{e.get('Code')}: {e.get('Message')}"
    if isinstance(exc, Boto3Error):
        return f"S3: {exc}"
    return str(exc)
