"""``pegasus-aws-batch``: a drop-in for Pegasus's client of the same name.

Same flags (short and long) and ``--conf`` property fallbacks as Pegasus's Java client, plus
``--endpoint-url`` and ``--profile``.  Modes:

* ``--create``: create the JSON-defined entities and the bucket, run nothing;
* ``--delete``: delete what a ``--create`` run with the same settings created (only
  JSON-defined entities and ``<prefix>-bucket``, whose run key prefix is emptied).  In any
  other bucket only the client's own ``_pegasus-aws-batch/<prefix>/`` objects are removed:
  a user-supplied ``--s3`` path in a bucket this client did not create is never emptied;
* neither: create, run the bag(s) of tasks from the positional ``.in`` files, tear down what
  this run created.

Exit codes: 0 all tasks succeeded, 1 a task failed, 2 an AWS or internal error.
"""
from __future__ import annotations

from gahp.batch import describe_error as aws_error_text

import argparse
import logging
import logging.handlers
import os
import sys
from typing import Optional

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from . import EXIT_NON_TASK_FAILURE, EXIT_OK, PegasusAWSBatchError, StopFlag
from .bag import BagRunner, read_tasks
from .credentials import Clients, parse_s3_url
from .entities import EntityManager
from .properties import resolve_settings

log = logging.getLogger("pegasus-aws-batch")

LEVELS = {"fatal": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
          "warning": logging.WARNING, "info": logging.INFO, "config": logging.INFO,
          "debug": logging.DEBUG, "trace": logging.DEBUG, "all": logging.DEBUG}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pegasus-aws-batch",
        description="Run a bag of tasks on AWS Batch, creating and deleting the compute "
                    "environment, job queue, job definition and S3 bucket as needed "
                    "(a drop-in for Pegasus's pegasus-aws-batch).")
    p.add_argument("-a", "--account", help="AWS account ID (pegasus.aws.account)")
    p.add_argument("-r", "--region", help="AWS region (pegasus.aws.region)")
    p.add_argument("-C", "--conf", help="properties file with pegasus.aws.* keys")
    p.add_argument("--ce", "--compute-environment", dest="compute_environment",
                   help="compute environment: ARN, name, or JSON file to create one")
    p.add_argument("-j", "--job-definition", dest="job_definition",
                   help="job definition: ARN, name[:revision], or JSON file to register one")
    p.add_argument("-q", "--job-queue", dest="job_queue",
                   help="job queue: ARN, name, or JSON file to create one")
    p.add_argument("-s", "--s3", help="S3 bucket URL s3://[user@site/]bucket[/prefix] used for staging")
    p.add_argument("-p", "--prefix", help="prefix for created entity names and the run's files (required)")
    p.add_argument("-c", "--create", action="store_true", help="only create the entities")
    p.add_argument("-d", "--delete", action="store_true", help="only delete the entities")
    p.add_argument("-f", "--files", help="comma separated list of files to upload for every task")
    p.add_argument("-m", "--merge-logs", dest="merge_logs",
                   help="merge the task logs into <prefix>.out and <prefix>.err")
    p.add_argument("-l", "--log-file", dest="log_file", help="log to this file (rotated)")
    p.add_argument("-L", "--log-level", dest="log_level", default="info",
                   help="fatal, error, warn, info, debug or trace")
    p.add_argument("--endpoint-url", dest="endpoint_url",
                   help="one endpoint URL for Batch, Logs and S3 (e.g. the local Batch); "
                        "also pegasus.aws.endpoint_url or AWS_ENDPOINT_URL")
    p.add_argument("--profile", help="named profile in ~/.aws/credentials and ~/.aws/config")
    p.add_argument("job_files", nargs="*", metavar="JOB.in",
                   help='JSON files {"SubmitJob": [{jobName, executable, arguments, environment}]}')
    return p


def setup_logging(level: str, log_file: Optional[str]):
    log.setLevel(LEVELS.get((level or "info").lower(), logging.INFO))
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)-5s [pegasus-aws-batch] %(message)s")
    if log_file:
        if os.path.exists(log_file):
            # keep earlier logs as .000, .001, ... like Pegasus
            for i in range(1000):
                rotated = f"{log_file}.{i:03d}"
                if not os.path.exists(rotated):
                    os.replace(log_file, rotated)
                    break
        handler: logging.Handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    log.addHandler(handler)
    log.propagate = False


