"""Promises made to a newcomer and an administrator: README, CI, the shipped config."""

import os
import pathlib
import re
import subprocess
import sys

from gahp.config import KNOBS, KNOB_PREFIX

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.rst").read_text()
    first_block = readme.split(".. code-block:: sh", 1)[1].split("\n\n", 2)[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["pip install '.[local]' && awsbatch_gahp demo", "pip install -e '.[test]' && pytest"]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_knob_is_documented_in_readme_and_config_snippet():
    readme = (ROOT / "README.rst").read_text()
    conf = (ROOT / "condor_config.d" / "50-awsbatch-gahp.conf").read_text()
    for name in KNOBS:
        knob = KNOB_PREFIX + name
        assert f"``{knob}``" in readme, knob
        assert re.search(rf"^#? ?{knob} = ", conf, re.M), knob


def test_config_snippet_parses_and_sets_the_gahp(tmp_path):
    """HTCondor itself (the bindings' config reader) loads the snippet."""
    (tmp_path / "condor_config").write_text(f"LOCAL_CONFIG_DIR = {ROOT / 'condor_config.d'}\n")
    env = {**os.environ, "CONDOR_CONFIG": str(tmp_path / "condor_config")}
    env = {k: v for k, v in env.items() if not k.startswith("_CONDOR_")}
    code = ("import htcondor2; p = htcondor2.param; "
            "print(p['AWSBATCH_GAHP']); print(p.get('JOB_TRANSFORM_NAMES'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].endswith("/awsbatch_gahp")
    assert "PegasusAWSBatch" in out[1].split()


def test_condor_only_env_knobs_reach_the_settings(monkeypatch):
    monkeypatch.setenv("CONDOR_CONFIG", "ONLY_ENV")
    monkeypatch.setenv("_CONDOR_AWSBATCH_GAHP_JOB_QUEUE", "q1")
    monkeypatch.setenv("_CONDOR_AWSBATCH_GAHP_POLL_INTERVAL", "7.5")
    code = "from gahp.config import Settings; s = Settings.from_condor_config(); print(s.job_queue, s.poll_interval)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["q1", "7.5"]


def test_cli_version_and_help():
    exe = [sys.executable, "-m", "gahp.cli"]
    assert subprocess.run(exe + ["--version"], capture_output=True, text=True).stdout.startswith("awsbatch_gahp ")
    assert "doctor" in subprocess.run(exe + ["--help"], capture_output=True, text=True).stdout
    bad = subprocess.run(exe + ["nonsense"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr
