"""``awsbatch_gahp demo``: the whole path, end to end, with no AWS account and no HTCondor.

1. starts the embedded local AWS Batch (:class:`gahp.local.LocalBatch`) on a free loopback
   port and creates its default compute environment, queue and job definition;
2. starts ``awsbatch_gahp`` as a child process in the environment condor_gridmanager gives a
   GAHP (credentials only in a private ``$HOME/.aws``, ``_CONDOR_AWSBATCH_GAHP_*`` knobs) and
   drives it over the real protocol with the package's gridmanager emulator
   (:class:`gahp.gridmanager.Gridmanager`): handshake, ``BLAH_JOB_SUBMIT`` with submit ads
   shaped like the gridmanager's, ``BLAH_JOB_STATUS`` polling until status 4 (or 5: held);
3. runs the clustered diamond of :mod:`gahp.demo_workflow` level by level (each level a bag
   of jobs submitted together), showing progress with ``rich``;
4. verifies the outputs against an independent Python computation, prints a table of the
   jobs and where the outputs are; exit 0 only when everything is correct.

Other modes: ``--keep`` (leave the local Batch running afterwards and print its settings),
``--write-dag DIR`` / ``--condor`` (the same diamond as a DAGMan workflow of
``grid_resource = batch awsbatch`` jobs, for a real HTCondor pool), ``--pegasus`` (the
diamond as Pegasus clustered jobs through ``pegasus-aws-batch``), ``--staging`` (move the
files through the local S3 with ``transfer_input_files``/``transfer_output_files`` instead
of absolute paths).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from . import demo_workflow as wf

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2

STATUS_NAMES = {1: "IDLE", 2: "RUNNING", 3: "REMOVED", 4: "COMPLETED", 5: "HELD"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="awsbatch_gahp demo",
        description="Run a small clustered diamond workflow through awsbatch_gahp on the embedded "
                    "local AWS Batch (no AWS account, no HTCondor needed).")
    p.add_argument("--workdir", help="directory for inputs, outputs and logs (default: a new temporary directory)")
    p.add_argument("--parts", type=int, default=4, help="number of parallel count jobs (default 4)")
    p.add_argument("--words", type=int, default=3000, help="words in the generated input text (default 3000)")
    p.add_argument("--port", type=int, default=0, help="port of the local AWS Batch (default 0: any free port)")
    p.add_argument("--state-delay", type=float, default=0.2,
                   help="seconds the local Batch spends in each waiting state, to watch the states go by "
                        "(default 0.2)")
    p.add_argument("--poll-interval", type=float, default=0.5,
                   help="seconds between status polls, of the GAHP and of the demo (default 0.5)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per level (default 120)")
    p.add_argument("--staging", action="store_true",
                   help="move files through the local S3 (transfer_input_files/transfer_output_files) "
                        "instead of using absolute paths on this machine")
    p.add_argument("--keep", action="store_true",
                   help="afterwards, leave the local AWS Batch running, print its settings and wait for Ctrl-C")
    p.add_argument("--pegasus", action="store_true",
                   help="run the diamond as Pegasus clustered jobs through pegasus-aws-batch instead")
    p.add_argument("--condor", action="store_true",
                   help="submit the diamond as a DAGMan workflow to your own HTCondor pool (needs condor_submit_dag)")
    p.add_argument("--write-dag", metavar="DIR",
                   help="only write the DAGMan workflow (.dag and submit files) into DIR and exit")
    p.add_argument("--fail-job", metavar="NAME", help=argparse.SUPPRESS)  # tests: make one job exit 3
    return p


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # CI logs: no colours, no cursor tricks, a readable width
        console = Console(stderr=stderr, width=max(console.width, 120), no_color=True, highlight=False)
    return console


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = _console()
    if args.parts < 1 or args.words < 1:
        console.print("awsbatch_gahp demo: --parts and --words must be at least 1", markup=False)
        return EXIT_UNAVAILABLE
    if args.write_dag:
        path = wf.write_dag(args.write_dag, parts=args.parts, words=args.words)
        console.print(f"wrote {path} and its submit files; submit with:  condor_submit_dag {path}",
                      markup=False, highlight=False)
        console.print("(the jobs use transfer_input_files/transfer_output_files: set AWSBATCH_GAHP_S3_URL "
                      "in the pool's configuration)", markup=False, highlight=False)
        return EXIT_OK
    if args.condor:
        return run_condor(args, console)
    if args.pegasus:
        return run_pegasus(args, console)
    return run_demo(args, console)


# --------------------------------------------------------------------------- --condor


def run_condor(args, console) -> int:
    tool = shutil.which("condor_submit_dag")
    if tool is None:
        _err("awsbatch_gahp demo --condor: HTCondor is not available here (condor_submit_dag is not on PATH). "
             "Run 'awsbatch_gahp demo' without --condor for the self-contained demo, or "
             "'awsbatch_gahp demo --write-dag DIR' to only write the DAG and submit files.")
        return EXIT_UNAVAILABLE
    workdir = _workdir(args)
    dag_dir = os.path.join(workdir, "dag")
    path = wf.write_dag(dag_dir, parts=args.parts, words=args.words)
    console.print(f"wrote {path}; submitting it with {tool}", markup=False, highlight=False)
    proc = subprocess.run([tool, os.path.basename(path)], cwd=dag_dir)
    if proc.returncode == 0:
        console.print(f"submitted. Watch it with:  condor_q -dag -nobatch   (outputs appear in {dag_dir}; "
                      "the pool needs AWSBATCH_GAHP_JOB_QUEUE, _JOB_DEFINITION and _S3_URL configured, "
                      "e.g. from 'awsbatch_gahp local')", markup=False, highlight=False)
        return EXIT_OK
    _err(f"condor_submit_dag failed with exit code {proc.returncode}")
    return EXIT_FAILED


# --------------------------------------------------------------------------- --pegasus


def run_pegasus(args, console) -> int:
    try:
        from .pegasus.demo import run_pegasus_diamond
    except ImportError as exc:
        _err(f"awsbatch_gahp demo --pegasus: the Pegasus demo is not available in this installation ({exc})")
        return EXIT_UNAVAILABLE
    workdir = _workdir(args)
    # jobs on the local Batch take seconds: poll them every second at most, not every 5 s
    os.environ.setdefault("PEGASUS_AWS_BATCH_MAX_POLL_INTERVAL", "1")
    with _LocalBatchSession(args, workdir, console) as session:
        ok = False
        try:
            ok = bool(run_pegasus_diamond(session.lb.endpoint_url, session.lb.region, session.entities,
                                          _pathlib(os.path.join(workdir, "pegasus")), console))
        finally:
            console.print(f"work directory: {workdir}", markup=False, highlight=False)
            if args.keep:
                session.keep()
    return EXIT_OK if ok else EXIT_FAILED


def _pathlib(path: str):
    import pathlib

    return pathlib.Path(path)


# --------------------------------------------------------------------------- the demo


@dataclasses.dataclass
class JobRun:
    job: wf.DemoJob
    submit_ad: str = ""
    job_id: str | None = None  # the GAHP's awsbatch/<region>/<id>
    batch_id: str | None = None
    status: int = 0  # last GAHP status code
    batch_status: str = "NEW"
    exit_code: int | None = None
    hold_reason: str | None = None
    error: str | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    wall: float | None = None  # seconds, from Batch's startedAt/stoppedAt
    out: str = ""

    @property
    def done(self) -> bool:
        return self.status in (4, 5) or self.error is not None

    @property
    def ok(self) -> bool:
        return self.status == 4 and self.exit_code == 0 and self.error is None


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _workdir(args) -> str:
    if args.workdir:
        path = os.path.abspath(args.workdir)
        os.makedirs(path, exist_ok=True)
        return path
    return tempfile.mkdtemp(prefix="awsbatch-gahp-demo-")


class _LocalBatchSession:
    """The embedded local AWS Batch for one demo run (optionally kept until Ctrl-C)."""

    def __init__(self, args, workdir: str, console):
        self.args = args
        self.workdir = workdir
        self.console = console
        self.lb = None
        self.entities = None

    def __enter__(self) -> "_LocalBatchSession":
        from .local import LocalBatch

        self.lb = LocalBatch(port=self.args.port, workdir=os.path.join(self.workdir, "batch"),
                             state_delay=self.args.state_delay)
        try:
            self.lb.start()
        except OSError as exc:
            raise SystemExit(f"awsbatch_gahp demo: cannot start the local AWS Batch on port {self.args.port}: {exc}")
        try:
            vcpus = max(self.args.parts, (os.cpu_count() or 1) * 4)
            self.entities = self.lb.create_default_entities(prefix="demo", max_vcpus=vcpus)
        except BaseException:
            self.lb.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.lb is not None:
            self.lb.stop()

    def keep(self) -> None:
        """Print the settings like ``awsbatch_gahp local`` and serve until SIGINT/SIGTERM."""
        from .local.cli import settings_lines

        stop = threading.Event()

        def on_signal(signum, _frame):
            stop.set()

        old = {}
        if threading.current_thread() is threading.main_thread():
            old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            sys.stdout.write("\n".join(settings_lines(self.lb, self.entities)) + "\n")
            sys.stdout.flush()
            _err(f"local AWS Batch kept running at {self.lb.endpoint_url} for inspection; Ctrl-C to stop")
            while not stop.wait(0.2):
                pass
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def _gahp_argv() -> list[str]:
    # The same installation as this demo: the gridmanager would run the awsbatch_gahp
    # executable, which is exactly ``python -m gahp.cli`` with no arguments.
    return [sys.executable, "-m", "gahp.cli"]


def _gahp_env(workdir: str, lb, entities, args) -> dict:
    from .gridmanager import gahp_environment

    home = os.path.join(workdir, "gahp-home")
    os.makedirs(os.path.join(home, ".aws"), exist_ok=True)
    with open(os.path.join(home, ".aws", "credentials"), "w") as fh:
        fh.write("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    with open(os.path.join(home, ".aws", "config"), "w") as fh:
        fh.write(f"[default]\nregion = {lb.region}\n")
    knobs = {
        "AWSBATCH_GAHP_ENDPOINT_URL": lb.endpoint_url,
        "AWSBATCH_GAHP_REGION": lb.region,
        "AWSBATCH_GAHP_JOB_QUEUE": entities.job_queue,
        "AWSBATCH_GAHP_JOB_DEFINITION": entities.job_definition,
        "AWSBATCH_GAHP_POLL_INTERVAL": f"{args.poll_interval:g}",
        "AWSBATCH_GAHP_STATE_DIR": os.path.join(workdir, "gahp-state"),
        "AWSBATCH_GAHP_LOG": os.path.join(workdir, "gahp.log"),
    }
    if args.staging:
        knobs["AWSBATCH_GAHP_S3_URL"] = entities.s3_url
    # run from a source tree without installing: make this very package importable by the child
    extra = {}
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(package_root, "setup.cfg")):
        extra["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return gahp_environment(home, knobs, extra=extra)


def _job_ad(run_id: str, job: wf.DemoJob, data_dir: str, logs_dir: str, scripts: dict, staging: bool) -> str:
    """A submit ad as condor_gridmanager builds it for a grid universe job (gahp-protocol.md §3.2)."""
    from .gridmanager import submit_ad

    sandbox = f"127.0.0.1_0_demo_{run_id}_{job.name}.0_{int(time.time())}"
    attrs = {
        "GridResource": "batch awsbatch",
        "gridtype": "awsbatch",
        "JobDirectory": f"home_bl_{sandbox}",
        "Iwd": data_dir,
        "In": "/dev/null",
        "Out": os.path.join(logs_dir, f"{job.name}.out"),
        "Err": os.path.join(logs_dir, f"{job.name}.err"),
        "Environment": "",
        "RequestCpus": 1,
        "RequestMemory": 256,
        "BatchProject": "awsbatch-gahp-demo",
    }
    if staging:
        attrs.update({
            "Cmd": scripts[job.script],
            "Arguments": wf.v2_quote([".", *job.args]),
            "TransferInput": ",".join(os.path.join(data_dir, name) for name in job.inputs),
            "TransferOutput": ",".join(job.outputs),
        })
    else:
        attrs.update({
            "Cmd": "/bin/sh",
            "Arguments": wf.v2_quote([scripts[job.script], data_dir, *job.args]),
        })
    return submit_ad(**attrs)


class _Driver:
    """Drives the GAHP through the diamond, level by level."""

    def __init__(self, gm, lb, console, args, poll_interval: float):
        self.gm = gm
        self.lb = lb
        self.console = console
        self.args = args
        self.poll_interval = poll_interval
        self._batch = None

    def submit_level(self, runs: list[JobRun]) -> None:
        """Pipeline every submit of the bag, as the gridmanager does, then collect the results."""
        reqids = []
        for run in runs:
            reqids.append(self.gm.request("BLAH_JOB_SUBMIT", run.submit_ad))
            run.submitted_at = time.monotonic()
        for run, reqid in zip(runs, reqids):
            result = self.gm.wait(reqid, timeout=60)
            if result.rc != 0:
                run.error = f"submit failed: {result.error}"
                run.batch_status = "SUBMIT FAILED"
                continue
            run.job_id = result.job_id
            run.batch_id = result.job_id.rsplit("/", 1)[-1]
            run.status = 1
            run.batch_status = "SUBMITTED"

    def poll_level(self, runs: list[JobRun], on_update) -> None:
        """``BLAH_JOB_STATUS`` for every unfinished job, pipelined, until all are 4 or 5."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            active = [r for r in runs if not r.done]
            if not active:
                return
            if time.monotonic() > deadline:
                for run in active:
                    run.error = f"not finished after {self.args.timeout:g} s (last state {run.batch_status})"
                on_update()
                return
            reqids = [(run, self.gm.request("BLAH_JOB_STATUS", run.job_id)) for run in active]
            for run, reqid in reqids:
                result = self.gm.wait(reqid, timeout=60)
                if result.rc != 0:
                    run.error = f"status query failed: {result.error}"
                    continue
                ad = result.ad
                run.status = result.status
                run.batch_status = str(ad.get("AWSBatchStatus", STATUS_NAMES.get(run.status, "?")))
                if run.status == 4:
                    run.finished_at = time.monotonic()
                    run.exit_code = int(ad["ExitCode"]) if "ExitCode" in ad else None
                    if ad.get("ExitBySignal"):
                        run.error = f"killed by signal {ad.get('ExitSignal')}"
                elif run.status == 5:
                    run.finished_at = time.monotonic()
                    run.hold_reason = str(ad.get("HoldReason", "held (no HoldReason given)"))
                elif run.status == 3:
                    run.error = "removed"
            on_update()
            if any(not r.done for r in runs):
                time.sleep(self.poll_interval)

    def wall_times(self, runs: list[JobRun]) -> None:
        """Batch's own startedAt/stoppedAt (milliseconds) of each job."""
        ids = [r.batch_id for r in runs if r.batch_id]
        if not ids:
            return
        try:
            if self._batch is None:
                self._batch = self.lb.client("batch")
            details = {}
            for i in range(0, len(ids), 100):
                for d in self._batch.describe_jobs(jobs=ids[i:i + 100])["jobs"]:
                    details[d["jobId"]] = d
        except Exception:  # noqa: BLE001 - the table falls back to the observed time
            details = {}
        for run in runs:
            d = details.get(run.batch_id or "")
            if d and d.get("startedAt") and d.get("stoppedAt"):
                run.wall = (d["stoppedAt"] - d["startedAt"]) / 1000.0
            elif run.submitted_at and run.finished_at:
                run.wall = run.finished_at - run.submitted_at


