"""Task logs: CloudWatch retrieval, the TASK STDERR split, and the records pegasus-exitcode reads.

Record formats (what Pegasus's client writes; ``pegasus-exitcode`` looks for the summary):

``[cluster-task id=<seq>, name="<task>", aws-job-id="<id>", state=<state>, status=<0|1>, id=<seq>, app="<executable>"]``

``[cluster-summary tasks=<N>, succeeded=<S>, failed=<F>, duration=<sec>, start="<ISO time>", app="pegasus-aws-batch"]``
"""
from __future__ import annotations

from gahp.batch import read_log_stream

import datetime as _dt
import logging
import os
import time
from typing import Iterable, Optional

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("pegasus-aws-batch")

#: the line that separates a task's stdout from its stderr in the (single) log stream
TASK_STDERR_MARKER = "########################[AWS BATCH] TASK STDERR ########################"
DEFAULT_LOG_GROUP = "/aws/batch/job"


def _q(value) -> str:
    """A record value in double quotes; quotes and brackets would break the record parser."""
    text = str(value).replace('"', "'").replace("]", ")").replace("[", "(").replace("\n", " ")
    return f'"{text}"'


def cluster_task_record(seq: int, name: str, job_id: Optional[str], state: str,
                        succeeded: bool, app: str) -> str:
    return (f"[cluster-task id={seq}, name={_q(name)}, aws-job-id={_q(job_id or '')}, "
            f"state={state}, status={0 if succeeded else 1}, id={seq}, app={_q(app)}]")


def cluster_summary_record(tasks: int, succeeded: int, failed: int, duration: float,
                           start: float, app: str = "pegasus-aws-batch") -> str:
    start_s = _dt.datetime.fromtimestamp(start).astimezone().isoformat(timespec="seconds")
    return (f"[cluster-summary tasks={tasks}, succeeded={succeeded}, failed={failed}, "
            f"duration={duration:.3f}, start={_q(start_s)}, app={_q(app)}]")


def split_task_log(lines: Iterable[str]) -> tuple[list[str], list[str]]:
    """Lines before the first marker are the task's stdout, the rest its stderr.  Further
    marker lines (a Pegasus launcher inside our cluster launcher prints its own) are dropped."""
    out: list[str] = []
    err: list[str] = []
    seen = False
    for line in lines:
        if line.rstrip("\r\n") == TASK_STDERR_MARKER:
            seen = True
            continue
        (err if seen else out).append(line)
    return out, err


def fetch_stream(logs_client, group: str, stream: str, retries: int = 3,
                 sleep=time.sleep) -> Optional[list[str]]:
    """All events of one stream, oldest first, following ``nextForwardToken`` until it repeats.
    A missing stream is retried a few times (streams can appear late); None if it never came."""
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            lines = read_log_stream(logs_client, group, stream)
            if lines is not None:
                return lines
            if attempt == retries:
                log.warning("log stream %s/%s: ResourceNotFoundException", group, stream)
                return None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "ResourceNotFoundException" or attempt == retries:
                log.warning("log stream %s/%s: %s", group, stream, code)
                return None
        except BotoCoreError as exc:
            log.warning("log stream %s/%s: %s", group, stream, exc)
            if attempt == retries:
                return None
        sleep(delay)
        delay *= 2
    return None


def streams_of(detail: dict) -> list[str]:
    """Every attempt's stream name, oldest first, then the job's own (deduplicated)."""
    names: list[str] = []
    for att in detail.get("attempts") or []:
        s = (att.get("container") or {}).get("logStreamName")
        if s and s not in names:
            names.append(s)
    s = (detail.get("container") or {}).get("logStreamName")
    if s and s not in names:
        names.append(s)
    return names


def log_group_of(detail: dict) -> str:
    lc = (detail.get("container") or {}).get("logConfiguration") or {}
    if lc.get("logDriver") == "awslogs":
        return (lc.get("options") or {}).get("awslogs-group") or DEFAULT_LOG_GROUP
    return DEFAULT_LOG_GROUP


def _nl(lines: list[str]) -> str:
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def task_logs(logs_client, detail: dict, sleep=time.sleep) -> tuple[str, str, bool]:
    """(stdout text, stderr text, found) for a finished job: the last attempt is split at the
    marker; earlier attempts are appended to stderr with a heading."""
    streams = streams_of(detail)
    if not streams:
        return "", "", False
    group = log_group_of(detail)
    last = fetch_stream(logs_client, group, streams[-1], sleep=sleep)
    out, err = split_task_log(last or [])
    extra = []
    for i, s in enumerate(streams[:-1], start=1):
        prev = fetch_stream(logs_client, group, s, retries=0, sleep=sleep)
        if prev:
            extra.append(f"---- earlier attempt {i} (log stream {s}) ----\n" + _nl(prev))
    return _nl(out), _nl(err) + "".join(extra), last is not None


def write_text(path: str, text: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
