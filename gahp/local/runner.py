"""Running one job attempt as a local process group, and the fetch-and-run entrypoint.

Each attempt gets a fresh directory (its cwd) and its own session/process
group, so that a timeout, a TerminateJob or the emulator's shutdown can stop
everything the job started with one ``killpg``. stdout and stderr share one
pipe, the way the awslogs driver merges them into one CloudWatch stream.

When the job's environment carries ``BATCH_FILE_TYPE`` or
``BATCH_FILE_S3_URL`` we do what awslabs' ``fetch_and_run.sh`` entrypoint
does (aws-batch-and-pegasus.md section B) instead of running the command
directly: fetch the object, and in script mode drop the first argument and
exec the download with the rest, in zip mode unpack it and exec ``./<arg1>``.
Usage errors exit 2, other wrapper failures exit 1, as the real script.
Differences: PATH is kept (so the host's ``aws`` CLI is found), and no
``aws``/``unzip`` executables are needed because the fetch happens in-process.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import select
import signal
import stat
import subprocess
import threading
import time
import uuid
import zipfile
from typing import Callable

log = logging.getLogger(__name__)

FETCH_NAME = "fetch_and_run.sh"
USAGE = """Usage:

export BATCH_FILE_TYPE="script"
export BATCH_FILE_S3_URL="s3://my-bucket/my-script"
fetch_and_run.sh script-from-s3 [ <script arguments> ]

  - or -

export BATCH_FILE_TYPE="zip"
export BATCH_FILE_S3_URL="s3://my-bucket/my-zip"
fetch_and_run.sh script-from-zip [ <script arguments> ]"""


@dataclasses.dataclass
class Plan:
    """What to exec for an attempt, or the wrapper's own early exit."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    exit_code: int | None = None  # set: do not exec, end with this code
    output: list[str] = dataclasses.field(default_factory=list)  # wrapper messages
    wrapper: bool = False  # True when fetch-and-run emulation applies


def wants_fetch_and_run(env: dict[str, str]) -> bool:
    return "BATCH_FILE_TYPE" in env or "BATCH_FILE_S3_URL" in env


def _usage(msg: str, plan: Plan) -> Plan:
    plan.output += [f"* {msg}", ""] + USAGE.splitlines()
    plan.exit_code = 2
    return plan


def _error(msg: str, plan: Plan) -> Plan:
    plan.output.append(f"{FETCH_NAME} - {msg}")
    plan.exit_code = 1
    return plan


def plan_attempt(command: list[str], env: dict[str, str], jobdir: str,
                 fetch: Callable[[str], bytes]) -> Plan:
    """Decide the argv for an attempt; emulate fetch_and_run.sh when asked to.

    ``fetch(url)`` returns the object's bytes or raises.
    """
    plan = Plan(list(command), dict(env), jobdir)
    if not wants_fetch_and_run(env):
        return plan
    plan.wrapper = True
    ftype = env.get("BATCH_FILE_TYPE", "")
    url = env.get("BATCH_FILE_S3_URL", "")
    if not ftype:
        return _usage(f"BATCH_FILE_TYPE not set, unable to determine type (zip/script) of URL {url}", plan)
    if not url:
        return _usage("BATCH_FILE_S3_URL not set. No object to download.", plan)
    if not url.startswith("s3://"):
        return _usage("BATCH_FILE_S3_URL must be for an S3 object; expecting URL starting with s3://", plan)
    if ftype not in ("script", "zip"):
        return _usage("Unsupported value for BATCH_FILE_TYPE. Expecting (script/zip).", plan)
    if ftype == "zip" and not command:
        return _usage("zip format requires at least one argument - the script to run from inside", plan)
    tmpdir = os.path.join(jobdir, "tmp.fetch_and_run")
    os.makedirs(tmpdir, mode=0o700)
    tmpfile = os.path.join(tmpdir, "batch-file-temp")
    plan.env["TMPDIR"] = tmpdir
    try:
        data = fetch(url)
    except Exception as exc:  # noqa: BLE001 - any fetch problem is the same wrapper failure
        plan.output.append(f"download failed: {exc}")
        what = "script." if ftype == "script" else f"zip file from {url}"
        return _error(f"Failed to download S3 {what}", plan)
    fd = os.open(tmpfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if ftype == "script":
        os.chmod(tmpfile, 0o700)
        plan.argv = [tmpfile] + list(command[1:])
        return plan
    try:
        _unzip(tmpfile, tmpdir)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        plan.output.append(f"unzip: {exc}")
        return _error("Failed to unpack zip file.", plan)
    script = os.path.join(tmpdir, command[0])
    if not os.access(script, os.R_OK) or not os.path.isfile(script):
        return _error(f"Did not find specified script './{command[0]}' in zip from {url}", plan)
    os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR)
    plan.cwd = tmpdir
    plan.argv = [f"./{command[0]}"] + list(command[1:])
    return plan


