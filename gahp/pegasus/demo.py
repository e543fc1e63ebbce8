"""A clustered Pegasus-style diamond through ``pegasus-aws-batch`` on a (local) AWS Batch.

Levels, one clustered job (one ``.in`` file, one ``pegasus-aws-batch`` run) each, exactly as the
Pegasus planner lays out a ``--cluster horizontal`` workflow with aggregator ``AWSBatch``:

1. ``split``   -- one task: splits ``input.txt`` into N parts;
2. ``count``   -- N independent tasks (one array job): count the words of each part;
3. ``merge``   -- one task: joins the per-part counts;
4. ``summary`` -- one task: writes the total.

Every task is a fetch-and-run style task, as Pegasus writes them: its environment names the
script (``BATCH_FILE_TYPE=script``, ``BATCH_FILE_S3_URL=<staging>/<script>``) and its argument
string is one argv element.  Data moves through the run's S3 staging prefix
(``PEGASUS_AWS_BATCH_BUCKET``), as PegasusLite would move it.

Used by ``awsbatch_gahp demo --pegasus``::

    ok = run_pegasus_diamond(lb.endpoint_url, lb.region, ents, pathlib.Path(workdir), console)
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import time
import uuid
from typing import Optional

from . import cli

PARTS = 3

TEXT = """\
Pegasus plans scientific workflows and HTCondor runs them.
AWS Batch runs containers on managed compute environments.
A clustered job gathers the tasks of one workflow level into a bag.
The bag runs as one array job and every task writes its own log.
Logs are merged and cluster records tell pegasus-exitcode what happened.
Split the text, count the words of every part, merge the counts, then summarise.
"""

SCRIPTS = {
    "split.sh": r"""#!/bin/sh
# split input.txt into $1 parts, round robin by line
set -e
n=$1
aws s3 cp --quiet "$PEGASUS_AWS_BATCH_BUCKET/input.txt" ./input.txt
awk -v n="$n" '{ f = "part-" ((NR - 1) % n + 1) ".txt"; print > f }' input.txt
i=1
while [ "$i" -le "$n" ]; do
    [ -f "part-$i.txt" ] || : > "part-$i.txt"
    aws s3 cp --quiet "part-$i.txt" "$PEGASUS_AWS_BATCH_BUCKET/part-$i.txt"
    echo "split: part-$i.txt has $(wc -l < part-$i.txt | tr -d ' ') lines"
    i=$((i + 1))
done
""",
    "count.sh": r"""#!/bin/sh
# count the words of part $1
set -e
p=$1
aws s3 cp --quiet "$PEGASUS_AWS_BATCH_BUCKET/$p.txt" "./$p.txt"
words=$(wc -w < "$p.txt" | tr -d ' ')
echo "$p $words" > "$p.count"
aws s3 cp --quiet "$p.count" "$PEGASUS_AWS_BATCH_BUCKET/$p.count"
echo "count: $p has $words words"
echo "count: done with $p on $(hostname)" >&2
""",
    "merge.sh": r"""#!/bin/sh
# merge the counts of $1 parts
set -e
n=$1
i=1
: > merged.txt
while [ "$i" -le "$n" ]; do
    aws s3 cp --quiet "$PEGASUS_AWS_BATCH_BUCKET/part-$i.count" "./part-$i.count"
    cat "part-$i.count" >> merged.txt
    i=$((i + 1))
done
aws s3 cp --quiet merged.txt "$PEGASUS_AWS_BATCH_BUCKET/merged.txt"
echo "merge:"; cat merged.txt
""",
    "summary.sh": r"""#!/bin/sh