def run_demo(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from .gridmanager import Gridmanager, ProtocolViolation

    started = time.monotonic()
    workdir = _workdir(args)
    data_dir = os.path.join(workdir, "data")
    logs_dir = os.path.join(workdir, "logs")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(logs_dir, exist_ok=True)
    scripts = wf.write_scripts(os.path.join(workdir, "bin"))
    if args.fail_job:
        scripts["fail.sh"] = os.path.join(workdir, "bin", "fail.sh")
        with open(scripts["fail.sh"], "w") as fh:
            fh.write("#!/bin/sh\necho 'this job fails on purpose (--fail-job)'\nexit 3\n")
        os.chmod(scripts["fail.sh"], 0o755)
    text = wf.make_input_text(args.words)
    with open(os.path.join(data_dir, "input.txt"), "w") as fh:
        fh.write(text)
    levels = wf.diamond(args.parts)
    run_id = uuid.uuid4().hex[:10]
    runs = [[JobRun(job) for job in level] for level in levels]
    for level in runs:
        for run in level:
            if run.job.name == args.fail_job:
                run.job = dataclasses.replace(run.job, script="fail.sh")
            run.submit_ad = _job_ad(run_id, run.job, data_dir, logs_dir, scripts, args.staging)

    console.print(f"[bold]awsbatch_gahp demo[/bold]: a clustered diamond of {sum(map(len, runs))} jobs "
                  f"({' -> '.join(f'{lv[0].job.level_name} x{len(lv)}' for lv in runs)}) "
                  f"{'with S3 staging ' if args.staging else ''}on the embedded local AWS Batch")
    console.print(f"work directory: {workdir}", markup=False, highlight=False)

    ok = False
    interrupted = False
    failure = None
    gm = None
    gahp_stderr = open(os.path.join(workdir, "gahp.stderr"), "wb")
    sigint = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        def on_sigint(signum, frame):
            sigint.set()
            signal.default_int_handler(signum, frame)

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with _LocalBatchSession(args, workdir, console) as session:
            lb, ents = session.lb, session.entities
            console.print(f"local AWS Batch at {lb.endpoint_url}: queue {ents.job_queue}, "
                          f"job definition {ents.job_definition}", markup=False, highlight=False)
            try:
                gm = Gridmanager(_gahp_argv(), env=_gahp_env(workdir, lb, ents, args), cwd=workdir,
                                 stderr=gahp_stderr)
                gm.start()
                gm.handshake()
                ping = gm.first_ping
                console.print(f"GAHP started: {gm.banner}  (log: {os.path.join(workdir, 'gahp.log')})",
                              markup=False, highlight=False)
                if ping is not None and ping.rc != 0:
                    raise _DemoFailure(f"BLAH_PING failed: {ping.error}")
                driver = _Driver(gm, lb, console, args, args.poll_interval)
                columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                           MofNCompleteColumn(), TextColumn("{task.fields[states]}"), _seconds_column()]
                with Progress(*columns, console=console, transient=False) as progress:
                    tasks = [progress.add_task(f"level {lv[0].job.level}: {lv[0].job.level_name:<8}",
                                               total=len(lv), states="waiting", start=False) for lv in runs]
                    for task, level in zip(tasks, runs):
                        progress.start_task(task)

                        def update(level=level, task=task):
                            counts: dict[str, int] = {}
                            for r in level:
                                if not r.done:
                                    counts[r.batch_status] = counts.get(r.batch_status, 0) + 1
                            progress.update(task, completed=sum(r.done for r in level),
                                            states=", ".join(f"{n} {s.lower()}" for s, n in counts.items()) or "done")
                            for r in level:
                                if r.done and not getattr(r, "_shown", False):
                                    r._shown = True  # type: ignore[attr-defined]
                                    progress.console.print(_job_line(r), markup=False, highlight=False)

                        driver.submit_level(level)
                        update()
                        driver.poll_level(level, update)
                        driver.wall_times(level)
                        progress.stop_task(task)
                        bad = [r for r in level if not r.ok]
                        if bad:
                            raise _DemoFailure(f"level {level[0].job.level} ({level[0].job.level_name}) failed: "
                                               + "; ".join(f"{r.job.name}: {_problem(r)}" for r in bad))
                gm.close()
                failure = verify(text, args.parts, data_dir, logs_dir, staging=args.staging)
                ok = failure is None
            except _DemoFailure as exc:
                failure = str(exc)
            except ProtocolViolation as exc:
                if sigint.is_set():  # Ctrl-C at a terminal reached the GAHP child too, and it quit first
                    failure, interrupted = "interrupted", True
                else:
                    failure = f"protocol violation by the GAHP: {exc}"
            except KeyboardInterrupt:
                failure = "interrupted"
                interrupted = True
            finally:
                if gm is not None:
                    try:
                        gm.close()
                    except Exception:  # noqa: BLE001
                        if gm.proc and gm.proc.poll() is None:
                            gm.proc.kill()
                            gm.proc.wait()
                _show_results(console, runs, workdir, data_dir, logs_dir, ok, failure,
                              time.monotonic() - started, staging=args.staging)
                if args.keep and not interrupted:
                    session.keep()
    finally:
        gahp_stderr.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted:
        return 130
    return EXIT_OK if ok else EXIT_FAILED


