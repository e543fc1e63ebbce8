"""pegasusrc parsing and the precedence of command-line flags over ``--conf`` properties.

Pegasus's client reads its ``--conf`` file as Java properties and drops the leading
``pegasus.`` from the keys.  Each flag falls back to one property:

=====================  =========================================
flag                   property
=====================  =========================================
``--account``          ``pegasus.aws.account``
``--region``           ``pegasus.aws.region``
``--job-definition``   ``pegasus.aws.batch.job_definition``
``--compute-environment`` ``pegasus.aws.batch.compute_environment``
``--job-queue``        ``pegasus.aws.batch.job_queue``
``--s3``               ``pegasus.aws.batch.s3_bucket``
``--endpoint-url``     ``pegasus.aws.endpoint_url`` (our extension)
=====================  =========================================

The command line always wins over the properties file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Optional

#: setting name -> property key (without the leading ``pegasus.``)
PROPERTY_KEYS = {
    "account": "aws.account",
    "region": "aws.region",
    "job_definition": "aws.batch.job_definition",
    "compute_environment": "aws.batch.compute_environment",
    "job_queue": "aws.batch.job_queue",
    "s3": "aws.batch.s3_bucket",
    "endpoint_url": "aws.endpoint_url",
}


def _unescape(value: str) -> str:
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            n = value[i + 1]
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


_SEP = re.compile(r"(?<!\\)[=:\s]")


def parse_properties_text(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text: ``#``/``!`` comments, ``=``/``:``/blank separators,
    backslash line continuation and escapes.  Later keys win."""
    props: dict[str, str] = {}
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.lstrip() if not buf else raw.lstrip()
        if not buf and (not line or line[0] in "#!"):
            continue
        # odd number of trailing backslashes = continuation
        stripped = line.rstrip("\r\n")
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            buf += stripped[:-1]
            continue
        buf += stripped
        logical.append(buf)
        buf = ""
    if buf:
        logical.append(buf)
    for line in logical:
        m = _SEP.search(line)
        if not m:
            key, value = line, ""
        else:
            key = line[: m.start()]
            rest = line[m.start():]
            # separator: optional blanks, optional one of = :, optional blanks
            rest = re.sub(r"^\s*[=:]?\s*", "", rest, count=1)
            value = rest
        props[_unescape(key)] = _unescape(value.rstrip())
    return props


def read_properties(path: str) -> dict[str, str]:
    """Read a pegasusrc file and return its keys with the leading ``pegasus.`` removed
    (keys without the prefix are kept as they are)."""
    with open(path, encoding="utf-8") as fh:
        props = parse_properties_text(fh.read())
    out: dict[str, str] = {}
    for key, value in props.items():
        short = key[len("pegasus."):] if key.startswith("pegasus.") else key
        out[short] = value
    return out


@dataclass
class Settings:
    """The effective settings of one client run (flags over properties)."""
    prefix: Optional[str] = None
    account: Optional[str] = None
    region: Optional[str] = None
    job_definition: Optional[str] = None
    compute_environment: Optional[str] = None
    job_queue: Optional[str] = None
    s3: Optional[str] = None
    endpoint_url: Optional[str] = None
    #: where each value came from: "flag", "conf", "env" or "default"
    source: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}


def resolve_settings(flags: dict, conf_path: Optional[str] = None,
                     environ: Optional[dict] = None) -> Settings:
    """Combine command-line ``flags`` (setting name -> value or None) with the ``--conf``
    properties.  A flag given on the command line wins; otherwise the property is used.
    ``endpoint_url`` finally falls back to ``AWS_ENDPOINT_URL`` and ``region`` to
    ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (the AWS SDK's own variables)."""
    environ = os.environ if environ is None else environ
    props = read_properties(conf_path) if conf_path else {}
    settings = Settings(prefix=flags.get("prefix") or props.get("aws.batch.prefix"))
    settings.source["prefix"] = "flag" if flags.get("prefix") else ("conf" if settings.prefix else "default")
    for name, key in PROPERTY_KEYS.items():
        value = flags.get(name)
        src = "flag"
        if value in (None, ""):
            value = props.get(key) or None
            src = "conf"
        if value in (None, "") and name == "endpoint_url":
            value = environ.get("AWS_ENDPOINT_URL") or None
            src = "env"
        if value in (None, "") and name == "region":
            value = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
            src = "env"
        if isinstance(value, str):
            value = value.strip()
        setattr(settings, name, value)
        settings.source[name] = src if value not in (None, "") else "default"
    return settings
