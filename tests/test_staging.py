"""Staging: the pure parts (quoting, job script, result record, path confinement) and the
Stager against the emulated S3 (stage-out of crafted prefixes, cleanup), no jobs run."""

import hashlib
import os
import subprocess

import pytest

from gahp.config import Settings
from gahp.jobad import JobAdError, JobSpec
from gahp.staging import (
    InputPlan,
    Stager,
    StagingError,
    attempt_prefix,
    ensure_parent,
    no_record_reason,
    output_destination,
    parse_result,
    plan_inputs,
    relative_name_ok,
    render_fast_manifest,
    render_job_script,
    result_of,
    sh_quote,
    split_s3_url,
    wrapper_text,
)
from gahp.submission import JobRecord

NASTY = ["", "plain", "two words", "it's", "''", '"', "$HOME", "`id`", "$(id)", "*", "back\\slash",
         "new\nline", "tab\there", "é ü", "-n", "\\'", "'\\''", "end\\"]


def spec(tmp_path, **kw):
    base = dict(job_directory="home_bl_x", job_name="condor-x", cmd="/bin/sh", args=[], env={},
                iwd=str(tmp_path), stdin=None, stdout=str(tmp_path / "o"), stderr=str(tmp_path / "e"),
                stage_cmd=False)
    base.update(kw)
    return JobSpec(**base)


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize("text", NASTY)
def test_sh_quote_round_trips_through_a_real_shell(text):
    out = subprocess.run(["sh", "-c", f"printf '%s' {sh_quote(text)}"], capture_output=True, check=True).stdout
    assert out == text.encode()


def test_sh_quote_rejects_nul():
    with pytest.raises(JobAdError):
        sh_quote("a\0b")


def test_job_script_sets_exact_argv_and_env(tmp_path):
    s = spec(tmp_path, args=NASTY, env={"FOO": "b a'r\n$x", "ODD.NAME": "v al", "EMPTY": ""})
    script = render_job_script(s, InputPlan(cmd="/bin/sh", cmd_staged=False), fast_manifest_sha="")
    probe = (f"__awsbatch_gahp_root=/r\n{script}\njob_env\n"
             "for a in \"$@\"; do printf '%s\\0' \"$a\"; done; printf '%s\\0' \"$FOO\" \"${EMPTY-unset}\"")
    out = subprocess.run(["sh", "-c", probe], capture_output=True, check=True).stdout.split(b"\0")[:-1]
    assert out[:4] == [b"env", b"ODD.NAME=v al", b"/bin/sh", NASTY[0].encode()]
    assert out[3:3 + len(NASTY)] == [a.encode() for a in NASTY]
    assert out[-2:] == [b"b a'r\n$x", b""]


def test_job_script_modes(tmp_path):
    merged = spec(tmp_path, stdout=str(tmp_path / "o"), stderr=str(tmp_path / "o"))
    assert "__awsbatch_gahp_stderr_mode=merged" in render_job_script(merged, InputPlan(cmd="/x", cmd_staged=False),
                                                                       fast_manifest_sha="ab")
    null = spec(tmp_path, stdout=None, stderr=None)
    text = render_job_script(null, InputPlan(cmd="/x", cmd_staged=False), fast_manifest_sha="")
    assert "__awsbatch_gahp_stdout_mode=null" in text and "__awsbatch_gahp_stderr_mode=null" in text
    assert "__awsbatch_gahp_fast_sha=''\n" in text


def test_plan_inputs_files_dirs_urls_and_proxy(tmp_path):
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "empty").mkdir()
    (tmp_path / "d" / "f").write_text("1")
    (tmp_path / "d" / "s" / "g").write_text("22")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "h").write_text("333")
    (tmp_path / "in.txt").write_text("x")
    (tmp_path / "proxy").write_text("p")
    (tmp_path / "exe").write_text("#!/bin/sh\n")
    s = spec(tmp_path, cmd=str(tmp_path / "exe"), stage_cmd=True, stdin=str(tmp_path / "in.txt"),
             transfer_input=["d", "c/", "in.txt", "s3://bucket/key/data.bin", str(tmp_path / "in.txt")],
             x509_proxy=str(tmp_path / "proxy"))
    plan = plan_inputs(s)
    rels = sorted(f.rel for f in plan.files)
    assert rels == ["meta/exe/exe", "meta/stdin", "work/d/f", "work/d/s/g", "work/h", "work/in.txt", "work/proxy"]
    assert plan.dirs == ["d/empty"] and plan.urls == [("s3://bucket/key/data.bin", "data.bin")]
    assert plan.proxy == "work/proxy" and plan.bytes == 1 + 2 + 3 + 1 + 1 + 1 + len("#!/bin/sh\n")
    for f in plan.files:
        f.sha256 = "0" * 64
    assert render_fast_manifest(plan).count("\n") == len(plan.files)
    plan.files[0].rel = "work/new\nline"
    assert render_fast_manifest(plan) is None