class _DemoFailure(Exception):
    pass


def _seconds_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Seconds(ProgressColumn):
        """Elapsed time of a level with a decimal: levels of the local Batch take about a second."""

        def render(self, task):
            elapsed = task.finished_time if task.finished else task.elapsed
            return Text("" if elapsed is None else f"{elapsed:5.1f} s")

    return Seconds()


def _problem(run: JobRun) -> str:
    """What went wrong with one job (without its name)."""
    if run.error:
        return run.error
    if run.status == 5:
        return f"held: {run.hold_reason}"
    return f"exit code {run.exit_code}"


def _job_line(run: JobRun) -> str:
    if run.ok:
        return f"  done  {run.job.name:<10} {run.batch_id}  {run.batch_status}  exit 0"
    return f"  FAIL  {run.job.name:<10} {run.batch_id or '-'}  {_problem(run)}"


def verify(text: str, parts: int, data_dir: str, logs_dir: str, staging: bool = False) -> str | None:
    """None when every output is what an independent Python computation says; else what differs."""
    counts = wf.word_counts(text)
    expected = {f"part-{i}.txt": p for i, p in enumerate(wf.split_parts(text, parts), 1)}
    expected["merged.txt"] = wf.merged_text(counts)
    expected["summary.txt"] = wf.summary_text(counts)
    for i, part in enumerate(wf.split_parts(text, parts), 1):
        expected[f"counts-{i}.txt"] = wf.merged_text(wf.word_counts(part))
    for name, want in expected.items():
        path = os.path.join(data_dir, name)
        try:
            with open(path) as fh:
                got = fh.read()
        except OSError as exc:
            return f"output {path} is missing: {exc.strerror}"
        if got != want:
            return f"output {path} is wrong (expected {len(want)} bytes starting {want[:40]!r}, got {got[:40]!r})"
    # the summary job's stdout came home (CloudWatch Logs, or S3 with staging) into its Out
    out = os.path.join(logs_dir, "summary.out")
    try:
        with open(out) as fh:
            got = fh.read()
    except OSError as exc:
        return f"the summary job's output {out} did not come home: {exc.strerror}"
    if expected["summary.txt"] not in got:
        return f"the summary job's output {out} does not hold the summary"
    return None


