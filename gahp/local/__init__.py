"""An embedded, Docker-free AWS Batch for demos and tests.

moto serves every AWS API (S3, CloudWatch Logs, IAM, EC2 and the Batch
entity APIs) on one loopback port; the Batch *job* APIs are answered by our
own store, and jobs really run, as local processes of the invoking user.

This is a development aid, not a security boundary: a job can do anything
the user running the emulator can do. Container images are ignored; the
job's command runs on the host.
"""
from .entities import LocalEntities
from .server import LocalBatch

__all__ = ["LocalBatch", "LocalEntities"]