def test_plan_inputs_names_what_is_missing(tmp_path):
    with pytest.raises(JobAdError, match="nope.sh"):
        plan_inputs(spec(tmp_path, cmd=str(tmp_path / "nope.sh"), stage_cmd=True))
    with pytest.raises(JobAdError, match="missing.txt"):
        plan_inputs(spec(tmp_path, transfer_input=["missing.txt"]))
    with pytest.raises(JobAdError, match="stdin"):
        plan_inputs(spec(tmp_path, stdin=str(tmp_path / "no-stdin")))


def test_urls_and_prefixes():
    assert split_s3_url("s3://b") == ("b", "")
    assert split_s3_url("s3://b/p/q/") == ("b", "p/q/")
    with pytest.raises(ValueError):
        split_s3_url("https://b/p")
    a = attempt_prefix("s3://b/jobs", "home_bl_127.0.0.1_0_u_vm_1.0_17")
    b = attempt_prefix("s3://b/jobs", "home_bl_127.0.0.1_0_u_vm_1.0_17")
    assert a != b and a.startswith("s3://b/jobs/127.0.0.1_0_u_vm_1.0_17/") and a.endswith("/")


def test_result_record_parsing():
    rec = parse_result("version=1\nexit_code=3\nstdout=ab 2\nout.0=file ab 2\njunk line\nerror=a=b\n")
    assert rec["out.0"] == "file ab 2" and rec["error"] == "a=b" and "junk line" not in rec
    assert result_of(rec).exit_code == 3 and result_of(rec).exit_signal is None
    assert result_of(parse_result("exit_signal=9\n")).exit_signal == 9


def test_no_record_reason_names_the_cause():
    text = no_record_reason({"jobId": "j1", "status": "FAILED", "statusReason": "Task failed to start",
                             "container": {"reason": "CannotPullContainerError: nope"}})
    assert "j1" in text and "Task failed to start" in text and "CannotPullContainerError" in text


def test_confinement_rules(tmp_path):
    iwd = str(tmp_path)
    assert output_destination(iwd, "r.txt", {}) == (f"{iwd}/r.txt", True)
    assert output_destination(iwd, "sub/r.txt", {}) == (f"{iwd}/sub/r.txt", True)
    assert output_destination(iwd, "r.txt", {"r.txt": "/abs/elsewhere"}) == ("/abs/elsewhere", False)
    assert output_destination(iwd, "r.txt", {"r.txt": "renamed"}) == (f"{iwd}/renamed", True)
    for bad in ["../../etc/x", "/etc/x", "a/../../x", "..", ""]:
        with pytest.raises(StagingError):
            output_destination(iwd, bad, {})
    with pytest.raises(StagingError):
        output_destination(iwd, "r.txt", {"r.txt": "../up"})
    assert not relative_name_ok("a/../b") and relative_name_ok("a/./b") and not relative_name_ok("./")


def test_ensure_parent_refuses_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    iwd = tmp_path / "iwd"
    iwd.mkdir()
    (iwd / "link").symlink_to(outside)
    with pytest.raises(StagingError, match="symbolic link"):
        ensure_parent(str(iwd), str(iwd / "link" / "x"))
    ensure_parent(str(iwd), str(iwd / "new" / "deeper" / "x"))
    assert (iwd / "new" / "deeper").is_dir()
    assert list(outside.iterdir()) == []


def test_wrapper_is_package_data_and_posix_sh():
    text = wrapper_text()
    assert text.startswith(b"#!/bin/sh\n")
    subprocess.run(["sh", "-n", "-c", text.decode()], check=True)


# --------------------------------------------------------------------------- Stager against emulated S3


@pytest.fixture
def stager(local_batch, local_entities):
    return Stager(local_batch.client("s3"), Settings(s3_url=local_entities.s3_url))


