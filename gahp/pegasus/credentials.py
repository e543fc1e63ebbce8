"""Credentials and endpoints, the way Pegasus users already have them.

* AWS (Batch, CloudWatch Logs, and S3 when no ``pegasus-s3`` site is named): the standard
  AWS chain -- environment, ``~/.aws/credentials`` and ``~/.aws/config`` (``AWS_PROFILE``),
  instance or task role.
* S3 in ``pegasus-s3`` style: an ``s3://user@site/bucket/path`` URL is resolved with
  ``pegasus-s3``'s credentials file -- ``PEGASUS_CREDENTIALS``, else ``S3CFG``, else
  ``~/.pegasus/credentials.conf``, else ``~/.pegasus/s3cfg``, else ``~/.s3cfg`` -- whose
  ``[site]`` section gives ``endpoint`` (and ``region``) and whose ``[user@site]`` section gives
  ``access_key`` and ``secret_key``.  The file must not be readable by group or others
  (mode 600), exactly as ``pegasus-s3`` insists.
* Endpoint override: ``--endpoint-url`` (or the ``pegasus.aws.endpoint_url`` property, or the
  SDK's own ``AWS_ENDPOINT_URL``) points every service at one URL, e.g. the local Batch.
"""
from __future__ import annotations

import configparser
import os
import stat
from dataclasses import dataclass
from typing import Callable, Optional

import boto3
from botocore.config import Config

from . import PegasusAWSBatchError

#: callables run on every client made by :func:`make_clients` (tests use it to count calls)
CLIENT_HOOKS: list[Callable] = []

CREDENTIAL_CANDIDATES = ("~/.pegasus/credentials.conf", "~/.pegasus/s3cfg", "~/.s3cfg")


def find_pegasus_credentials(environ: Optional[dict] = None) -> Optional[str]:
    """Path of the pegasus-s3 credentials file to use, or None."""
    environ = os.environ if environ is None else environ
    for var in ("PEGASUS_CREDENTIALS", "S3CFG"):
        if environ.get(var):
            return os.path.expanduser(environ[var])
    for cand in CREDENTIAL_CANDIDATES:
        path = os.path.expanduser(cand)
        if os.path.isfile(path):
            return path
    return None


def load_pegasus_credentials(path: str) -> configparser.ConfigParser:
    """Read a pegasus-s3 credentials file after the same permission check pegasus-s3 makes."""
    if not os.path.isfile(path):
        raise PegasusAWSBatchError(f"pegasus-s3 credentials file {path} not found")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PegasusAWSBatchError(
            f"Permissions of credentials file {path} are too liberal "
            f"({stat.filemode(mode)}); run: chmod 600 {path}")
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(path)
    return cfg


@dataclass
class S3Location:
    """``s3://[user@site/]bucket[/key/prefix]``"""
    bucket: str
    key: str = ""          # without leading "/", may be ""
    ident: Optional[str] = None   # "user@site" or None
    site: Optional[str] = None

    @property
    def url(self) -> str:
        key = f"/{self.key}" if self.key else ""
        return f"s3://{self.bucket}{key}"


def parse_s3_url(url: str) -> S3Location:
    if not url.startswith("s3://"):
        # a plain bucket name
        bucket, _, key = url.partition("/")
        return S3Location(bucket=bucket, key=key.strip("/"))
    rest = url[len("s3://"):]
    ident = site = None
    first, _, rest2 = rest.partition("/")
    if "@" in first:
        ident = first
        site = first.split("@", 1)[1]
        rest = rest2
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise PegasusAWSBatchError(f"no bucket in S3 URL {url!r}")
    return S3Location(bucket=bucket, key=key.strip("/"), ident=ident, site=site)


def s3_client_kwargs(loc: S3Location, endpoint_url: Optional[str],
                     environ: Optional[dict] = None) -> dict:
    """Keyword arguments for the S3 client: from the pegasus-s3 credentials when the URL names
    a ``user@site``, else from the endpoint override and the AWS chain."""
    kwargs: dict = {}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if loc.ident:
        path = find_pegasus_credentials(environ)
        if not path:
            raise PegasusAWSBatchError(
                f"S3 URL names {loc.ident} but no pegasus-s3 credentials file was found "
                "(~/.pegasus/credentials.conf, PEGASUS_CREDENTIALS or S3CFG)")
        cfg = load_pegasus_credentials(path)
        if not cfg.has_section(loc.site):
            raise PegasusAWSBatchError(f"{path} has no section [{loc.site}]")
        if not cfg.has_section(loc.ident):
            raise PegasusAWSBatchError(f"{path} has no section [{loc.ident}]")
        endpoint = cfg.get(loc.site, "endpoint", fallback=None)
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        region = cfg.get(loc.site, "region", fallback=None)
        if region:
            kwargs["region_name"] = region
        kwargs["aws_access_key_id"] = cfg.get(loc.ident, "access_key")
        kwargs["aws_secret_access_key"] = cfg.get(loc.ident, "secret_key")
    return kwargs


def client_config() -> Config:
    attempts = int(os.environ.get("PEGASUS_AWS_BATCH_MAX_ATTEMPTS", "4"))
    return Config(retries={"mode": "standard", "max_attempts": attempts},
                  connect_timeout=5, read_timeout=60)


class Clients:
    """One long-lived client per service (Batch, CloudWatch Logs, S3)."""

    def __init__(self, region: Optional[str], endpoint_url: Optional[str] = None,
                 s3_location: Optional[S3Location] = None, profile: Optional[str] = None):
        try:
            self.session = boto3.session.Session(profile_name=profile, region_name=region)
        except Exception as exc:  # ProfileNotFound and friends
            raise PegasusAWSBatchError(f"AWS session: {exc}") from exc
        self.region = region or self.session.region_name
        if not self.region:
            raise PegasusAWSBatchError(
                "no AWS region: give --region, pegasus.aws.region in --conf, or AWS_REGION")
        self.endpoint_url = endpoint_url
        cfg = client_config()
        common = {"region_name": self.region, "config": cfg}
        if endpoint_url:
            common["endpoint_url"] = endpoint_url
        self.batch = self.session.client("batch", **common)
        self.logs = self.session.client("logs", **common)
        s3kw = dict(common)
        if s3_location is not None:
            s3kw.update(s3_client_kwargs(s3_location, endpoint_url))
        self.s3 = self.session.client("s3", **s3kw)
        for client in (self.batch, self.logs, self.s3):
            for hook in CLIENT_HOOKS:
                hook(client)
