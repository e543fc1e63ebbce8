"""Job translation, pure: the gridmanager's submit ClassAd -> a :class:`JobSpec`.

No I/O happens here, so every rule is unit-testable: the V1/V2 argument and environment
syntaxes of HTCondor, path resolution against ``Iwd``, per-job resources from the
``+remote_`` attributes and Pegasus's glite ``cerequirements``, and a deterministic Batch
``jobName`` derived from ``JobDirectory`` (so a later GAHP process can find the job by
name).  Every rejected input raises :class:`JobAdError` with a message that tells the
user what to fix; it becomes the job's ``HoldReason``.

Reference: gahp-protocol.md §3.2 (how the ad is built) and §3.3 (attribute table).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import re
from typing import Any

import classad2

#: ``timeout.attemptDurationSeconds`` minimum imposed by AWS Batch.
MIN_RUNTIME_SECONDS = 60
#: AWS Batch allows 1-10 attempts in a retry strategy.
MAX_ATTEMPTS = 10
#: AWS Batch allows at most 50 tags on a job.
MAX_TAGS = 50


#: Argument separators of HTCondor's C parsers (not Python's Unicode-wide isspace()).
V2_SPACE = " \t\n\r\v\f"
V1_SPACE = " \t\n\r"


def _short(text: str, limit: int = 80) -> str:
    """Quote user input in a message without echoing megabytes of it."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class JobAdError(ValueError):
    """The submit ad cannot be turned into a Batch job; the message says what to fix."""


@dataclasses.dataclass
class JobSpec:
    """Everything the GAHP needs to know about one grid job, independent of AWS."""

    job_directory: str
    job_name: str
    cmd: str
    args: list[str]
    env: dict[str, str]
    iwd: str
    stdin: str | None  # absolute submit-host path, None for /dev/null
    stdout: str | None  # absolute submit-host path, None for /dev/null
    stderr: str | None
    transfer_input: list[str] = dataclasses.field(default_factory=list)
    transfer_output: list[str] = dataclasses.field(default_factory=list)
    output_remaps: dict[str, str] = dataclasses.field(default_factory=dict)
    stage_cmd: bool = True
    x509_proxy: str | None = None
    queue: str | None = None
    job_definition: str | None = None
    runtime: int | None = None
    project: str | None = None
    memory_mib: int | None = None
    vcpus: float | None = None
    gpus: int | None = None
    retry_attempts: int | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def merged_output(self) -> bool:
        """True when stdout and stderr go to one file (``Out == Err``)."""
        return self.stdout is not None and self.stdout == self.stderr


# --------------------------------------------------------------------------- syntaxes


def parse_args_v2(raw: str) -> list[str]:
    """HTCondor V2 ("new") argument syntax.

    Whitespace separates arguments; a single quote opens/closes a section where
    whitespace is literal; inside such a section ``''`` is a literal quote.  ``''`` on
    its own is an empty argument.
    """
    args: list[str] = []
    current: list[str] = []
    started = False  # an argument is open (possibly empty, when quotes were seen)
    in_quote = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if in_quote:
            if ch == "'":
                if raw.startswith("''", i):
                    current.append("'")
                    i += 2
                    continue
                in_quote = False
            else:
                current.append(ch)
        elif ch == "'":
            in_quote = started = True
        elif ch in V2_SPACE:
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
        i += 1
    if in_quote:
        raise JobAdError(f"unbalanced single quote in arguments {_short(raw)}")
    if started:
        args.append("".join(current))
    return args


def parse_args_v1(raw: str) -> list[str]:
    """HTCondor V1 (Unix) argument syntax: split on blanks, no quoting."""
    return [arg for arg in re.split(f"[{re.escape(V1_SPACE)}]+", raw) if arg]


def parse_env_v2(raw: str) -> dict[str, str]:
    """HTCondor V2 environment: ``NAME=VALUE`` entries in V2 argument syntax."""
    return _env_entries(parse_args_v2(raw))


def parse_env_v1(raw: str, delimiter: str = ";") -> dict[str, str]:
    """HTCondor V1 environment: entries separated by ``EnvDelim`` (``;`` on Unix)."""
    return _env_entries(entry for entry in raw.split(delimiter or ";") if entry.strip())


def _env_entries(entries) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise JobAdError(f"environment entry {_short(entry)} is not NAME=VALUE")
        env[name] = value
    return env


_JOB_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def job_name_for(job_directory: str) -> str:
    """A valid, deterministic Batch ``jobName`` for a grid job.

    Batch names are 1-128 characters of ``[A-Za-z0-9_-]``, starting alphanumeric.  The
    blahp-style ``home_bl_`` prefix carries no information and is dropped; names that
    would be too long keep their start and end in a hash, so distinct jobs stay distinct.
    """
    base = job_directory[len("home_bl_"):] if job_directory.startswith("home_bl_") else job_directory
    name = _JOB_NAME_BAD.sub("-", base).strip("-_")
    name = "condor-" + name if name else "condor-job"
    if len(name) > 128:
        digest = hashlib.sha256(job_directory.encode()).hexdigest()[:16]
        name = name[:111] + "-" + digest
    return name