@pytest.fixture
def prefix(local_entities):
    return attempt_prefix(local_entities.s3_url, "home_bl_unit")


def put(s3, url, key, data):
    bucket, prefix = split_s3_url(url)
    s3.put_object(Bucket=bucket, Key=prefix + key, Body=data)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_stage_in_uploads_with_sha256_checksums(stager, tmp_path):
    (tmp_path / "in.txt").write_bytes(b"hello")
    launch, url = stager.stage_in(spec(tmp_path, transfer_input=["in.txt"], args=["a b"]))
    assert launch.command[0] == "awsbatch-gahp-wrapper" and launch.environment["BATCH_FILE_TYPE"] == "script"
    assert launch.environment["BATCH_FILE_S3_URL"] == url + "wrapper.sh"
    assert not any("KEY" in k or "SECRET" in k for k in launch.environment)
    bucket, prefix = split_s3_url(url)
    head = stager.s3.head_object(Bucket=bucket, Key=prefix + "in/work/in.txt", ChecksumMode="ENABLED")
    import base64
    assert base64.b64decode(head["ChecksumSHA256"]) == hashlib.sha256(b"hello").digest()
    job = stager.s3.get_object(Bucket=bucket, Key=prefix + "in/meta/job.sh")["Body"].read()
    assert sha(job) == launch.environment["AWSBATCH_GAHP_JOB_SHA256"] and b"'a b'" in job
    stager.cleanup(url)
    assert stager.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0


def record_for(tmp_path, url, **kw):
    base = dict(iwd=str(tmp_path), stdout=str(tmp_path / "o.txt"), stderr=str(tmp_path / "e.txt"), staging_url=url)
    base.update(kw)
    return JobRecord(**base)


DETAIL = {"jobId": "j-1", "status": "SUCCEEDED", "container": {"exitCode": 0}}


def manifest(files):
    """A directory output's manifest, as the wrapper writes it, and its result-record field."""
    data = "".join(f"{sha(body)} {len(body)} {name}\n" for name, body in files.items()).encode()
    return data, f"dir {sha(data)} {len(data)} {len(files)}"


def put_dir(s3, url, index, files, attempt=1):
    data, field = manifest(files)
    for name, body in files.items():
        put(s3, url, f"out/{attempt}/d/{index}/{name}", body)
    put(s3, url, f"out/{attempt}/m/{index}", data)
    return field


def test_stage_out_places_files_atomically(stager, prefix, tmp_path):
    s3 = stager.s3
    put(s3, prefix, "out/1/stdout", b"OUT")
    put(s3, prefix, "out/1/f/0", b"R")
    field = put_dir(s3, prefix, 1, {"x/y.txt": b"Y"})
    put(s3, prefix, "out/1/result",
        f"exit_code=0\nstdout={sha(b'OUT')} 3\nout.0=file {sha(b'R')} 1\nout.1={field}\n".encode())
    rec = record_for(tmp_path, prefix, transfer_output=["r.txt", "dir"], output_remaps={"r.txt": "sub/renamed.txt"})
    result = stager.stage_out(rec, DETAIL)
    assert result.exit_code == 0
    assert (tmp_path / "o.txt").read_bytes() == b"OUT" and (tmp_path / "e.txt").read_bytes() == b""
    assert (tmp_path / "sub" / "renamed.txt").read_bytes() == b"R"
    assert (tmp_path / "dir" / "x" / "y.txt").read_bytes() == b"Y"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".awsbatch")]


def test_stage_out_detects_a_corrupted_output(stager, prefix, tmp_path):
    put(stager.s3, prefix, "out/1/f/0", b"tampered")
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0=file {sha(b'original')} 8\n".encode())
    with pytest.raises(StagingError, match="corrupted"):
        stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["r.txt"]), DETAIL)
    assert not (tmp_path / "r.txt").exists()
    assert os.listdir(tmp_path) == []


def test_stage_out_refuses_escaping_names_inside_an_output_directory(stager, prefix, tmp_path):
    iwd = tmp_path / "iwd"
    iwd.mkdir()
    field = put_dir(stager.s3, prefix, 0, {"../../../escape.txt": b"x"})
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0={field}\n".encode())
    with pytest.raises(StagingError, match="escape"):
        stager.stage_out(record_for(iwd, prefix, stdout=None, stderr=None, transfer_output=["d"]), DETAIL)
    assert not (tmp_path / "escape.txt").exists() and list(iwd.iterdir()) == []


