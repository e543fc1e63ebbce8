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
* The wrapper downloads and verifies the inputs, runs the command, uploads stdout,
  stderr, the ``transfer_output_files`` and a small result record ``out/result``.
* :meth:`Stager.stage_out` (when Batch says SUCCEEDED or FAILED) reads the record and
  places the outputs under ``Iwd``: atomically, checksum-verified and confined.
* :meth:`Stager.cleanup` deletes the prefix.

Layout of one attempt's prefix::

    <S3_URL>/<job name>/<attempt>/wrapper.sh
        in/meta/job.sh  in/meta/inputs.sha256  in/meta/exe/<name>  in/meta/stdin
        in/work/<transfer_input_files basenames, directories included>
        out/stdout  out/stderr  out/f/<i>  out/d/<i>/...  out/result

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
RESULT_KEY = "out/result"

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


def render_job_script(spec: JobSpec, plan: InputPlan, *, fast_manifest: bool) -> str:
    """``job.sh``, sourced by the wrapper: the exact argv/env and the input manifest."""
    q = sh_quote
    lines = [
        "# awsbatch-gahp job description, sourced by the job wrapper; generated, do not edit",
        f"# JobDirectory {spec.job_directory}".replace("\n", " "),
        f"job_bytes_in={plan.bytes}",
        f"job_fast_check={'1' if fast_manifest else ''}",
        f"job_stdin={q(plan.stdin or '')}",
        f"job_stdout={'file' if spec.stdout else 'null'}",
        f"job_stderr={'merged' if spec.merged_output else ('file' if spec.stderr else 'null')}",
    ]
    lines.append("job_dirs() {")
    lines += [f"    mkdir -p \"$root/work/\"{q(d)} || fail_staging {q('cannot create input directory ' + d)}"
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
        lines.append(f"    chmod 600 \"$root/\"{q(plan.proxy)} 2>/dev/null")
        lines.append(f"    X509_USER_PROXY=\"$root/\"{q(plan.proxy)}; export X509_USER_PROXY")
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
    if odd:  # names the shell cannot export go through env(1)
        argv += ["env"] + [q(f"{k}={v}") for k, v in odd.items()]
    argv.append(f"\"$root/\"{q(plan.cmd)}" if plan.cmd_staged else q(plan.cmd))
    argv += [q(arg) for arg in spec.args]
    lines.append("set -- " + " \\\n    ".join(argv))
    return "\n".join(lines) + "\n"


def parse_result(text: str) -> dict[str, str]:
    """The wrapper's ``key=value`` result record (later keys win, junk lines ignored)."""
    record: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and re.match(r"^[A-Za-z0-9_.]+$", key):
            record[key] = value
    return record


def result_of(record: dict[str, str]) -> JobResult:
    def number(key):
        try:
            return int(record[key])
        except (KeyError, ValueError):
            return None

    return JobResult(exit_code=number("exit_code"), exit_signal=number("exit_signal"))


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


def ensure_parent(base: str, dest: str) -> None:
    """Create ``dest``'s missing directories below ``base`` (which must exist) without
    following a symbolic link, and check that ``dest`` really lands under ``base``."""
    if not os.path.isdir(base):
        raise StagingError(f"cannot write {dest}: directory {base} does not exist")
    parent = posixpath.dirname(dest)
    rel = posixpath.relpath(parent, base)
    if rel == ".." or rel.startswith("../") or rel.startswith("/"):
        raise StagingError(f"refusing to write {dest}: it is not under {base}")
    current = base
    if rel != ".":
        for part in rel.split("/"):
            current = posixpath.join(current, part)
            if os.path.islink(current):
                raise StagingError(
                    f"refusing to write {dest}: {current} is a symbolic link, and outputs must stay "
                    f"under {base}")
            if not os.path.lexists(current):
                try:
                    os.mkdir(current, 0o777)
                except FileExistsError:
                    pass
            if os.path.islink(current) or not os.path.isdir(current):
                raise StagingError(f"cannot write {dest}: {current} is not a directory")
    real_base = os.path.realpath(base)
    real = os.path.realpath(parent)
    if real != real_base and not real.startswith(real_base.rstrip("/") + "/"):
        raise StagingError(f"refusing to write {dest}: it resolves outside {base}")
    if os.path.isdir(dest) and not os.path.islink(dest):
        raise StagingError(f"cannot write output {dest}: a directory of that name exists")


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
            script = render_job_script(spec, plan, fast_manifest=manifest is not None).encode("utf-8", "surrogateescape")
            if manifest is not None:
                self._put_bytes(bucket, prefix + FAST_MANIFEST_KEY, manifest.encode("utf-8", "surrogateescape"))
            job_sha = self._put_bytes(bucket, prefix + JOB_SCRIPT_KEY, script)
            if self._wrapper is None:
                self._wrapper = wrapper_text()
            self._put_bytes(bucket, prefix + WRAPPER_KEY, self._wrapper)
        except BaseException:
            try:
                self.cleanup(url)
            except Exception as exc:  # best effort
                log.debug("cannot clean %s after a failed stage-in: %s", url, exc)
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
        small = [f for f in plan.files if f.size <= SMALL_FILE]
        large = [f for f in plan.files if f.size > SMALL_FILE]
        futures = {}
        for item in small:
            futures[self._pool.submit(self._put_small, bucket, prefix + "in/" + item.rel, item.path)] = item
        if large:
            manager = self._transfer_manager()
            # The content hash runs beside the (multipart, parallel) upload.
            hashes = {id(item): self._pool.submit(_sha256_file, item.path) for item in large}
            uploads = [
                manager.upload(item.path, bucket, prefix + "in/" + item.rel,
                               extra_args={"ChecksumAlgorithm": "SHA256"})
                for item in large
            ]
            for item, upload in zip(large, uploads):
                upload.result()
                item.sha256 = hashes[id(item)].result()
        for future in concurrent.futures.as_completed(futures):
            futures[future].sha256 = future.result()

    # ------------------------------------------------------------------ stage out
    def _read_result(self, bucket: str, prefix: str, detail: dict) -> dict[str, str]:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=prefix + RESULT_KEY)["Body"].read()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise StagingError(no_record_reason(detail)) from None
            raise
        return parse_result(body.decode("utf-8", "surrogateescape"))

    def stage_out(self, record: JobRecord, detail: dict) -> JobResult:
        if not record.staging_url:
            raise StagingError("the job has no staging prefix")
        bucket, prefix = split_s3_url(record.staging_url)
        result = self._read_result(bucket, prefix, detail)
        job = detail.get("jobId") or "?"
        if result.get("error"):
            raise StagingError(f"AWS Batch job {job} could not run its command: {result['error']}")
        iwd = record.iwd
        downloads: list[_Download] = []
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
            base = iwd if confined else posixpath.dirname(dest)
            if fields[0] == "file" and len(fields) == 3:
                downloads.append(_Download(f"{prefix}out/f/{i}", dest, name, fields[1], int(fields[2]), base))
            elif fields[0] == "dir":
                downloads += self._plan_directory(bucket, f"{prefix}out/d/{i}/", dest, name, base)
            else:
                raise StagingError(f"cannot transfer output {name!r} back: the job reported {kind!r}")
        streams = []
        if record.stdout:
            streams.append(("stdout", record.stdout))
        if record.stderr and record.stderr != record.stdout:
            streams.append(("stderr", record.stderr))
        empties = []
        for stream, dest in streams:
            fields = result.get(stream, "").split()
            if len(fields) == 2:
                downloads.append(_Download(f"{prefix}out/{stream}", dest, stream, fields[0], int(fields[1]),
                                           posixpath.dirname(dest)))
            else:
                empties.append(dest)  # the command never wrote one: an empty file, as HTCondor
        for item in downloads:
            ensure_parent(item.base, item.dest)
        for dest in empties:
            ensure_parent(posixpath.dirname(dest), dest)
        self._download_all(bucket, downloads)
        for dest in empties:
            self._write_atomic(dest, b"")
        return result_of(result)

    def _plan_directory(self, bucket, key_prefix, dest, name, base) -> list[_Download]:
        items = []
        for key in self._list(bucket, key_prefix):
            rel = key[len(key_prefix):]
            if not relative_name_ok(rel) or rel.endswith("/"):
                raise StagingError(f"refusing output {name}/{rel}: a name inside the output directory "
                                   f"{name!r} would escape it")
            path = posixpath.normpath(posixpath.join(dest, rel))
            items.append(_Download(key, path, f"{name}/{rel}", None, None, base))
        return items

    def _download_all(self, bucket: str, downloads: list[_Download]) -> None:
        if not downloads:
            return
        futures = [self._pool.submit(self._download, bucket, item) for item in downloads]
        errors = []
        for future in futures:
            try:
                future.result()
            except StagingError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _download(self, bucket: str, item: _Download) -> None:
        h = hashlib.sha256()
        size = 0
        with replacing(item.dest, 0o666 & ~self._umask) as f:
            try:
                args = {"Bucket": bucket, "Key": item.key}
                if item.sha256 is None:
                    args["ChecksumMode"] = "ENABLED"  # botocore verifies S3's own checksum
                body = self.s3.get_object(**args)["Body"]
                for chunk in body.iter_chunks(_CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "404"):
                    raise StagingError(f"output {item.what} is missing from s3://{bucket}/{item.key}") from None
                if "checksum" in str(exc).lower():
                    raise StagingError(f"output {item.what} failed its S3 checksum check: {exc}") from None
                raise
            if item.sha256 is not None and (h.hexdigest() != item.sha256 or size != item.size):
                raise StagingError(
                    f"output {item.what} is corrupted: s3://{bucket}/{item.key} has SHA-256 {h.hexdigest()} "
                    f"({size} bytes) but the job wrote {item.sha256} ({item.size} bytes); release the job to "
                    "run it again")

    def _write_atomic(self, dest: str, data: bytes) -> None:
        write_atomically(dest, data, 0o666 & ~self._umask)

    # ------------------------------------------------------------------ cleanup
    def _list(self, bucket: str, prefix: str) -> Iterable[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def cleanup(self, staging_url: str) -> None:
        bucket, prefix = split_s3_url(staging_url)
        if not prefix:
            raise ValueError(f"refusing to delete a whole bucket ({staging_url})")
        batch: list[dict] = []
        for key in self._list(bucket, prefix):
            batch.append({"Key": key})
            if len(batch) >= DELETE_BATCH:
                self.s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                batch = []
        if batch:
            self.s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
