#!/usr/bin/env python3
"""Staging throughput against the local emulator, beside plain boto3 in the same run.

Prints stage-in (Stager.stage_in) and stage-out (Stager.stage_out) throughput in MB/s for
one large file (default 200 MB) and for many small files (default 1,000 x 4 KiB, one
directory), and the same bytes moved with plain boto3 ``upload_file``/``download_file``
(one call per file, as a simple script would).  The target is a ratio >= 0.8.

Stage-out needs what the job wrapper leaves in S3; the benchmark writes it directly
(objects and result record), so only the GAHP side is timed.

    python scripts/bench_staging.py [--size-mb 200] [--files 1000] [--file-kb 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gahp.config import Settings  # noqa: E402
from gahp.jobad import JobSpec  # noqa: E402
from gahp.local import LocalBatch  # noqa: E402
from gahp.staging import Stager, attempt_prefix, split_s3_url  # noqa: E402
from gahp.submission import JobRecord  # noqa: E402


def spec_for(iwd: str, inputs: list[str], name: str) -> JobSpec:
    return JobSpec(job_directory=f"home_bl_bench_{name}", job_name="bench", cmd="/bin/true", args=[], env={},
                   iwd=iwd, stdin=None, stdout=None, stderr=None, transfer_input=inputs, stage_cmd=False)


def fake_job_outputs(s3, url: str, files: list[str]) -> None:
    """Leave in S3 what the wrapper's first attempt would: out/1/f/<i>, then the result record."""
    bucket, prefix = split_s3_url(url)
    lines = ["attempt=1", "exit_code=0"]
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        s3.upload_file(path, bucket, f"{prefix}out/1/f/{i}")
        lines.append(f"out.{i}=file {digest} {os.path.getsize(path)}")
    s3.put_object(Bucket=bucket, Key=prefix + "out/1/result", Body=("\n".join(lines) + "\n").encode())


def case(lb, s3, bucket, stager, name, src_dir, rel_files, total_mb):
    paths = [os.path.join(src_dir, r) for r in rel_files]
    # plain boto3, one call per file
    t = time.perf_counter()
    for i, p in enumerate(paths):
        s3.upload_file(p, bucket, f"plain/{name}/{i}")
    plain_up = total_mb / (time.perf_counter() - t)
    dl = tempfile.mkdtemp(prefix="bench-plain-")
    t = time.perf_counter()
    for i in range(len(paths)):
        s3.download_file(bucket, f"plain/{name}/{i}", os.path.join(dl, str(i)))
    plain_down = total_mb / (time.perf_counter() - t)
    shutil.rmtree(dl)

    # the stager: stage_in uploads every input (plus job.sh and the wrapper)
    inputs = [os.path.dirname(rel_files[0]) or rel_files[0]] if len(rel_files) > 1 else rel_files
    t = time.perf_counter()
    _, url = stager.stage_in(spec_for(src_dir, inputs, name))
    stage_in = total_mb / (time.perf_counter() - t)
    stager.cleanup(url)

    out_url = attempt_prefix(stager.settings.s3_url, f"home_bl_bench_{name}_out")
    fake_job_outputs(s3, out_url, paths)
    iwd = tempfile.mkdtemp(prefix="bench-iwd-")
    record = JobRecord(iwd=iwd, stdout=None, stderr=None, transfer_output=[f"o{i}" for i in range(len(paths))],
                       staging_url=out_url)
    t = time.perf_counter()
    stager.stage_out(record, {"jobId": "bench", "status": "SUCCEEDED", "container": {"exitCode": 0},
                              "attempts": [{"container": {"exitCode": 0}}]})
    stage_out = total_mb / (time.perf_counter() - t)
    shutil.rmtree(iwd)
    stager.cleanup(out_url)
    return plain_up, stage_in, plain_down, stage_out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--file-kb", type=int, default=4)
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-staging-")
    try:
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1 << 20))
        small_dir = os.path.join(work, "small")
        os.mkdir(small_dir)
        rel_small = []
        for i in range(args.files):
            rel = os.path.join("small", f"f{i:05d}")
            with open(os.path.join(work, rel), "wb") as f:
                f.write(os.urandom(args.file_kb * 1024))
            rel_small.append(rel)
        with LocalBatch(port=0) as lb:
            ents = lb.create_default_entities(prefix="bench")
            s3 = lb.client("s3")
            stager = Stager(lb.client("s3"), Settings(s3_url=ents.s3_url))
            rows = [
                (f"1 x {args.size_mb} MB", case(lb, s3, ents.bucket, stager, "big", work, ["big.bin"], args.size_mb)),
                (f"{args.files} x {args.file_kb} KiB",
                 case(lb, s3, ents.bucket, stager, "small", work, rel_small, args.files * args.file_kb / 1024)),
            ]
        print(f"{'case':<18} {'boto3 up':>9} {'stage-in':>9} {'ratio':>6}   {'boto3 dn':>9} {'stage-out':>9} {'ratio':>6}  (MB/s)")
        ok = True
        for name, (pu, si, pd, so) in rows:
            print(f"{name:<18} {pu:9.1f} {si:9.1f} {si / pu:6.2f}   {pd:9.1f} {so:9.1f} {so / pd:6.2f}")
            ok &= si / pu >= 0.8 and so / pd >= 0.8
        print("target (ratio >= 0.8):", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
