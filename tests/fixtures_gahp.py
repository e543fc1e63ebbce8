"""Fixtures for running awsbatch_gahp under the gridmanager emulator.

``start_gahp(**knobs)`` starts the real ``awsbatch_gahp`` executable as
condor_gridmanager does (no arguments, a cwd it must not write to, the gridmanager's
clean environment with credentials only in ``$HOME/.aws``), pointed at the session's
local AWS Batch, performs the handshake and returns the :class:`Gridmanager`.
"""
import os
import shutil
import stat
import sys
import uuid

import pytest

from gahp.gridmanager import Gridmanager, gahp_environment, submit_ad

__all__ = ["gahp_home", "start_gahp", "job_ad", "gahp_argv"]


def gahp_argv():
    path = shutil.which("awsbatch_gahp")
    return [path] if path else [sys.executable, "-m", "gahp.cli"]


@pytest.fixture
def gahp_home(tmp_path, local_batch):
    """The job owner's home: AWS credentials and region where the SDK looks for them."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    (home / ".aws" / "config").write_text(f"[default]\nregion = {local_batch.region}\n")
    return home


@pytest.fixture
def start_gahp(local_batch, local_entities, gahp_home, tmp_path):
    started = []
    log_dir = tmp_path / "condor-log"  # the gridmanager's cwd: $(LOG), not the user's to write
    log_dir.mkdir()

    def start(handshake=True, response_timeout=20.0, **knobs):
        settings = {
            "AWSBATCH_GAHP_ENDPOINT_URL": local_batch.endpoint_url,
            "AWSBATCH_GAHP_JOB_QUEUE": local_entities.job_queue,
            "AWSBATCH_GAHP_JOB_DEFINITION": local_entities.job_definition,
            "AWSBATCH_GAHP_POLL_INTERVAL": "0.5",
            "AWSBATCH_GAHP_STATE_DIR": str(tmp_path / "state"),
            "AWSBATCH_GAHP_LOG": str(tmp_path / "gahp.log"),
        }
        for key, value in knobs.items():
            key = key if key.startswith("AWSBATCH_GAHP") else "AWSBATCH_GAHP_" + key.upper()
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = str(value)
        env = gahp_environment(str(gahp_home), settings)
        os.chmod(log_dir, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
        gm = Gridmanager(gahp_argv(), env=env, cwd=str(log_dir), response_timeout=response_timeout)
        started.append(gm)
        gm.start()
        if handshake:
            gm.handshake()
        return gm

    yield start
    for gm in started:
        try:
            gm.close()
        except Exception:
            if gm.proc and gm.proc.poll() is None:
                gm.proc.kill()
    os.chmod(log_dir, 0o755)
    assert list(log_dir.iterdir()) == [], "the GAHP wrote into its cwd ($(LOG))"


def job_ad(iwd, cmd="/bin/sh", arguments=None, **attrs):
    """A submit ad as the gridmanager builds it, with a unique JobDirectory."""
    sandbox = f"127.0.0.1_0_tester_vm_{uuid.uuid4().hex[:12]}.0_1795575197"
    ad = {
        "Cmd": cmd,
        "Iwd": str(iwd),
        "In": "/dev/null",
        "Out": "job.out",
        "Err": "job.err",
        "Environment": "",
        "Arguments": arguments if arguments is not None else "",
        "GridResource": "batch awsbatch",
        "gridtype": "awsbatch",
        "JobDirectory": f"home_bl_{sandbox}",
    }
    ad.update(attrs)
    return submit_ad(**ad)
