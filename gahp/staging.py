"""S3 staging: a job's files to and from AWS Batch, through a fetch-and-run job wrapper.

A local batch GAHP gets **no** file transfer from the gridmanager (gahp-protocol.md §6.1),
so with ``AWSBATCH_GAHP_S3_URL`` set the GAHP moves the files itself:

* :meth:`Stager.stage_in` (at submit) uploads the executable, stdin, every
  ``transfer_input_files`` entry and the X.509 proxy under a fresh per-attempt prefix,
  with a SHA-256 S3 additional checksum on every object (multipart and parallel through
  s3transfer), plus ``job.sh`` (the exact argv, environment and input manifest, as sh
  code) and the generic job wrapper ``wrapper.sh`` (``gahp/data/job-wrapper.sh``).  The
  job is launched through the fetch-and-run contract (``BATCH_FILE_TYPE=script``,
  ``BATCH_FILE_S3_URL=<prefix>wrapper.sh``), so the container needs only ``sh`` and the
  ``aws`` CLI, and no credentials ever travel with the job.
* The wrapper downloads and verifies the inputs, runs the command (with the job's
  environment applied only in the command's own process), uploads stdout, stderr, the
  ``transfer_output_files`` (a manifest of names, SHA-256 and sizes for each directory) and,
  last, a small result record, all under ``out/<AWS Batch attempt>/``.
* :meth:`Stager.stage_out` (when Batch says SUCCEEDED or FAILED) reads the last attempt's
  record (bounded, sanitised, validated) and places the outputs under ``Iwd``: atomically,
  checksum-verified and confined.  Anything wrong with the record or the outputs, or a local
  error writing them, is a :class:`StagingError` (the job is held); an S3 or network failure
  is any other exception (the service tries again on the next poll).
* :meth:`Stager.cleanup` deletes the prefix and aborts incomplete multipart uploads.

Layout of one submit attempt's prefix::

    <S3_URL>/<job name>/<submit attempt>/wrapper.sh
        in/meta/job.sh  in/meta/inputs.sha256  in/meta/exe/<name>  in/meta/stdin
        in/work/<transfer_input_files basenames, directories included>
        out/<n>/stdout  out/<n>/stderr  out/<n>/f/<i>  out/<n>/d/<i>/...  out/<n>/m/<i>
        out/<n>/result      (n: AWS_BATCH_JOB_ATTEMPT, 1 for the first Batch attempt)

The pure parts (sh quoting, the job script, the result record, path confinement) are
module functions with unit tests; :class:`Stager` does the I/O.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import datetime
import hashlib
import importlib.resources
import logging
import os
import posixpath
import re
import secrets
import stat
import threading
from typing import Iterable

from .config import Settings
from .files import replacing, write_atomically
from .jobad import JobAdError, JobSpec
from .states import JobResult
from .submission import JobRecord, Launch

log = logging.getLogger(__name__)

#: The nominal first command argument, dropped by fetch-and-run.
WRAPPER_NAME = "awsbatch-gahp-wrapper"
ENV_URL = "AWSBATCH_GAHP_URL"
ENV_JOB_SHA256 = "AWSBATCH_GAHP_JOB_SHA256"

WRAPPER_KEY = "wrapper.sh"
JOB_SCRIPT_KEY = "in/meta/job.sh"
FAST_MANIFEST_KEY = "in/meta/inputs.sha256"
RESULT_NAME = "result"

#: Limits on what a job hands back: the result record, a directory manifest, one value.
RECORD_MAX = 1024 * 1024
MANIFEST_MAX = 64 * 1024 * 1024
VALUE_MAX = 1000
#: The prefix of every variable the wrapper and job.sh use for themselves.
VAR = "__awsbatch_gahp_"

#: Threads for uploads/downloads of many files, and s3transfer's per-file concurrency.
TRANSFER_THREADS = 16
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNKSIZE = 64 * 1024 * 1024
#: Files up to this size are read into memory and sent with one PutObject.
SMALL_FILE = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
#: DeleteObjects takes at most 1000 keys.
DELETE_BATCH = 1000

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._-]+")


class StagingError(Exception):
    """Staging failed; the message is a HoldReason a user can act on.

    ``code``/``subcode`` become HoldReasonCode/HoldReasonSubCode: 12/errno for an output
    the job did not produce, as HTCondor reports it for vanilla jobs (TransferOutputError)."""

    def __init__(self, message: str, code: int = 0, subcode: int = 0):
        super().__init__(message)
        self.code = code
        self.subcode = subcode


class TransientStagingError(Exception):
    """S3 or the network failed while bringing outputs home: not a hold, try again later."""


class CleanupError(Exception):
    """S3 refused to delete some objects of a prefix."""


# =========================================================================== pure parts


def sh_quote(text: str) -> str:
    """Quote for POSIX sh: any characters except NUL round-trip (``'`` -> ``'\\''``)."""
    if "\0" in text:
        raise JobAdError(f"{text[:40]!r}...: NUL characters cannot be passed to a job")
    return "'" + text.replace("'", "'\\''") + "'"


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix/``) (prefix may be empty)."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    key = key.strip("/")
    return bucket, (key + "/" if key else "")


def attempt_prefix(base_url: str, job_directory: str, attempt: str | None = None) -> str:
    """The per-submit-attempt prefix URL under ``AWSBATCH_GAHP_S3_URL``, ending in ``/``."""
    bucket, prefix = split_s3_url(base_url)
    base = job_directory[len("home_bl_"):] if job_directory.startswith("home_bl_") else job_directory
    name = _SAFE_KEY_PART.sub("-", base).strip("-.") or "job"
    if len(name) > 160:
        name = name[:140] + "-" + hashlib.sha256(job_directory.encode()).hexdigest()[:16]
    if attempt is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        attempt = f"{stamp}-{secrets.token_hex(4)}"
    return f"s3://{bucket}/{prefix}{name}/{attempt}/"


def is_url(entry: str) -> bool:
    return bool(_URL.match(entry))


def relative_name_ok(name: str) -> bool:
    """A remote relative name that stays where it is put: no absolute path, no ``..``."""
    if not name or name.startswith("/") or "\0" in name:
        return False
    parts = name.split("/")
    return all(part not in ("..",) for part in parts) and any(part not in ("", ".") for part in parts)


def output_destination(iwd: str, name: str, remaps: dict[str, str]) -> tuple[str, bool]:
    """Where a ``transfer_output_files`` entry goes on the submit host.

    Returns (absolute path, confined).  A remap the user gave to an absolute path is
    the user's own choice and honoured as is (like an absolute ``Out``); everything
    else must stay under ``Iwd``.  Raises :class:`StagingError` for an escaping name.
    """
    target = remaps.get(name)
    if target is not None and target.startswith("/"):
        return posixpath.normpath(target), False
    rel = target if target is not None else name
    if not relative_name_ok(rel):
        what = f"{name!r} (remapped to {rel!r})" if target is not None else repr(name)
        raise StagingError(
            f"refusing transfer_output_files entry {what}: outputs must stay under the job's "
            f"initial directory {iwd} (no absolute paths or '..'); use transfer_output_remaps "
            "to an absolute path to place it elsewhere"
        )
    return posixpath.normpath(posixpath.join(iwd, rel)), True


@dataclasses.dataclass
class InputFile:
    """One object to upload: local path, key relative to the prefix's ``in/``."""

    path: str
    rel: str  # e.g. "work/data.csv", "meta/exe/analyze.sh", "meta/stdin"
    size: int
    sha256: str = ""