# --------------------------------------------------------------------------- the ad


def parse_submit_ad(text: str) -> classad2.ClassAd:
    """Parse the new-syntax ClassAd argument of ``BLAH_JOB_SUBMIT``, strictly: a lenient
    parse would drop a malformed tail and report a misleading missing attribute."""
    if not text.strip().startswith("["):
        raise JobAdError(f"cannot parse the submit ClassAd {_short(text)}: expected [ ... ]")
    try:
        classad2.ExprTree(text)  # the whole text must be one well-formed record
        ad = classad2.parseOne(text)
    except Exception:
        raise JobAdError(f"cannot parse the submit ClassAd {_short(text)}: not valid new ClassAd syntax") from None
    return ad


def _value(ad: classad2.ClassAd, name: str) -> Any:
    """Evaluated attribute, or None when absent, ``undefined`` or ``error``."""
    if name not in ad:
        return None
    try:
        value = ad.eval(name)
    except Exception:
        return None
    if isinstance(value, classad2.Value):  # Undefined / Error
        return None
    return value


def _string(ad, name: str) -> str | None:
    value = _value(ad, name)
    if value is None:
        return None
    if isinstance(value, (classad2.ClassAd, list)):
        raise JobAdError(f"{name} must be a string, not {value!r}")
    return str(value)


def _number(ad, name: str, *, minimum: float | None = None, integer: bool = True):
    value = _value(ad, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip())
        except ValueError:
            raise JobAdError(f"{name} must be a number, got {value!r}") from None
    if integer:
        if float(value) != int(value):
            raise JobAdError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    if minimum is not None and value < minimum:
        raise JobAdError(f"{name} must be at least {minimum:g}, got {value:g}")
    return value


def _resolve(iwd: str, path: str | None) -> str | None:
    """Absolute submit-host path for ``In``/``Out``/``Err``; None means /dev/null."""
    if path is None or path == "" or path == "/dev/null":
        return None
    return path if path.startswith("/") else posixpath.normpath(posixpath.join(iwd, path))


def _split_list(raw: str | None) -> list[str]:
    """A submit-file file list: comma (and whitespace) separated."""
    if not raw:
        return []
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parse_remaps(raw: str | None) -> dict[str, str]:
    """``TransferOutputRemaps``: ``src = dst; src2 = dst2``."""
    remaps: dict[str, str] = {}
    for entry in (raw or "").split(";"):
        if not entry.strip():
            continue
        src, sep, dst = entry.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise JobAdError(f"TransferOutputRemaps entry {_short(entry.strip())} is not 'name = destination'")
        remaps[src.strip()] = dst.strip()
    return remaps


def _parse_tags(ad) -> dict[str, str]:
    """``+remote_Tags``: ``"k=v,k2=v2"`` or a nested ClassAd ``[k = "v"]``."""
    if "Tags" not in ad:
        return {}
    value = _value(ad, "Tags")
    tags: dict[str, str] = {}
    if isinstance(value, classad2.ClassAd):
        for key in value.keys():
            tags[key] = str(value.eval(key))
    elif isinstance(value, str):
        for entry in value.split(","):
            if not entry.strip():
                continue
            key, sep, val = entry.partition("=")
            if not sep or not key.strip():
                raise JobAdError(f"Tags entry {_short(entry.strip())} is not key=value")
            tags[key.strip()] = val.strip()
    elif value is not None:
        raise JobAdError('Tags must be a string "key=value,..." or a ClassAd [key = "value"]')
    for key, val in tags.items():
        if not 1 <= len(key) <= 128 or len(val) > 256:
            raise JobAdError(f"tag {key!r}: keys are 1-128 characters and values at most 256")
    return tags


_CE_TERM = re.compile(r"^\s*\(?\s*([A-Za-z_][A-Za-z0-9_]*)\s*==\s*(.+?)\s*\)?\s*$", re.S)


def parse_cerequirements(ad) -> dict[str, Any]:
    """Pegasus glite ``cerequirements``: ``NAME == value && ...`` -> {NAME: value}.

    Pegasus writes it either as a string holding the expression, or as the expression
    itself (``+remote_cerequirements`` arrives unevaluated).  Each right-hand side is
    evaluated against the submit ad; terms that refer to attributes the GAHP never sees
    (Pegasus's ``+pegasus_*`` variables are not forwarded) are left out.
    """
    if "CERequirements" not in ad:
        return {}
    expr = ad.lookup("CERequirements")
    text = str(expr)
    try:
        value = expr.eval(ad)
    except Exception:
        value = None
    if isinstance(value, str):
        text = value
    terms: dict[str, Any] = {}
    for term in _split_top_level_and(text):
        match = _CE_TERM.match(term)
        if not match:
            continue
        name, rhs = match.group(1).upper(), match.group(2)
        try:
            result = classad2.ExprTree(rhs).eval(ad)
        except Exception:
            continue
        if isinstance(result, classad2.Value):
            continue
        terms[name] = result
    return terms