def _unzip(path: str, dest: str) -> None:
    """Unpack like ``unzip -q``: keep stored permission bits, refuse escaping paths."""
    real_dest = os.path.realpath(dest)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            target = os.path.realpath(os.path.join(dest, info.filename))
            if not (target == real_dest or target.startswith(real_dest + os.sep)):
                raise ValueError(f"unsafe path in zip: {info.filename}")
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)


def exit_status(returncode: int) -> int:
    """Docker reports a signal death as 128+signal."""
    return 128 - returncode if returncode < 0 else returncode


#: environment variable that marks every process of one attempt (inherited by descendants,
#: also those that leave the process group with setsid), so that they can all be killed the
#: way Docker kills a whole container
MARK_VAR = "LOCAL_BATCH_JOB_MARK"

#: how long the reader keeps draining after the job's own process exited and its group was
#: killed, before it gives up on a pipe still held open by an escaped process
DRAIN_TIMEOUT = 2.0


class JobProcess:
    """One attempt's process group: start, stream output, stop."""

    def __init__(self, plan: Plan, on_line: Callable[[bytes], None]):
        self.plan = plan
        self.on_line = on_line
        self.proc: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self.mark = uuid.uuid4().hex
        self._reader: threading.Thread | None = None
        self._stop_reading = threading.Event()
        self._kill_timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._done = False

    def start(self) -> None:
        """Start the process; raises OSError when it cannot be executed."""
        for delay in (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, None):
            try:
                self.proc = self._popen(self.plan.argv)
                break
            except OSError as exc:
                if exc.errno == errno.ETXTBSY and delay is not None:
                    # The script was just written; a process forked meanwhile by another job's
                    # thread may still hold the write descriptor until its own exec.
                    time.sleep(delay)
                    continue
                if exc.errno != errno.ENOEXEC:
                    raise
                # A script without '#!': bash's exec falls back to running it with the shell.
                self.proc = self._popen(["/bin/sh"] + self.plan.argv)
                break
        self.pgid = self.proc.pid
        self._reader = threading.Thread(target=self._read, name=f"job-out-{self.pgid}", daemon=True)
        self._reader.start()

    def _popen(self, argv: list[str]) -> subprocess.Popen[bytes]:
        env = dict(self.plan.env)
        env[MARK_VAR] = self.mark
        return subprocess.Popen(
            argv, cwd=self.plan.cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, bufsize=0,
        )

    def _read(self) -> None:
        """Read the pipe with os.read on the raw descriptor (no BufferedReader lock that a
        close could block on) and stop at EOF, or once asked to after the job ended."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        pending = b""
        try:
            while True:
                if not poller.poll(100):
                    if self._stop_reading.is_set():
                        break      # an escaped process still holds the pipe: stop listening
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.on_line(line + b"\n")
        except (OSError, ValueError):
            pass  # pipe closed under us at shutdown
        finally:
            if pending:
                try:
                    self.on_line(pending)
                except Exception:  # noqa: BLE001 - a sink failure must not hide the exit
                    log.exception("job output callback failed")

    def wait(self) -> int:
        """Wait for the main process, then clear out its group (and any process that left
        it) like a container stop.  Returns when the job's own process exited, even if an
        escaped process still holds the output pipe."""
        assert self.proc is not None
        rc = self.proc.wait()
        self.kill_all(signal.SIGKILL)  # stragglers die with the essential process
        with self._lock:
            self._done = True
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        if self._reader is not None:
            self._reader.join(timeout=DRAIN_TIMEOUT)
            self._stop_reading.set()
            self._reader.join()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return exit_status(rc)

    def signal(self, sig: int) -> None:
        if self.pgid is None:
            return
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self, sig: int) -> None:
        """Signal the process group and every process carrying this attempt's mark."""
        self.signal(sig)
        for pid in marked_pids(self.mark):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, grace: float) -> None:
        """SIGTERM everything of the attempt, SIGKILL it after ``grace`` seconds (docker stop)."""
        with self._lock:
            if self._done:
                return
            self.kill_all(signal.SIGTERM)
            if self._kill_timer is None:
                self._kill_timer = threading.Timer(grace, self.kill_all, args=(signal.SIGKILL,))
                self._kill_timer.daemon = True
                self._kill_timer.start()

    def pids(self) -> list[int]:
        if self.pgid is None:
            return []
        return sorted(set(group_pids(self.pgid)) | set(marked_pids(self.mark)))


def marked_pids(mark: str) -> list[int]:
    """Live processes whose environment carries ``MARK_VAR=mark`` (readable ones only)."""
    needle = f"{MARK_VAR}={mark}".encode()
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat_ = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and stat_[stat_.rfind(b")") + 2:][:1] != b"Z":
            found.append(int(name))
    return found


def process_table() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgid) of every process, read from /proc."""
    table = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) > 2:
            table.append((int(name), fields[0].decode(), int(fields[1]), int(fields[2])))
    return table


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    return sorted(pid for pid, state, _, group in process_table() if state != "Z" and group == pgid)