@dataclasses.dataclass
class InputPlan:
    files: list[InputFile] = dataclasses.field(default_factory=list)
    dirs: list[str] = dataclasses.field(default_factory=list)  # under work/, to mkdir (empty dirs)
    urls: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (url, work-dir name)
    cmd: str = ""  # "meta/exe/<name>" (staged) or the absolute execute-side path
    cmd_staged: bool = True
    stdin: str | None = None  # "meta/stdin"
    proxy: str | None = None  # "work/<name>"

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def _file_size(path: str, what: str) -> int:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise JobAdError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise JobAdError(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise JobAdError(f"{what} {path} is not readable")
    return st.st_size


def plan_inputs(spec: JobSpec) -> InputPlan:
    """What to upload for a job (reads the file system; raises :class:`JobAdError`)."""
    plan = InputPlan()
    if spec.stage_cmd:
        size = _file_size(spec.cmd, "the executable")
        plan.cmd = "meta/exe/" + (posixpath.basename(spec.cmd) or "condor_exec.exe")
        plan.files.append(InputFile(spec.cmd, plan.cmd, size))
    else:
        plan.cmd, plan.cmd_staged = spec.cmd, False
    if spec.stdin:
        plan.stdin = "meta/stdin"
        plan.files.append(InputFile(spec.stdin, plan.stdin, _file_size(spec.stdin, "the input (stdin) file")))
    seen: dict[str, InputFile] = {}
    for entry in spec.transfer_input:
        if is_url(entry):
            name = posixpath.basename(entry.rstrip("/").split("?", 1)[0]) or "download"
            plan.urls.append((entry, name))
            continue
        path = entry if entry.startswith("/") else posixpath.join(spec.iwd, entry)
        path = posixpath.normpath(path)
        if os.path.isdir(path):
            # HTCondor: "dir" transfers the directory itself, "dir/" only its contents.
            top = "work" if entry.endswith("/") else "work/" + posixpath.basename(path)
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                sub = posixpath.relpath(dirpath, path)
                base = top if sub == "." else f"{top}/{sub}"
                if not filenames and not dirnames and base != "work":
                    plan.dirs.append(base[len("work/"):])
                for fname in sorted(filenames):
                    full = posixpath.join(dirpath, fname)
                    if not os.path.isfile(full):
                        continue  # sockets, fifos, dangling links
                    item = InputFile(full, f"{base}/{fname}", _file_size(full, "input file"))
                    seen[item.rel] = item
            continue
        if not os.path.lexists(path):
            raise JobAdError(f"transfer_input_files entry {entry!r} does not exist ({path})")
        item = InputFile(path, "work/" + posixpath.basename(path), _file_size(path, "transfer_input_files entry"))
        seen[item.rel] = item
    if spec.x509_proxy:
        rel = "work/" + posixpath.basename(spec.x509_proxy)
        seen[rel] = InputFile(spec.x509_proxy, rel, _file_size(spec.x509_proxy, "the X.509 proxy (x509userproxy)"))
        plan.proxy = rel
    plan.files.extend(seen.values())
    return plan


def _fast_manifest_ok(rel: str) -> bool:
    # sha256sum -c escapes names with a backslash or newline; keep those on the slow path.
    return "\n" not in rel and "\\" not in rel and "\r" not in rel


def render_fast_manifest(plan: InputPlan) -> str | None:
    """``sha256sum -c`` input for the wrapper's fast check, or None when a name is unsafe."""
    if not all(_fast_manifest_ok(f.rel) for f in plan.files):
        return None
    return "".join(f"{f.sha256}  {f.rel}\n" for f in plan.files)


def render_job_script(spec: JobSpec, plan: InputPlan, *, fast_manifest_sha: str = "") -> str:
    """``job.sh``, sourced by the wrapper: the exact argv/env and the input manifest.

    ``fast_manifest_sha`` is the SHA-256 of ``inputs.sha256`` (empty: no fast check); the
    wrapper checks the manifest against it, and job.sh against the hash in the Batch job.
    ``job_env`` runs only in the job's own process, never in the wrapper's shell."""
    q = sh_quote
    root = f"\"${VAR}root/\""
    lines = [
        "# awsbatch-gahp job description, sourced by the job wrapper; generated, do not edit",
        f"# JobDirectory {spec.job_directory}".replace("\n", " ").replace("\r", " "),
        f"{VAR}bytes_in={plan.bytes}",
        f"{VAR}fast_sha={q(fast_manifest_sha)}",
        f"{VAR}stdin_rel={q(plan.stdin or '')}",
        f"{VAR}stdout_mode={'file' if spec.stdout else 'null'}",
        f"{VAR}stderr_mode={'merged' if spec.merged_output else ('file' if spec.stderr else 'null')}",
        f"{VAR}exe={root + q(plan.cmd) if plan.cmd_staged else chr(39) * 2}",
    ]
    lines.append("job_dirs() {")
    lines += [f"    mkdir -p {root}work/{q(d)} || fail_staging {q('cannot create input directory ' + d)}"
              for d in plan.dirs]
    lines.append("    :\n}")
    lines.append("job_inputs() {")
    lines += [f"    verify_input {f.sha256} {f.size} {q(f.rel)}" for f in plan.files]
    lines.append("    :\n}")
    lines.append("job_urls() {")
    lines += [f"    fetch_url {q(url)} {q(name)}" for url, name in plan.urls]
    lines.append("    :\n}")
    env = dict(spec.env)
    odd = {}
    lines.append("job_env() {")
    if plan.proxy:
        env.setdefault("X509_USER_PROXY", "")
        lines.append(f"    chmod 600 {root}{q(plan.proxy)} 2>/dev/null")
        lines.append(f"    X509_USER_PROXY={root}{q(plan.proxy)}; export X509_USER_PROXY")
    for name, value in env.items():
        if name == "X509_USER_PROXY" and plan.proxy and not spec.env.get(name):
            continue
        if _IDENTIFIER.match(name):
            lines.append(f"    {name}={q(value)}; export {name}")
        else:
            odd[name] = value
    lines.append("    :\n}")
    lines.append("job_outputs() {")
    lines += [f"    stage_output {i} {q(name)}" for i, name in enumerate(spec.transfer_output)]
    lines.append("    :\n}")
    argv = []
    if odd:  # names the shell cannot export go through env(1), found with the wrapper's PATH
        argv += [f"\"${{{VAR}env:-env}}\""] + [q(f"{k}={v}") for k, v in odd.items()]
    argv.append(f"{root}{q(plan.cmd)}" if plan.cmd_staged else q(plan.cmd))
    argv += [q(arg) for arg in spec.args]
    lines.append("set -- " + " \\\n    ".join(argv))
    return "\n".join(lines) + "\n"


_RECORD_KEY = re.compile(r"[A-Za-z0-9_.]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,18}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def clean_text(value: str, limit: int = VALUE_MAX) -> str:
    """Job-controlled text made safe to show: printable characters only, at most ``limit``."""
    return "".join(c for c in value if c.isprintable())[:limit]


def parse_result(data: bytes | str) -> dict[str, str]:
    """The wrapper's ``key=value`` result record (later keys win, junk lines ignored).

    The record is the job's to write: bytes are decoded with replacement characters, and
    every value keeps only printable characters, at most :data:`VALUE_MAX` of them."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    record: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep and _RECORD_KEY.fullmatch(key):
            record[key] = clean_text(value)
    return record


def _number(value: str, lo: int, hi: int, what: str) -> int:
    if not _DIGITS.fullmatch(value) or not lo <= int(value) <= hi:
        raise StagingError(f"the job's result record has an invalid {what} {value[:40]!r} "
                           f"(expected a number from {lo} to {hi})")
    return int(value)


def _size(value: str, what: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise StagingError(f"cannot transfer {what} back: the job's result record gives its size as "
                           f"{value[:40]!r}, not a number")
    return int(value)


def _sha(value: str, what: str) -> str:
    if not _SHA256.fullmatch(value):
        raise StagingError(f"cannot transfer {what} back: the job's result record gives its SHA-256 as "
                           f"{value[:80]!r}")
    return value


def result_of(record: dict[str, str]) -> JobResult:
    """The job's exit code (0..255) or signal (1..64); anything else is a StagingError."""
    code = record.get("exit_code") or None
    sig = record.get("exit_signal") or None
    return JobResult(exit_code=None if code is None else _number(code, 0, 255, "exit_code"),
                     exit_signal=None if sig is None else _number(sig, 1, 64, "exit_signal"))


def parse_manifest(data: bytes, what: str) -> list[tuple[str, str, int]]:
    """A directory output's manifest: ``<sha256> <size> <relative name>`` lines."""
    entries = []
    seen = set()
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        fields = line.split(b" ", 2)
        if len(fields) != 3:
            raise StagingError(f"cannot transfer {what} back: line {n} of its manifest is malformed")
        try:
            name = fields[2].decode("utf-8")
        except UnicodeDecodeError:
            raise StagingError(f"cannot transfer {what} back: it holds a file whose name is not UTF-8 "
                               f"({clean_text(fields[2].decode('utf-8', 'replace'), 200)!r})") from None
        shown = f"{what}/{clean_text(name, 200)}"
        if not relative_name_ok(name) or name.endswith("/") or name != clean_text(name, 4096):
            raise StagingError(f"refusing output {shown!r}: a name inside the output directory {what!r} "
                               "would escape it or holds control characters")
        norm = posixpath.normpath(name)
        if norm in seen:
            raise StagingError(f"cannot transfer {what} back: its manifest names {shown!r} twice")
        seen.add(norm)
        sha = _sha(fields[0].decode("ascii", "replace"), repr(shown))
        entries.append((name, sha, _size(fields[1].decode("ascii", "replace"), repr(shown))))
    return entries


def no_record_reason(detail: dict) -> str:
    """HoldReason for a job that never produced a result record."""
    job = detail.get("jobId") or "?"
    status = detail.get("status") or "?"
    reason = (detail.get("statusReason") or "").strip()
    container = detail.get("container") or {}
    creason = (container.get("reason") or "").strip()
    parts = []
    if reason:
        parts.append(f"statusReason: {reason}")
    if creason:
        parts.append(f"container: {creason}")
    if container.get("exitCode") is not None:
        parts.append(f"exit code {container['exitCode']}")
    why = "; ".join(parts) or "no reason given by AWS Batch"
    return (
        f"AWS Batch job {job} ended {status} without the staging wrapper's result record, so its "
        f"command did not run to completion ({why}); check the image (it needs sh and the aws CLI), "
        "the job role's access to the staging bucket, and the job's CloudWatch log"
    )


def missing_output_reason(name: str, job: str) -> str:
    """Like HTCondor's hold for a vanilla job whose transfer_output_files entry is missing."""
    return (
        f"Error from AWS Batch job {job}: failed to send file(s): error reading from {name}: "
        "(errno 2) No such file or directory; the job did not create this transfer_output_files entry"
    )


# =========================================================================== I/O


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK * 4)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def wrapper_text() -> bytes:
    return importlib.resources.files("gahp").joinpath("data/job-wrapper.sh").read_bytes()


def ensure_directory(base: str, directory: str, what: str) -> None:
    """Create ``directory``'s missing components below ``base`` (which must exist) without
    following a symbolic link, and check that it really lands under ``base``."""
    if not os.path.isdir(base):
        raise StagingError(f"cannot write {what}: directory {base} does not exist")
    rel = posixpath.relpath(directory, base)
    if rel == ".." or rel.startswith("../") or rel.startswith("/"):
        raise StagingError(f"refusing to write {what}: it is not under {base}")
    current = base
    if rel != ".":
        for part in rel.split("/"):
            current = posixpath.join(current, part)
            if os.path.islink(current):
                raise StagingError(
                    f"refusing to write {what}: {current} is a symbolic link, and outputs must stay "
                    f"under {base}")
            if not os.path.lexists(current):
                try:
                    os.mkdir(current, 0o777)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise StagingError(f"cannot write {what}: cannot create directory {current}: "
                                       f"{exc.strerror or exc}") from None
            if os.path.islink(current) or not os.path.isdir(current):
                raise StagingError(f"cannot write {what}: {current} is not a directory")
    real_base = os.path.realpath(base)
    real = os.path.realpath(directory)
    if real != real_base and not real.startswith(real_base.rstrip("/") + "/"):
        raise StagingError(f"refusing to write {what}: it resolves outside {base}")


def ensure_parent(base: str, dest: str) -> None:
    """Create ``dest``'s missing directories below ``base`` (see :func:`ensure_directory`)
    and check that ``dest`` is not a directory."""
    ensure_directory(base, posixpath.dirname(dest), dest)
    if os.path.isdir(dest) and not os.path.islink(dest):
        raise StagingError(f"cannot write output {dest}: a directory of that name exists")


def _error_code(exc: BaseException) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


_NOT_FOUND = ("NoSuchKey", "404", "NotFound")


@dataclasses.dataclass
class _Download:
    key: str
    dest: str
    what: str  # the name a user knows
    sha256: str | None = None  # hex, from the result record
    size: int | None = None
    base: str = ""  # directories below it may be created; nothing is written outside it


class Stager:
    """Stage a job's files through S3 (see the module docstring)."""

    def __init__(self, s3_client, settings: Settings):
        self.s3 = s3_client
        self.settings = settings
        if not settings.s3_url:
            raise ValueError("AWSBATCH_GAHP_S3_URL is not set")
        split_s3_url(settings.s3_url)  # validate early
        self._umask = _umask()
        self._pool = concurrent.futures.ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="s3")
        self._wrapper: bytes | None = None
        self._transfer = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def _transfer_manager(self):
        with self._lock:
            if self._transfer is None:
                from boto3.s3.transfer import TransferConfig, create_transfer_manager

                config = TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD,
                    multipart_chunksize=MULTIPART_CHUNKSIZE,
                    max_concurrency=TRANSFER_THREADS,
                    use_threads=True,
                )
                self._transfer = create_transfer_manager(self.s3, config)
            return self._transfer

    def _put_small(self, bucket: str, key: str, path: str) -> str:
        """Read, hash and upload a small file in one request; returns the hex SHA-256."""
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                           ChecksumSHA256=_b64(digest))
        return digest

    def _put_bytes(self, bucket: str, key: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                           ChecksumSHA256=_b64(digest))
        return digest

    # ------------------------------------------------------------------ stage in
    def stage_in(self, spec: JobSpec) -> tuple[Launch, str]:
        plan = plan_inputs(spec)
        url = attempt_prefix(self.settings.s3_url, spec.job_directory)
        bucket, prefix = split_s3_url(url)
        try:
            self._upload_inputs(bucket, prefix, plan)
            manifest = render_fast_manifest(plan)
            manifest_sha = ""
            if manifest is not None:
                manifest_sha = self._put_bytes(bucket, prefix + FAST_MANIFEST_KEY,
                                               manifest.encode("utf-8", "surrogateescape"))
            script = render_job_script(spec, plan, fast_manifest_sha=manifest_sha)
            job_sha = self._put_bytes(bucket, prefix + JOB_SCRIPT_KEY, script.encode("utf-8", "surrogateescape"))
            if self._wrapper is None:
                self._wrapper = wrapper_text()
            self._put_bytes(bucket, prefix + WRAPPER_KEY, self._wrapper)
        except BaseException:
            # Every upload has ended (see _upload_inputs): nothing lands after this.
            try:
                self.cleanup(url)
            except Exception as exc:  # best effort; a lifecycle rule catches the rest
                log.warning("cannot clean %s after a failed stage-in: %s", url, exc)
            raise
        log.info("staged %d input file(s), %d bytes, to %s", len(plan.files), plan.bytes, url)
        launch = Launch(
            command=[WRAPPER_NAME],
            environment={
                "BATCH_FILE_TYPE": "script",
                "BATCH_FILE_S3_URL": url + WRAPPER_KEY,
                ENV_URL: url,
                ENV_JOB_SHA256: job_sha,
            },
        )
        return launch, url

    def _upload_inputs(self, bucket: str, prefix: str, plan: InputPlan) -> None:
        """Upload every input; if one fails, cancel and wait for all the others before raising,
        so that a clean-up afterwards leaves nothing behind."""
        small = [f for f in plan.files if f.size <= SMALL_FILE]
        large = [f for f in plan.files if f.size > SMALL_FILE]
        futures: dict[concurrent.futures.Future, InputFile] = {}
        hashes: dict[int, concurrent.futures.Future] = {}
        uploads = []
        try:
            for item in small:
                futures[self._pool.submit(self._put_small, bucket, prefix + "in/" + item.rel, item.path)] = item
            if large:
                manager = self._transfer_manager()
                # The content hash runs beside the (multipart, parallel) upload.
                hashes = {id(item): self._pool.submit(_sha256_file, item.path) for item in large}
                for item in large:
                    uploads.append(manager.upload(item.path, bucket, prefix + "in/" + item.rel,
                                                  extra_args={"ChecksumAlgorithm": "SHA256"}))
                for item, upload in zip(large, uploads):
                    upload.result()
                    item.sha256 = hashes[id(item)].result()
            for future in concurrent.futures.as_completed(futures):
                futures[future].sha256 = future.result()
        except BaseException:
            pending = list(futures) + list(hashes.values())
            for future in pending:
                future.cancel()
            for upload in uploads:
                upload.cancel()  # s3transfer aborts its multipart upload
            concurrent.futures.wait(pending)
            for upload in uploads:
                try:
                    upload.result()
                except BaseException:  # noqa: BLE001 - cancelled or failed: it has ended
                    pass
            raise

    # ------------------------------------------------------------------ stage out
    def _read_small(self, bucket: str, key: str, limit: int, what: str, missing: str) -> bytes:
        """An object of at most ``limit`` bytes (``missing``: the hold reason if it is absent)."""
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise StagingError(missing) from None
            raise TransientStagingError(f"cannot read {what} s3://{bucket}/{key}: {exc}") from exc
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if length is not None and length > limit:
                raise StagingError(f"refusing {what} s3://{bucket}/{key}: it has {length} bytes, "
                                   f"more than the {limit} allowed")
            try:
                data = body.read(limit + 1)
            except Exception as exc:
                raise TransientStagingError(f"cannot read {what} s3://{bucket}/{key}: {exc}") from exc
            if len(data) > limit:
                raise StagingError(f"refusing {what} s3://{bucket}/{key}: it has more than the "
                                   f"{limit} bytes allowed")
            return data
        finally:
            try:
                body.close()
            except Exception:  # noqa: BLE001
                pass

    def _attempt_of(self, bucket: str, prefix: str, detail: dict) -> int:
        """The Batch attempt whose outputs count: the last one.  When DescribeJobs lists no
        attempts, the highest ``out/<n>/`` the wrapper wrote (1 if none)."""
        attempts = detail.get("attempts") or []
        if attempts:
            return len(attempts)
        best = 0
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "out/", Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) + 4:].rstrip("/")
                    if re.fullmatch(r"[1-9][0-9]{0,2}", name):
                        best = max(best, int(name))
        except Exception as exc:
            raise TransientStagingError(f"cannot list s3://{bucket}/{prefix}out/: {exc}") from exc
        return best or 1

    def stage_out(self, record: JobRecord, detail: dict) -> JobResult:
        if not record.staging_url:
            raise StagingError("the job has no staging prefix")
        bucket, prefix = split_s3_url(record.staging_url)
        attempt = self._attempt_of(bucket, prefix, detail)
        out = f"{prefix}out/{attempt}/"
        job = detail.get("jobId") or "?"
        result = parse_result(self._read_small(bucket, out + RESULT_NAME, RECORD_MAX, "the result record",
                                               no_record_reason(detail)))
        if result.get("attempt", str(attempt)) != str(attempt):
            raise StagingError(f"AWS Batch job {job}: the result record of attempt {attempt} says it is "
                               f"attempt {result['attempt']!r}")
        if result.get("error"):
            raise StagingError(f"AWS Batch job {job} could not run its command: {result['error']}")
        if result.get("upload_error"):
            raise StagingError(f"AWS Batch job {job} ran its command, but {result['upload_error']}")
        job_result = result_of(result)  # a bad exit code is a hold before anything is written
        iwd = record.iwd
        downloads: list[_Download] = []
        directories: list[tuple[str, str, str]] = []  # (base, directory, name)
        # Plan every destination first: nothing is written if one of them is refused.
        for i, name in enumerate(record.transfer_output):
            dest, confined = output_destination(iwd, name, record.output_remaps)
            kind = result.get(f"out.{i}", "missing")
            fields = kind.split() or ["missing"]
            if fields[0] == "missing":
                raise StagingError(missing_output_reason(name, job), code=12, subcode=2)
            if fields[0] == "link":
                raise StagingError(f"refusing transfer_output_files entry {name!r}: the job left a "
                                   "symbolic link there, not a file")
            if fields[0] == "refused":
                raise StagingError(f"refusing transfer_output_files entry {name!r}: outputs must stay "
                                   "under the job's working directory")
            if fields[0] == "badname":
                raise StagingError(f"cannot transfer output directory {name!r} back: a name inside it has a "
                                   "newline, carriage return or backslash")
            base = iwd if confined else posixpath.dirname(dest)
            what = f"transfer_output_files entry {name!r}"
            if fields[0] == "file" and len(fields) == 3:
                downloads.append(_Download(f"{out}f/{i}", dest, name, _sha(fields[1], what),
                                           _size(fields[2], what), base))
            elif fields[0] == "dir" and len(fields) == 4:
                data = self._read_small(bucket, f"{out}m/{i}", MANIFEST_MAX, f"the manifest of {name!r}",
                                        f"the manifest of output directory {name!r} is missing from "
                                        f"s3://{bucket}/{out}m/{i}")
                sha, size = _sha(fields[1], what), _size(fields[2], what)
                if hashlib.sha256(data).hexdigest() != sha or len(data) != size:
                    raise StagingError(f"the manifest of output directory {name!r} is corrupted: "
                                       f"s3://{bucket}/{out}m/{i} does not match the result record")
                directories.append((base, dest, name))
                for rel, rsha, rsize in parse_manifest(data, name):
                    downloads.append(_Download(f"{out}d/{i}/{rel}", posixpath.normpath(posixpath.join(dest, rel)),
                                               f"{name}/{rel}", rsha, rsize, base))
            else:
                raise StagingError(f"cannot transfer output {name!r} back: the job reported {kind!r}")
        streams = []
        if record.stdout:
            streams.append(("stdout", record.stdout))
        if record.stderr and record.stderr != record.stdout:
            streams.append(("stderr", record.stderr))
        empties = []
        for stream, dest in streams:
            value = result.get(stream, "")
            fields = value.split()
            if not value:
                empties.append(dest)  # the command never wrote one: an empty file, as HTCondor
            elif len(fields) == 2:
                downloads.append(_Download(f"{out}{stream}", dest, stream, _sha(fields[0], stream),
                                           _size(fields[1], stream), posixpath.dirname(dest)))
            else:
                raise StagingError(f"cannot transfer {stream} back: the job's result record says {value[:80]!r}")
        for base, directory, name in directories:
            ensure_directory(base, directory, f"output directory {name!r} ({directory})")
        for item in downloads:
            ensure_parent(item.base, item.dest)
        for dest in empties:
            ensure_parent(posixpath.dirname(dest), dest)
        self._download_all(bucket, downloads)
        for dest in empties:
            try:
                self._write_atomic(dest, b"")
            except OSError as exc:
                raise StagingError(f"cannot write output {dest}: {exc.strerror or exc}") from None
        return job_result

    def _download_all(self, bucket: str, downloads: list[_Download]) -> None:
        """Download everything; a hold (StagingError) wins over a transient failure."""
        if not downloads:
            return
        futures = [self._pool.submit(self._download, bucket, item) for item in downloads]
        concurrent.futures.wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        holds = [e for e in errors if isinstance(e, StagingError)]
        if holds or errors:
            raise (holds or errors)[0]

    def _chunks(self, bucket: str, item: _Download):
        """The object's bytes; S3 failures become StagingError (gone, corrupt) or
        TransientStagingError (anything else), never an OSError."""
        def s3_error(exc: Exception) -> Exception:
            if _error_code(exc) in _NOT_FOUND:
                return StagingError(f"output {item.what} is missing from s3://{bucket}/{item.key}")
            if "checksum" in str(exc).lower():
                return StagingError(f"output {item.what} failed its S3 checksum check: {exc}")
            return TransientStagingError(f"cannot download output {item.what} from s3://{bucket}/{item.key}: {exc}")

        args = {"Bucket": bucket, "Key": item.key}
        if item.sha256 is None:
            args["ChecksumMode"] = "ENABLED"  # botocore verifies S3's own checksum
        try:
            chunks = iter(self.s3.get_object(**args)["Body"].iter_chunks(_CHUNK))
        except Exception as exc:
            raise s3_error(exc) from exc
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as exc:
                raise s3_error(exc) from exc
            yield chunk

    def _download(self, bucket: str, item: _Download) -> None:
        h = hashlib.sha256()
        size = 0
        try:
            with replacing(item.dest, 0o666 & ~self._umask) as f:
                for chunk in self._chunks(bucket, item):
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                    if item.size is not None and size > item.size:
                        break
                if item.sha256 is not None and (h.hexdigest() != item.sha256 or size != item.size):
                    raise StagingError(
                        f"output {item.what} is corrupted: s3://{bucket}/{item.key} has SHA-256 {h.hexdigest()} "
                        f"({size}{'+' if size > (item.size or 0) else ''} bytes) but the job wrote {item.sha256} "
                        f"({item.size} bytes); release the job to run it again")
        except OSError as exc:  # local: ENOSPC, EACCES, ENAMETOOLONG, a directory in the way
            raise StagingError(f"cannot write output {item.what} to {item.dest}: {exc.strerror or exc}") from None

    def _write_atomic(self, dest: str, data: bytes) -> None:
        write_atomically(dest, data, 0o666 & ~self._umask)

    # ------------------------------------------------------------------ cleanup
    def _list(self, bucket: str, prefix: str) -> Iterable[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def cleanup(self, staging_url: str) -> None:
        """Delete the prefix and abort its incomplete multipart uploads; raises
        :class:`CleanupError` if S3 refused to delete some objects."""
        bucket, prefix = split_s3_url(staging_url)
        if not prefix:
            raise ValueError(f"refusing to delete a whole bucket ({staging_url})")
        errors: list[dict] = []

        def delete(batch):
            response = self.s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors.extend(response.get("Errors") or [])

        batch: list[dict] = []
        for key in self._list(bucket, prefix):
            batch.append({"Key": key})
            if len(batch) >= DELETE_BATCH:
                delete(batch)
                batch = []
        if batch:
            delete(batch)
        self._abort_uploads(bucket, prefix)
        if errors:
            first = errors[0]
            for error in errors[:20]:
                log.warning("cannot delete s3://%s/%s: %s %s", bucket, error.get("Key"), error.get("Code"),
                            error.get("Message"))
            raise CleanupError(f"cannot delete {len(errors)} object(s) under {staging_url}, for example "
                               f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")

    def _abort_uploads(self, bucket: str, prefix: str) -> None:
        """Abort incomplete multipart uploads under the prefix (their parts cost storage)."""
        try:
            paginator = self.s3.get_paginator("list_multipart_uploads")
            uploads = [(u["Key"], u["UploadId"])
                       for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                       for u in page.get("Uploads", [])]
        except Exception as exc:
            log.warning("cannot list incomplete multipart uploads under s3://%s/%s: %s", bucket, prefix, exc)
            return
        for key, upload_id in uploads:
            try:
                self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as exc:
                log.warning("cannot abort the multipart upload of s3://%s/%s: %s", bucket, key, exc)