# total of the merged counts
set -e
aws s3 cp --quiet "$PEGASUS_AWS_BATCH_BUCKET/merged.txt" ./merged.txt
total=$(awk '{ s += $2 } END { print s + 0 }' merged.txt)
echo "total words: $total" > summary.txt
aws s3 cp --quiet summary.txt "$PEGASUS_AWS_BATCH_BUCKET/summary.txt"
cat summary.txt
""",
}


def _task(name, script, argument, base_url):
    return {"jobName": name, "executable": script, "arguments": argument,
            "environment": [{"name": "BATCH_FILE_TYPE", "value": "script"},
                            {"name": "BATCH_FILE_S3_URL", "value": f"{base_url}/{script}"}]}


def _show(console, text, style=None):
    if console is None:
        print(text, flush=True)
    else:
        try:
            console.print(text, style=style, markup=False, highlight=False)
        except TypeError:
            console.print(text)


def run_pegasus_diamond(endpoint_url: str, region: str, entities, workdir: pathlib.Path,
                        console=None) -> bool:
    """Run the clustered diamond; show merged logs and cluster summaries; True only if every
    level exited 0 and the summary's total equals the word count of the input."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_id = f"diamond-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    s3_url = f"{entities.s3_url.rstrip('/')}/{run_id}"
    base_url = s3_url
    (workdir / "input.txt").write_text(TEXT)
    files = []
    for name, body in SCRIPTS.items():
        path = workdir / name
        path.write_text(body)
        path.chmod(0o755)
        files.append(str(path))
    files.append(str(workdir / "input.txt"))
    levels = [
        ("split_ID0000001", [_task("split_ID0000001_t1", "split.sh", str(PARTS), base_url)]),
        ("count_ID0000002", [_task(f"count_ID0000002_t{i}", "count.sh", f"part-{i}", base_url)
                             for i in range(1, PARTS + 1)]),
        ("merge_ID0000003", [_task("merge_ID0000003_t1", "merge.sh", str(PARTS), base_url)]),
        ("summary_ID0000004", [_task("summary_ID0000004_t1", "summary.sh", "", base_url)]),
    ]
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    ok = True
    try:
        for level, (job, tasks) in enumerate(levels, start=1):
            infile = workdir / f"{job}.in"
            infile.write_text(json.dumps({"SubmitJob": tasks}, indent=2))
            _show(console, f"== level {level}: clustered job {job} ({len(tasks)} task(s)) ==",
                  "bold")
            args = ["--prefix", job, "--region", region, "--endpoint-url", endpoint_url,
                    "--job-definition", entities.job_definition, "--job-queue", entities.job_queue,
                    "--s3", s3_url, "--merge-logs", str(workdir / job),
                    "--log-file", str(workdir / f"{job}.log"), "--log-level", "info"]
            if level == 1:
                args += ["--files", ",".join(files)]
            rc = cli.main(args + [str(infile)], progress=lambda m: _show(console, f"  {m}"))
            out = (workdir / f"{job}.out").read_text() if (workdir / f"{job}.out").exists() else ""
            err = (workdir / f"{job}.err").read_text() if (workdir / f"{job}.err").exists() else ""
            _show(console, f"-- {job}.out --")
            _show(console, out.rstrip())
            if err.strip():
                _show(console, f"-- {job}.err --")
                _show(console, err.rstrip())
            if rc != 0:
                _show(console, f"clustered job {job} failed: pegasus-aws-batch exit code {rc}",
                      "bold red")
                ok = False
                break
        if ok:
            summary = _read_s3(endpoint_url, region, f"{base_url}/summary.txt")
            expected = len(TEXT.split())
            m = re.search(r"total words: (\d+)", summary or "")
            got = int(m.group(1)) if m else None
            (workdir / "summary.txt").write_text(summary or "")
            if got == expected:
                _show(console, f"diamond verified: {got} words (expected {expected}); "
                               f"outputs in {workdir} and {base_url}", "bold green")
            else:
                _show(console, f"diamond WRONG: summary says {got}, expected {expected}",
                      "bold red")
                ok = False
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    return ok


def _read_s3(endpoint_url: str, region: str, url: str) -> Optional[str]:
    import boto3
    bucket, _, key = url[len("s3://"):].partition("/")
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except Exception:  # noqa: BLE001
        return None
