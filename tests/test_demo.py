"""``awsbatch_gahp demo``: the end-to-end demo, its DAGMan output and its failure modes.

The demo itself runs as a subprocess (``python -m gahp.cli demo``), exactly as a user
starts it; its outputs are checked against a computation written here, independently of
:mod:`gahp.demo_workflow`.
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from gahp import demo_workflow as wf
from gahp.jobad import parse_args_v2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo_cmd(*args):
    return [sys.executable, "-m", "gahp.cli", "demo", *args]


def demo_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.pop("COLUMNS", None)
    env.update(extra)
    return env


def processes_using(path):
    """Live processes (other than zombies) whose command line, environment or cwd mention ``path``."""
    found = []
    needle = str(path).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            if stat[stat.rfind(b")") + 2:].split()[0] == b"Z":
                continue
            hit = False
            for name in ("cmdline", "environ"):
                with open(f"/proc/{pid}/{name}", "rb") as fh:
                    hit = hit or needle in fh.read()
            hit = hit or os.readlink(f"/proc/{pid}/cwd").startswith(str(path))
        except OSError:
            continue
        if hit:
            found.append(int(pid))
    return found


def no_leftovers(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while processes_using(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_using(path) == []


def expected_summary(text):
    """The summary, computed independently: totals and the top 10 (count desc, then word)."""
    counts = collections.Counter(text.split())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    lines = [f"total_words {sum(counts.values())}", f"distinct_words {len(counts)}", "top_10"]
    return "\n".join(lines + [f"{w} {c}" for w, c in top]) + "\n"


# --------------------------------------------------------------------------- the demo itself


def test_demo_runs_the_diamond_and_verifies_it(tmp_path):
    work = tmp_path / "work"
    started = time.monotonic()
    proc = subprocess.run(demo_cmd("--workdir", str(work)), cwd=tmp_path, env=demo_env(),
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert seconds < 60, f"the demo took {seconds:.1f} s"
    # not a TTY: plain text, no ANSI escapes
    assert "\x1b[" not in out
    data = work / "data"
    text = (data / "input.txt").read_text()
    assert len(text.split()) == 3000
    summary = (data / "summary.txt").read_text()
    assert summary == expected_summary(text)
    merged = dict(line.split() for line in (data / "merged.txt").read_text().splitlines())
    assert {w: int(c) for w, c in merged.items()} == collections.Counter(text.split())
    for i in range(1, 5):  # the bag really split the work
        assert (data / f"counts-{i}.txt").stat().st_size > 0
    # the summary job's stdout came home from CloudWatch Logs into its Out
    assert summary in (work / "logs" / "summary.out").read_text()
    # the final table: every job, its Batch job id, state, exit code and wall time
    for name in ("split", "count_1", "count_2", "count_3", "count_4", "merge", "summary"):
        row = [line for line in out.splitlines() if re.search(rf"│ {name}\s+│", line)]
        assert row, f"no table row for {name} in:\n{out}"
        assert re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", row[0])
        assert "SUCCEEDED" in row[0] and re.search(r"│\s+0 │\s+[0-9.]+ s │", row[0]), row[0]
    assert "OK" in out and str(data) in out
    assert (work / "gahp.log").stat().st_size > 0  # the GAHP's own log is in the work dir
    assert no_leftovers(work), processes_using(work)


def test_demo_with_staging_and_keep_serves_until_interrupted(tmp_path):
    """--staging: files move through the local S3 (transfer_input/output_files, no absolute
    paths); --keep: the local Batch stays up, its settings printed, until SIGINT."""
    work = tmp_path / "work"
    proc = subprocess.Popen(demo_cmd("--workdir", str(work), "--keep", "--staging", "--parts", "2",
                                     "--words", "200", "--state-delay", "0"),
                            cwd=tmp_path, env=demo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports = {}
        deadline = time.monotonic() + 90
        while "AWS_SECRET_ACCESS_KEY" not in exports and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.match(r"export (\w+)=(\S+)$", line.strip())
            if m:
                exports[m.group(1)] = m.group(2)
        assert "_CONDOR_AWSBATCH_GAHP_ENDPOINT_URL" in exports, proc.stderr.read() if proc.poll() is not None else exports
        assert exports["_CONDOR_AWSBATCH_GAHP_JOB_QUEUE"] == "demo-queue"
        text = (work / "data" / "input.txt").read_text()
        assert (work / "data" / "summary.txt").read_text() == expected_summary(text)
        assert expected_summary(text) in (work / "logs" / "summary.out").read_text()
        assert _gahp_used_s3(work)
        # the emulator is still there for inspection, and remembers the demo's jobs
        import boto3

        batch = boto3.client("batch", endpoint_url=exports["_CONDOR_AWSBATCH_GAHP_ENDPOINT_URL"],
                             region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        jobs = batch.list_jobs(jobQueue="demo-queue", jobStatus="SUCCEEDED")["jobSummaryList"]
        assert len(jobs) == 5  # split, 2 x count, merge, summary
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert no_leftovers(work), processes_using(work)


def _gahp_used_s3(work):
    """The GAHP ran with S3 staging: AWSBATCH_GAHP_S3_URL set and jobs launched through the wrapper."""
    log = (work / "gahp.log").read_text()
    return len(re.findall(r"staged \d+ input file\(s\).* to s3://demo-bucket/", log)) == 5


def test_verify_catches_wrong_and_missing_outputs(tmp_path):
    from gahp.demo import verify

    text = wf.make_input_text(500)
    data, logs = tmp_path / "data", tmp_path / "logs"
    data.mkdir()
    logs.mkdir()
    counts = wf.word_counts(text)
    for i, part in enumerate(wf.split_parts(text, 2), 1):
        (data / f"part-{i}.txt").write_text(part)
        (data / f"counts-{i}.txt").write_text(wf.merged_text(wf.word_counts(part)))
    (data / "merged.txt").write_text(wf.merged_text(counts))
    (data / "summary.txt").write_text(expected_summary(text))
    (logs / "summary.out").write_text(expected_summary(text))
    assert verify(text, 2, str(data), str(logs)) is None
    (data / "summary.txt").write_text(expected_summary(text).replace("total_words 500", "total_words 501"))
    assert "summary.txt is wrong" in verify(text, 2, str(data), str(logs))
    (data / "summary.txt").write_text(expected_summary(text))
    (logs / "summary.out").unlink()
    assert "did not come home" in verify(text, 2, str(data), str(logs))
    (data / "counts-2.txt").unlink()
    assert "counts-2.txt is missing" in verify(text, 2, str(data), str(logs))


@pytest.mark.parametrize("args", [["a", "b c", "it's", ""], ["/w d/x.sh", "/tmp/with 'quotes'", "4"]])
def test_v2_quoting_round_trips(args):
    assert parse_args_v2(wf.v2_quote(args)) == args


# --------------------------------------------------------------------------- DAGMan


def test_write_dag_writes_a_grid_universe_diamond(tmp_path):
    dag_dir = tmp_path / "dag"
    proc = subprocess.run(demo_cmd("--write-dag", str(dag_dir), "--parts", "3"), env=demo_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    dag = (dag_dir / "diamond.dag").read_text().splitlines()
    jobs = {}
    edges = []
    for line in dag:
        if not line.strip() or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "JOB":
            assert len(words) == 3, line
            jobs[words[1]] = words[2]
        elif words[0] == "PARENT":
            child = words.index("CHILD")
            edges += [(p, c) for p in words[1:child] for c in words[child + 1:]]
        else:
            pytest.fail(f"unexpected DAG line {line!r}")
    assert set(jobs) == {"split", "count_1", "count_2", "count_3", "merge", "summary"}
    assert sorted(edges) == sorted([("split", "count_1"), ("split", "count_2"), ("split", "count_3"),
                                    ("count_1", "merge"), ("count_2", "merge"), ("count_3", "merge"),
                                    ("merge", "summary")])
    produced = {"input.txt"}
    order = ["split", "count_1", "count_2", "count_3", "merge", "summary"]
    for name in order:
        sub = dict(line.split(" = ", 1) for line in (dag_dir / jobs[name]).read_text().splitlines()
                   if " = " in line and not line.startswith("#"))
        assert sub["universe"] == "grid"
        assert sub["grid_resource"] == "batch awsbatch"
        assert (dag_dir / sub["executable"]).is_file() and os.access(dag_dir / sub["executable"], os.X_OK)
        assert sub["arguments"].startswith('"') and parse_args_v2(sub["arguments"][1:-1])[0] == "."
        inputs = [f.strip() for f in sub["transfer_input_files"].split(",")]
        assert set(inputs) <= produced, (name, inputs)  # every input is made by an ancestor
        produced |= {f.strip() for f in sub["transfer_output_files"].split(",")}
        assert (dag_dir / "diamond.dag").read_text().count(jobs[name]) == 1
    assert "summary.txt" in produced
    # the node scripts, run in the DAG directory as the jobs would run them, give the right answer
    for name in order:
        sub = (dag_dir / jobs[name]).read_text()
        exe = re.search(r"^executable = (.+)$", sub, re.M).group(1)
        args = parse_args_v2(re.search(r'^arguments = "(.*)"$', sub, re.M).group(1))
        subprocess.run(["/bin/sh", str(dag_dir / exe), str(dag_dir), *args[1:]], check=True,
                       capture_output=True, timeout=30)
    text = (dag_dir / "input.txt").read_text()
    assert (dag_dir / "summary.txt").read_text() == expected_summary(text)


def test_condor_without_htcondor_says_so(tmp_path):
    path = os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])
    if shutil.which("condor_submit_dag", path=path):
        pytest.skip("condor_submit_dag is installed here")
    proc = subprocess.run(demo_cmd("--condor", "--workdir", str(tmp_path / "w")), env=demo_env(PATH=path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not available" in proc.stderr and "condor_submit_dag" in proc.stderr
    assert "--write-dag" in proc.stderr


def test_condor_submits_the_dag_with_condor_submit_dag(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "submitted"
    fake = bindir / "condor_submit_dag"
    fake.write_text(f"#!/bin/sh\necho \"$(pwd) $*\" > {record}\necho '1 job(s) submitted to cluster 42.'\n")
    fake.chmod(0o755)
    proc = subprocess.run(demo_cmd("--condor", "--workdir", str(tmp_path / "w")),
                          env=demo_env(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cwd, dag = record.read_text().split()
    assert dag == "diamond.dag" and cwd == str(tmp_path / "w" / "dag")
    assert "grid_resource = batch awsbatch" in (tmp_path / "w" / "dag" / "split.sub").read_text()


# --------------------------------------------------------------------------- Pegasus


def _has_pegasus_demo():
    try:
        from gahp.pegasus.demo import run_pegasus_diamond  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_pegasus_demo(), reason="gahp.pegasus.demo.run_pegasus_diamond is not there yet")
@pytest.mark.timeout(240)
def test_demo_pegasus(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run(demo_cmd("--pegasus", "--state-delay", "0", "--workdir", str(work)), cwd=tmp_path,
                          env=demo_env(), capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cluster-summary" in proc.stdout
    assert no_leftovers(work), processes_using(work)


def test_demo_fails_when_a_job_fails(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run(demo_cmd("--workdir", str(work), "--parts", "2", "--words", "100", "--state-delay", "0",
                                   "--fail-job", "count_2"),
                          cwd=tmp_path, env=demo_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: level 2 (count) failed: count_2: exit code 3" in proc.stdout
    assert "this job fails on purpose" in proc.stdout  # the failed job's output is shown
    assert re.search(r"│ merge\s+│ -\s+│ not run", proc.stdout)
    assert not (work / "data" / "merged.txt").exists()
    assert no_leftovers(work), processes_using(work)