def _fail(msg: str) -> int:
    print(f"pegasus-aws-batch: error: {msg}", file=sys.stderr)
    log.error(msg)
    return EXIT_NON_TASK_FAILURE


def describe_error(exc: BaseException) -> str:
    return aws_error_text(exc, credentials_hint="set the environment, ~/.aws/credentials, --profile or an instance role")


def main(argv=None, progress=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_file)
    if args.create and args.delete:
        return _fail("--create and --delete exclude each other")
    try:
        settings = resolve_settings({
            "prefix": args.prefix, "account": args.account, "region": args.region,
            "job_definition": args.job_definition,
            "compute_environment": args.compute_environment, "job_queue": args.job_queue,
            "s3": args.s3, "endpoint_url": args.endpoint_url}, args.conf)
    except OSError as exc:
        return _fail(f"cannot read properties file {args.conf}: {exc}")
    if not settings.prefix:
        return _fail("--prefix is required")
    if not args.create and not args.delete and not args.job_files:
        return _fail("no job files given (or use --create / --delete)")
    log.debug("settings: %s", settings.as_dict())

    stop = StopFlag()
    old = stop.install()     # SIGINT/SIGTERM only set the flag, around setup, run, teardown
    try:
        return _run(args, settings, progress, stop)
    except Exception as exc:  # noqa: BLE001 - exit 2 with a message, never a traceback
        log.debug("internal error", exc_info=True)
        return _fail(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        StopFlag.restore(old)


ERRORS = (PegasusAWSBatchError, ClientError, BotoCoreError, Boto3Error, OSError)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, PegasusAWSBatchError):
        return str(exc)
    if isinstance(exc, Boto3Error):
        return f"S3: {exc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return describe_error(exc)


def _run(args, settings, progress, stop: StopFlag) -> int:
    try:
        s3loc = parse_s3_url(settings.s3) if settings.s3 else None
        clients = Clients(settings.region, settings.endpoint_url, s3loc, profile=args.profile)
        mgr = EntityManager(clients, settings.prefix, account=settings.account, stop=stop)
        if args.delete:
            st = mgr.resolve_for_delete(settings)
            # only what this client owns: the bucket <prefix>-bucket (run's key prefix
            # emptied), else just the internal _pegasus-aws-batch/<prefix>/ objects
            errors = mgr.teardown(st, empty_prefix=bool(st.bucket.created))
            for e in errors:
                print(f"pegasus-aws-batch: error: {e}", file=sys.stderr)
            return EXIT_NON_TASK_FAILURE if errors else EXIT_OK
        tasks = read_tasks(args.job_files) if args.job_files else []
    except ERRORS as exc:
        return _fail(_error_text(exc))

    st = None
    code = EXIT_OK
    try:
        try:
            st = mgr.setup(settings, need_queue=not args.create)
        except ERRORS as exc:
            st = getattr(mgr, "_current", None)
            code = _fail(_error_text(exc))
        if code == EXIT_OK and stop.is_set():
            code = _fail(stop.message)
        if code == EXIT_OK and args.create:
            print(f"compute environment: {st.compute_environment.name if st.compute_environment else '-'}")
            print(f"job queue:           {st.job_queue.name if st.job_queue else '-'}")
            print(f"job definition:      {st.job_definition.name if st.job_definition else '-'}")
            print(f"s3:                  s3://{st.bucket.bucket}/{st.bucket.key_prefix}")
            return EXIT_OK
        if code == EXIT_OK:
            runner = BagRunner(
                clients, settings.prefix, st.bucket,
                job_definition=st.job_definition.arn or st.job_definition.name
                if st.job_definition else None,
                job_queue=(st.job_queue.arn or st.job_queue.name) if st.job_queue else None,
                files=(args.files or "").split(","), merge_logs=args.merge_logs,
                progress=progress, stop=stop)
            code = runner.run(tasks, install_signals=False)
            for e in runner.errors:
                print(f"pegasus-aws-batch: error: {e}", file=sys.stderr)
    finally:
        if st is not None and not args.create:
            errors = mgr.teardown(st, empty_prefix=bool(st.bucket and st.bucket.created))
            for e in errors:
                print(f"pegasus-aws-batch: error: {e}", file=sys.stderr)
            if errors and code == EXIT_OK:
                code = EXIT_NON_TASK_FAILURE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
