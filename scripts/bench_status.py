#!/usr/bin/env python3
"""Status polling at scale: 1,000 jobs polled through awsbatch_gahp by the gridmanager emulator.

Prints, for each status round (one BLAH_JOB_STATUS per job, pipelined 50 at a time as
the gridmanager does with GRIDMANAGER_MAX_PENDING_REQUESTS = 50):

* DescribeJobs calls the GAHP made, beside the naive one-call-per-request figure;
* the immediate-reply (``S``) latency p50/p99 seen by the emulator;
* the GAHP's resident memory.

Runs on the embedded local AWS Batch (no AWS account); the jobs wait RUNNABLE on a
one-vCPU compute environment, so nothing heavy runs.  Usage: ``python scripts/bench_status.py [--jobs N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from gahp.gridmanager import Gridmanager, gahp_environment, submit_ad
from gahp.local import LocalBatch, api


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def pipelined(gm: Gridmanager, command: str, args_list, window: int = 50):
    """Send requests keeping at most ``window`` in flight; return the results in order."""
    results, inflight = [], []
    for args in args_list:
        inflight.append(gm.request(command, *args))
        if len(inflight) >= window:
            results.append(gm.wait(inflight.pop(0), timeout=300, poll_every=0.2))
    results.extend(gm.wait(r, timeout=300, poll_every=0.2) for r in inflight)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    opts = parser.parse_args()

    calls: list[int] = []
    original = api.BatchJobAPI.describe_jobs

    def counting(self, body):
        calls.append(len(body.get("jobs", [])))
        return original(self, body)

    api.BatchJobAPI.describe_jobs = counting
    work = tempfile.mkdtemp(prefix="bench-status-")
    home = os.path.join(work, "home")
    os.makedirs(os.path.join(home, ".aws"))
    with open(os.path.join(home, ".aws", "credentials"), "w") as f:
        f.write("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    with LocalBatch(port=0) as lb:
        ents = lb.create_default_entities(prefix="bench", max_vcpus=1)
        env = gahp_environment(home, {
            "AWSBATCH_GAHP_ENDPOINT_URL": lb.endpoint_url, "AWSBATCH_GAHP_REGION": lb.region,
            "AWSBATCH_GAHP_JOB_QUEUE": ents.job_queue, "AWSBATCH_GAHP_JOB_DEFINITION": ents.job_definition,
            "AWSBATCH_GAHP_POLL_INTERVAL": str(opts.poll_interval),
            "AWSBATCH_GAHP_STATE_DIR": os.path.join(work, "state"), "AWSBATCH_GAHP_LOG": os.path.join(work, "gahp.log"),
        })
        exe = shutil.which("awsbatch_gahp") or sys.executable
        argv = [exe] if exe != sys.executable else [exe, "-m", "gahp.cli"]
        with Gridmanager(argv, env=env, cwd=work) as gm:
            gm.handshake()
            started = time.monotonic()
            ads = [(submit_ad(Cmd="/bin/sleep", Arguments="600", Iwd=work, In="/dev/null", Out="/dev/null",
                              Err="/dev/null", JobDirectory=f"home_bl_bench_{uuid.uuid4().hex}"),)
                   for _ in range(opts.jobs)]
            submitted = pipelined(gm, "BLAH_JOB_SUBMIT", ads)
            assert all(r.rc == 0 for r in submitted), [r.fields for r in submitted if r.rc][:3]
            job_ids = [r.job_id for r in submitted]
            print(f"submitted {len(job_ids)} jobs in {time.monotonic() - started:.1f} s "
                  f"(ack p50 {1000 * percentile(gm.reply_latencies, .5):.2f} ms)")
            print(f"{'round':>5} {'requests':>9} {'DescribeJobs':>13} {'naive':>6} {'ids/call':>9} "
                  f"{'S p50 ms':>9} {'S p99 ms':>9} {'wall s':>7} {'GAHP RSS MiB':>13}")
            def status_round(gahp: Gridmanager, label: str) -> None:
                calls.clear()
                gahp.reply_latencies.clear()
                t0 = time.monotonic()
                results = pipelined(gahp, "BLAH_JOB_STATUS", [(j,) for j in job_ids])
                wall = time.monotonic() - t0
                assert all(r.rc == 0 and r.status in (1, 2) for r in results)
                lat = gahp.reply_latencies
                print(f"{label:>5} {len(results):>9} {len(calls):>13} {len(results):>6} "
                      f"{(sum(calls) / len(calls)) if calls else 0:>9.1f} {1000 * percentile(lat, .5):>9.2f} "
                      f"{1000 * percentile(lat, .99):>9.2f} {wall:>7.1f} {rss_mib(gahp.proc.pid):>13.1f}")

            for n in range(1, opts.rounds + 1):
                time.sleep(opts.poll_interval)  # the gridmanager's probe interval
                status_round(gm, str(n))
        # A gridmanager restart: a fresh GAHP process is asked about 1,000 ids it never saw.
        with Gridmanager(argv, env=env, cwd=work) as fresh:
            fresh.handshake()
            status_round(fresh, "fresh")
        batch = lb.client("batch")
        for job_id in job_ids:
            batch.terminate_job(jobId=job_id.split("/")[-1], reason="benchmark over")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