def _show_results(console, runs, workdir, data_dir, logs_dir, ok, failure, seconds, staging=False) -> None:
    from rich.table import Table

    table = Table(title="jobs", title_justify="left")
    for name, kw in (("level", {"justify": "right"}), ("job", {}), ("Batch job id", {"no_wrap": True}),
                     ("state", {}), ("exit", {"justify": "right"}), ("wall", {"justify": "right"})):
        table.add_column(name, **kw)
    for level in runs:
        for run in level:
            if run.job_id is None and not run.error:
                state = "not run"
            elif run.status == 5:
                state = f"HELD ({run.batch_status})"
            else:
                state = run.batch_status
            table.add_row(str(run.job.level), run.job.name, run.batch_id or "-", state,
                          "-" if run.exit_code is None else str(run.exit_code),
                          "-" if run.wall is None else f"{run.wall:.2f} s")
    console.print(table)
    for level in runs:
        for run in level:
            if run.hold_reason:
                console.print(f"{run.job.name} HoldReason: {run.hold_reason}", markup=False, highlight=False)
    for level in runs:
        for run in level:
            out = os.path.join(logs_dir, f"{run.job.name}.out")
            if run.job_id and not run.ok and os.path.exists(out):
                with open(out, errors="replace") as fh:
                    tail = fh.read().splitlines()[-10:]
                console.print(f"--- last lines of {out} ---\n" + "\n".join(tail), markup=False, highlight=False)
    summary = os.path.join(data_dir, "summary.txt")
    if os.path.exists(summary):
        with open(summary) as fh:
            console.print(f"--- {summary} ---\n{fh.read().rstrip()}", markup=False, highlight=False)
    console.print(f"outputs:   {data_dir}  (input.txt, part-*.txt, counts-*.txt, merged.txt, summary.txt)",
                  markup=False, highlight=False)
    console.print(f"job logs:  {logs_dir}  (<job>.out / <job>.err, {'staged out through S3' if staging else 'from CloudWatch Logs'})",
                  markup=False, highlight=False)
    console.print(f"GAHP log:  {os.path.join(workdir, 'gahp.log')}", markup=False, highlight=False)
    if ok:
        console.print(f"[bold green]OK[/]: summary verified against an independent computation; "
                      f"every job completed with exit code 0 ({seconds:.1f} s)", highlight=False)
    else:
        console.print(f"[bold red]FAILED[/]: {_escape(failure or 'unknown failure')}  ({seconds:.1f} s)",
                      highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


if __name__ == "__main__":
    sys.exit(main())