def test_stage_out_refuses_a_symlinked_directory_in_iwd(stager, prefix, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    iwd = tmp_path / "iwd"
    iwd.mkdir()
    (iwd / "sub").symlink_to(outside)
    put(stager.s3, prefix, "out/1/f/0", b"R")
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0=file {sha(b'R')} 1\n".encode())
    with pytest.raises(StagingError, match="symbolic link"):
        stager.stage_out(record_for(iwd, prefix, stdout=None, stderr=None, transfer_output=["sub/r.txt"]), DETAIL)
    assert list(outside.iterdir()) == []


def test_stage_out_without_a_result_record_names_the_cause(stager, prefix, tmp_path):
    detail = {"jobId": "j-2", "status": "FAILED", "statusReason": "Task failed to start",
              "container": {"reason": "CannotPullContainerError: pull access denied"}}
    with pytest.raises(StagingError) as info:
        stager.stage_out(record_for(tmp_path, prefix), detail)
    assert "Task failed to start" in str(info.value) and "CannotPullContainerError" in str(info.value)


def test_stage_out_reports_a_wrapper_staging_error(stager, prefix, tmp_path):
    put(stager.s3, prefix, "out/1/result", b"error=input in.txt is corrupted: its SHA-256 is 1, expected 2\n")
    with pytest.raises(StagingError, match="in.txt is corrupted"):
        stager.stage_out(record_for(tmp_path, prefix), {**DETAIL, "status": "FAILED"})


def test_cleanup_deletes_in_batches(stager, prefix, monkeypatch):
    import gahp.staging
    monkeypatch.setattr(gahp.staging, "DELETE_BATCH", 7)
    bucket, key = split_s3_url(prefix)
    for i in range(20):
        stager.s3.put_object(Bucket=bucket, Key=f"{key}many/{i}", Body=b"")
    stager.cleanup(prefix)
    assert stager.s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0
    with pytest.raises(ValueError):
        stager.cleanup(f"s3://{bucket}")


def test_job_script_exports_the_proxy_path(tmp_path):
    script = render_job_script(spec(tmp_path), InputPlan(cmd="/x", cmd_staged=False, proxy="work/x509up_u1"),
                               fast_manifest_sha="")
    out = subprocess.run(["sh", "-c", f"__awsbatch_gahp_root=/r\n{script}\njob_env\nprintf %s \"$X509_USER_PROXY\""],
                         capture_output=True, check=True).stdout
    assert out == b"/r/work/x509up_u1"


# --------------------------------------------------------------------------- review regressions


def test_result_record_is_sanitised_and_capped():
    rec = parse_result(b"error=bad \xff\xfe \"quote\" \\ back\x1b[31m\ttab\nexit_code=3\r\nstart=" + b"9" * 5000 + b"\n")
    assert rec["error"] == 'bad \ufffd\ufffd "quote" \\ back[31mtab'
    assert rec["exit_code"] == "3" and len(rec["start"]) == 1000
    assert all(v.isprintable() for v in rec.values())
    assert parse_result("error=lone \udcff surrogate\n")["error"] == "lone  surrogate"


@pytest.mark.parametrize("text", ["exit_code=99999999999999999999999", "exit_code=-5", "exit_code=256",
                                  "exit_signal=\u0661\u0665", "exit_signal=0", "exit_signal=65", "exit_code=1x"])
def test_result_of_rejects_out_of_range_exit_values(text):
    with pytest.raises(StagingError, match="exit_"):
        result_of(parse_result(text))


def test_result_of_accepts_the_full_ranges():
    assert result_of(parse_result("exit_code=255\n")).exit_code == 255
    assert result_of(parse_result("exit_signal=64\n")).exit_signal == 64
    assert result_of(parse_result("exit_code=0\n")).exit_code == 0


def test_undecodable_error_text_becomes_a_clean_hold_reason(stager, prefix, tmp_path):
    from gahp import protocol, states
    put(stager.s3, prefix, "out/1/result", b"error=bad \xff\xfe \"quote\" \\ back\x07\n")
    with pytest.raises(StagingError) as info:
        stager.stage_out(record_for(tmp_path, prefix), {**DETAIL, "status": "FAILED"})
    line = protocol.status_result("7", 0, None, 5, states.render_classad({"HoldReason": str(info.value)}))
    line.encode("utf-8")  # strict
    assert "\x07" not in str(info.value)


@pytest.mark.parametrize("result", [
    "exit_code=0\nout.0=file {sha} 1x\n",
    "exit_code=0\nout.0=file nothex 1\n",
    "exit_code=0\nstdout={sha} 99999999999999999999999999999x\n",
    "exit_code=0\nstdout=garbage\n",
])
def test_malformed_record_values_are_holds_naming_the_entry(stager, prefix, tmp_path, result):
    put(stager.s3, prefix, "out/1/f/0", b"R")
    put(stager.s3, prefix, "out/1/stdout", b"R")
    put(stager.s3, prefix, "out/1/result", result.format(sha=sha(b"R")).encode())
    with pytest.raises(StagingError, match="r.txt|stdout"):
        stager.stage_out(record_for(tmp_path, prefix, stderr=None, transfer_output=["r.txt"]), DETAIL)


def test_local_errors_placing_outputs_are_holds(stager, prefix, tmp_path):
    long_name = "a" * 300
    field = put_dir(stager.s3, prefix, 0, {long_name: b"x"})
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0={field}\n".encode())
    with pytest.raises(StagingError, match="d/a+"):
        stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["d"]), DETAIL)
    # a file and a directory of the same name
    field = put_dir(stager.s3, prefix, 0, {"x": b"1", "x/y": b"2"})
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0={field}\n".encode())
    with pytest.raises(StagingError, match="d/x"):
        stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["d"]), DETAIL)
    # a read-only destination directory (EACCES), unless we are root
    ro = tmp_path / "ro"
    ro.mkdir()
    put(stager.s3, prefix, "out/1/f/0", b"R")
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0=file {sha(b'R')} 1\n".encode())
    ro.chmod(0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(StagingError, match="r.txt"):
                stager.stage_out(record_for(ro, prefix, stdout=None, stderr=None, transfer_output=["r.txt"]), DETAIL)
    finally:
        ro.chmod(0o700)


def test_transient_s3_errors_are_not_holds(stager, prefix, tmp_path):
    from gahp.staging import TransientStagingError

    class Broken:
        def __init__(self, real):
            self.real = real

        def get_object(self, **kw):
            if kw["Key"].endswith("/f/0"):
                raise ConnectionResetError("connection reset by peer")
            return self.real.get_object(**kw)

        def __getattr__(self, name):
            return getattr(self.real, name)

    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0=file {sha(b'R')} 1\n".encode())
    flaky = Stager(Broken(stager.s3), stager.settings)
    with pytest.raises(TransientStagingError):
        flaky.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["r.txt"]), DETAIL)


