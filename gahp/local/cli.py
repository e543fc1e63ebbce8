"""``awsbatch_gahp local``: run the embedded AWS Batch until interrupted.

stdout carries only shell ``export`` lines (and commented condor_config
equivalents) so that ``eval "$(awsbatch_gahp local ...)"``-style use works;
human-oriented messages go to stderr.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading

from .server import LocalBatch

log = logging.getLogger("gahp.local")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="awsbatch_gahp local",
        description="Run a local, Docker-free AWS Batch (moto + local processes) until interrupted.")
    p.add_argument("--port", type=int, default=4566, help="TCP port on 127.0.0.1 (default 4566, 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--region", default="us-east-1", help="AWS region to emulate (default us-east-1)")
    p.add_argument("--max-vcpus", type=int, default=(os.cpu_count() or 1) * 4,
                   help="vCPUs of the default compute environment (default: 4 x cores)")
    p.add_argument("--prefix", default="local", help="name prefix of the default entities (default local)")
    p.add_argument("--workdir", default=None, help="directory for job working directories (default: a temporary one)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every job transition")
    return p


def settings_lines(lb: LocalBatch, ents) -> list[str]:  # noqa: ANN001 - LocalEntities
    knobs = {
        "AWSBATCH_GAHP_ENDPOINT_URL": lb.endpoint_url,
        "AWSBATCH_GAHP_REGION": lb.region,
        "AWSBATCH_GAHP_JOB_QUEUE": ents.job_queue,
        "AWSBATCH_GAHP_JOB_DEFINITION": ents.job_definition,
        "AWSBATCH_GAHP_S3_URL": ents.s3_url,
    }
    lines = [f"export _CONDOR_{k}={shlex.quote(v)}" for k, v in knobs.items()]
    env = lb.client_env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        lines.append(f"export {name}={shlex.quote(env[name])}")
    lines.append("# condor_config equivalents:")
    lines += [f"# {k} = {v}" for k, v in knobs.items()]
    return lines


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received signal %d, shutting down", signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    lb = LocalBatch(port=args.port, host=args.host, region=args.region, workdir=args.workdir)
    try:
        try:
            lb.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
            return 1
        try:
            ents = lb.create_default_entities(prefix=args.prefix, max_vcpus=args.max_vcpus)
            sys.stdout.write("\n".join(settings_lines(lb, ents)) + "\n")
            sys.stdout.flush()
            log.info("local AWS Batch ready at %s; queue %s, %d vCPUs; Ctrl-C to stop",
                     lb.endpoint_url, ents.job_queue, args.max_vcpus)
            while not stop.wait(0.5):
                pass
        finally:
            lb.stop()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