def _split_top_level_and(text: str) -> list[str]:
    parts, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and text.startswith("&&", i):
            parts.append(text[start:i])
            start = i + 2
            i += 1
        i += 1
    parts.append(text[start:])
    return [p for p in (part.strip() for part in parts) if p]


def job_spec_from_ad(ad: classad2.ClassAd) -> JobSpec:
    """Translate a parsed submit ad into a :class:`JobSpec` (raises :class:`JobAdError`)."""
    job_directory = _string(ad, "JobDirectory")
    if not job_directory:
        raise JobAdError("the submit ad has no JobDirectory (is this really condor_gridmanager?)")
    iwd = _string(ad, "Iwd")
    if not iwd or not iwd.startswith("/"):
        raise JobAdError(f"Iwd must be an absolute path, got {iwd!r}")
    cmd = _string(ad, "Cmd")
    if not cmd:
        raise JobAdError("the submit ad has no Cmd (executable)")
    if not cmd.startswith("/"):
        cmd = posixpath.join(iwd, cmd)

    arguments = _string(ad, "Arguments")
    args = parse_args_v2(arguments) if arguments is not None else parse_args_v1(_string(ad, "Args") or "")

    environment = _string(ad, "Environment")
    if environment is not None:
        env = parse_env_v2(environment)
    else:
        env = parse_env_v1(_string(ad, "Env") or "", _string(ad, "EnvDelim") or ";")

    ce = parse_cerequirements(ad)
    for name in ("NODES", "CORES", "TOTAL_MEMORY", "WALLTIME"):
        if name in ce:
            try:
                ce[name] = float(ce[name]) if name == "CORES" else int(ce[name])
            except (TypeError, ValueError):
                raise JobAdError(f"cerequirements {name} must be a number, got {_short(str(ce[name]))}") from None
    if ce.get("NODES", 1) > 1:
        raise JobAdError(
            f"NODES == {ce['NODES']} requested: multi-node parallel jobs are not supported; "
            "request CORES on one node instead"
        )

    stage_cmd = _value(ad, "StageCmd")
    runtime = _number(ad, "BatchRuntime")
    if runtime is None and "WALLTIME" in ce:
        runtime = int(ce["WALLTIME"])
    if runtime is not None and runtime < MIN_RUNTIME_SECONDS:
        raise JobAdError(
            f"batch_runtime is {runtime} s but AWS Batch timeouts must be at least "
            f"{MIN_RUNTIME_SECONDS} s; set batch_runtime = {MIN_RUNTIME_SECONDS} or more"
        )

    memory = _number(ad, "RequestMemory", minimum=1)
    if memory is None and "TOTAL_MEMORY" in ce:
        memory = int(ce["TOTAL_MEMORY"])
    vcpus = _number(ad, "RequestCpus", minimum=0.25, integer=False)
    if vcpus is None and "CORES" in ce:
        vcpus = float(ce["CORES"])
    gpus = _number(ad, "RequestGpus", minimum=0)
    if gpus is None:
        gpus = _number(ad, "GPUNumber", minimum=0)

    attempts = _number(ad, "RetryAttempts", minimum=1)
    if attempts is not None and attempts > MAX_ATTEMPTS:
        raise JobAdError(f"RetryAttempts is {attempts}; AWS Batch allows 1 to {MAX_ATTEMPTS}")

    tags = _parse_tags(ad)
    project = _string(ad, "BatchProject")
    if project:
        tags.setdefault("BatchProject", project[:256])
    if "JOBNAME" in ce:
        tags.setdefault("PegasusJobName", str(ce["JOBNAME"])[:256])
    if len(tags) > MAX_TAGS:
        raise JobAdError(f"{len(tags)} tags given; AWS Batch allows at most {MAX_TAGS}")

    proxy = _string(ad, "x509userproxy")
    return JobSpec(
        job_directory=job_directory,
        job_name=job_name_for(job_directory),
        cmd=cmd,
        args=args,
        env=env,
        iwd=iwd,
        stdin=_resolve(iwd, _string(ad, "In")),
        stdout=_resolve(iwd, _string(ad, "Out")),
        stderr=_resolve(iwd, _string(ad, "Err")),
        transfer_input=_split_list(_string(ad, "TransferInput")),
        transfer_output=_split_list(_string(ad, "TransferOutput")),
        output_remaps=_parse_remaps(_string(ad, "TransferOutputRemaps")),
        stage_cmd=stage_cmd is not False,
        x509_proxy=(proxy if proxy.startswith("/") else os.path.join(iwd, proxy)) if proxy else None,
        queue=_string(ad, "Queue") or (str(ce["QUEUE"]) if "QUEUE" in ce else None),
        job_definition=_string(ad, "JobDefinition"),
        runtime=runtime,
        project=project,
        memory_mib=memory,
        vcpus=vcpus,
        gpus=gpus or None,
        retry_attempts=attempts,
        tags=tags,
    )