def test_an_oversized_result_record_is_refused(stager, prefix, tmp_path):
    put(stager.s3, prefix, "out/1/result", b"exit_code=0\n" + b"x" * (1024 * 1024))
    with pytest.raises(StagingError, match="more than"):
        stager.stage_out(record_for(tmp_path, prefix), DETAIL)


def test_only_the_last_attempts_outputs_come_back(stager, prefix, tmp_path):
    s3 = stager.s3
    field1 = put_dir(s3, prefix, 0, {"a": b"a1", "b": b"b1"}, attempt=1)
    put(s3, prefix, "out/1/result", f"attempt=1\nexit_code=1\nout.0={field1}\n".encode())
    field2 = put_dir(s3, prefix, 0, {"a": b"a2"}, attempt=2)
    put(s3, prefix, "out/2/d/0/stale", b"not in the manifest")
    put(s3, prefix, "out/2/result", f"attempt=2\nexit_code=0\nout.0={field2}\n".encode())
    detail = {**DETAIL, "attempts": [{"container": {"exitCode": 1}}, {"container": {"exitCode": 0}}]}
    result = stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["res"]), detail)
    assert result.exit_code == 0 and sorted(os.listdir(tmp_path / "res")) == ["a"]
    assert (tmp_path / "res" / "a").read_bytes() == b"a2"
    # no attempts listed: the highest attempt the wrapper wrote
    other = tmp_path / "other"
    other.mkdir()
    stager.stage_out(record_for(other, prefix, stdout=None, stderr=None, transfer_output=["res"]), DETAIL)
    assert sorted(os.listdir(other / "res")) == ["a"]
    # the last attempt never wrote a record: no stale record from an earlier one
    detail3 = {**detail, "attempts": detail["attempts"] + [{}], "status": "FAILED"}
    with pytest.raises(StagingError, match="without the staging wrapper's result record"):
        stager.stage_out(record_for(other, prefix, transfer_output=["res"]), detail3)


