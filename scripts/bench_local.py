#!/usr/bin/env python3
"""Benchmark the local AWS Batch: per-job overhead and parallel throughput.

1. Overhead: N ``/bin/true`` jobs, submitted one at a time and polled with
   DescribeJobs until SUCCEEDED; prints median and p95 of submit -> SUCCEEDED.
2. Parallelism: M ``sleep 1`` jobs at once on a CE of M vCPUs; prints the
   wall time until all have SUCCEEDED.
"""
import argparse
import statistics
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.abspath(__file__))))

from gahp.local import LocalBatch  # noqa: E402


def wait_all(batch, ids, poll=0.005, timeout=120.0):
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} jobs not done")
        chunk = list(pending)[:100]
        for job in batch.describe_jobs(jobs=chunk)["jobs"]:
            if job["status"] == "FAILED":
                raise RuntimeError(f"job failed: {job}")
            if job["status"] == "SUCCEEDED":
                pending.discard(job["jobId"])
        if pending:
            time.sleep(poll)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=200, help="sequential /bin/true jobs")
    p.add_argument("--parallel", type=int, default=100, help="concurrent sleep 1 jobs (and CE vCPUs)")
    args = p.parse_args(argv)
    with LocalBatch() as lb:
        batch = lb.client("batch")
        ents = lb.create_default_entities(prefix="bench", max_vcpus=args.parallel)
        submit = dict(jobQueue=ents.job_queue, jobDefinition=ents.job_definition)
        for _ in range(3):  # warm up connections and code paths
            wait_all(batch, [batch.submit_job(jobName="warm", containerOverrides={"command": ["/bin/true"]},
                                              **submit)["jobId"]])
        times = []
        for i in range(args.jobs):
            t0 = time.perf_counter()
            job_id = batch.submit_job(jobName=f"true{i}", containerOverrides={"command": ["/bin/true"]},
                                      **submit)["jobId"]
            wait_all(batch, [job_id], poll=0.002)
            times.append(time.perf_counter() - t0)
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        print(f"overhead /bin/true submit->SUCCEEDED over {len(times)} jobs: "
              f"median {statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms")
        t0 = time.perf_counter()
        ids = [batch.submit_job(jobName=f"sleep{i}", containerOverrides={"command": ["sleep", "1"]},
                                **submit)["jobId"] for i in range(args.parallel)]
        t_sub = time.perf_counter() - t0
        wait_all(batch, ids, poll=0.02)
        print(f"{args.parallel} concurrent 'sleep 1' jobs on {args.parallel} vCPUs: "
              f"{time.perf_counter() - t0:.2f} s wall (submission {t_sub:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