def test_a_tampered_directory_output_is_detected(stager, prefix, tmp_path):
    field = put_dir(stager.s3, prefix, 0, {"x": b"good"})
    put(stager.s3, prefix, "out/1/d/0/x", b"evil")
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0={field}\n".encode())
    with pytest.raises(StagingError, match="corrupted"):
        stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["d"]), DETAIL)
    put(stager.s3, prefix, "out/1/m/0", b"0" * 64 + b" 4 x\n")  # a rewritten manifest
    with pytest.raises(StagingError, match="manifest"):
        stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["d"]), DETAIL)


def test_an_empty_output_directory_comes_back(stager, prefix, tmp_path):
    field = put_dir(stager.s3, prefix, 0, {})
    put(stager.s3, prefix, "out/1/result", f"exit_code=0\nout.0={field}\n".encode())
    stager.stage_out(record_for(tmp_path, prefix, stdout=None, stderr=None, transfer_output=["d"]), DETAIL)
    assert (tmp_path / "d").is_dir() and list((tmp_path / "d").iterdir()) == []


def test_a_failed_stage_in_leaves_nothing_behind(local_batch, local_entities, tmp_path):
    import time

    s3 = local_batch.client("s3")

    class Flaky:
        def __init__(self, real):
            self.real = real

        def put_object(self, **kw):
            if kw["Key"].endswith("work/bad.txt"):
                raise RuntimeError("boom")
            time.sleep(0.3)
            return self.real.put_object(**kw)

        def __getattr__(self, name):
            return getattr(self.real, name)

    stager = Stager(Flaky(s3), Settings(s3_url=local_entities.s3_url))
    names = [f"f{i}.txt" for i in range(10)] + ["bad.txt"]
    for name in names:
        (tmp_path / name).write_text(name)
    with pytest.raises(RuntimeError, match="boom"):
        stager.stage_in(spec(tmp_path, job_directory="home_bl_orphan", transfer_input=names))
    bucket, base = split_s3_url(local_entities.s3_url)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=base + "orphan/").get("KeyCount", 0) == 0


def test_cleanup_aborts_multipart_uploads_and_reports_refused_deletes(stager, prefix):
    bucket, key = split_s3_url(prefix)
    stager.s3.create_multipart_upload(Bucket=bucket, Key=key + "out/1/big")
    stager.s3.put_object(Bucket=bucket, Key=key + "x", Body=b"")
    stager.cleanup(prefix)
    assert stager.s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) == []

    class Refusing:
        def __init__(self, real):
            self.real = real

        def delete_objects(self, **kw):
            return {"Errors": [{"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"}
                               for o in kw["Delete"]["Objects"]]}

        def __getattr__(self, name):
            return getattr(self.real, name)

    from gahp.staging import CleanupError
    stager.s3.put_object(Bucket=bucket, Key=key + "y", Body=b"")
    with pytest.raises(CleanupError, match="AccessDenied"):
        Stager(Refusing(stager.s3), stager.settings).cleanup(prefix)
    stager.cleanup(prefix)


def test_job_script_hashes_its_manifest_and_marks_the_staged_executable(tmp_path):
    s = spec(tmp_path, env={"my.var": "1", "PATH": "/nowhere"})
    plan = InputPlan(cmd="meta/exe/run.sh", cmd_staged=True)
    script = render_job_script(s, plan, fast_manifest_sha="ab" * 32)
    probe = (f"__awsbatch_gahp_root=/r\n__awsbatch_gahp_env=/usr/bin/env\n{script}\n"
             "printf '%s\\n' \"$__awsbatch_gahp_fast_sha\" \"$__awsbatch_gahp_exe\" \"$1\" \"$2\" \"$3\" \"${PATH}\"")
    out = subprocess.run(["sh", "-c", probe], capture_output=True, check=True, text=True).stdout.splitlines()
    # job_env was not run: the shell's own PATH is untouched
    assert out[:5] == ["ab" * 32, "/r/meta/exe/run.sh", "/usr/bin/env", "my.var=1", "/r/meta/exe/run.sh"]
    assert out[5] != "/nowhere"
