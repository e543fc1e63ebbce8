"""Batch state -> HTCondor status mapping (interface.md §5)."""

import classad2
import pytest

from gahp import states


def detail(status, **extra):
    return {"jobId": "j-1", "status": status, **extra}


@pytest.mark.parametrize("status, code", [
    ("SUBMITTED", 1), ("PENDING", 1), ("RUNNABLE", 1), ("STARTING", 1), ("RUNNING", 2),
])
def test_active_states(status, code):
    outcome = states.classify("awsbatch/us-east-1/j-1", detail(status, statusReason="CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"))
    assert outcome.code == code
    ad = classad2.parseOne(outcome.classad())
    assert ad["AWSBatchStatus"] == status and ad["AWSBatchJobId"] == "j-1"
    assert ad["AWSBatchStatusReason"] == "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    assert "ExitCode" not in ad


def test_succeeded_is_exit_zero():
    outcome = states.classify("id", detail("SUCCEEDED", container={"exitCode": 0}))
    assert outcome.code == 4 and outcome.attrs["ExitCode"] == 0 and outcome.attrs["ExitBySignal"] is False


def test_failed_command_is_completed_with_its_code():
    outcome = states.classify("id", detail("FAILED", statusReason="Essential container in task exited",
                                           container={"exitCode": 3}))
    assert outcome.code == 4 and outcome.attrs["ExitCode"] == 3


@pytest.mark.parametrize("reason, container, advice", [
    ("Job attempt duration exceeded timeout", {"exitCode": 137}, "batch_runtime"),
    ("Host EC2 (instance i-0abc) terminated.", {}, "spot"),
    ("Task failed to start", {"reason": "CannotPullContainerError: pull access denied"}, "image"),
    ("Dependent Job failed", {}, "depends"),
    (None, {}, "no status reason"),
])
def test_infrastructure_failures_are_holds(reason, container, advice):
    outcome = states.classify("id", detail("FAILED", statusReason=reason, container=container))
    assert outcome.code == 5
    assert advice in outcome.attrs["HoldReason"]
    assert "ExitCode" not in outcome.attrs


def test_terminated_job_is_a_hold_even_with_exit_code():
    outcome = states.classify("id", detail("FAILED", statusReason="Removed by HTCondor", isTerminated=True,
                                           container={"exitCode": 143}))
    assert outcome.code == 5 and "stopped" in outcome.attrs["HoldReason"]


def test_staged_result_record_decides_exit():
    d = detail("FAILED", statusReason="Essential container in task exited", container={"exitCode": 137})
    outcome = states.classify("id", d, states.JobResult(exit_signal=9))
    assert outcome.code == 4 and outcome.attrs["ExitBySignal"] is True and outcome.attrs["ExitSignal"] == 9
    outcome = states.classify("id", detail("SUCCEEDED"), states.JobResult(exit_code=0))
    assert outcome.attrs["ExitCode"] == 0


def test_classad_is_one_line_and_escapes():
    text = states.render_classad({"A": 'x "y"\nz\\', "B": 3, "C": None})
    assert "\n" not in text
    ad = classad2.parseOne(text)
    assert ad["A"] == 'x "y"\nz\\' and ad["B"] == 3 and "C" not in ad


def test_job_controlled_text_and_numbers_cannot_break_the_classad():
    # an undecodable byte from a job's result record arrives as a lone surrogate
    text = states.render_classad({"HoldReason": "bad \udcff byte", "ExitCode": 10 ** 30, "Neg": -10 ** 30})
    ad = classad2.parseOne(text)
    assert ad["HoldReason"].startswith("bad ") and ad["ExitCode"] == 2 ** 63 - 1 and ad["Neg"] == -(2 ** 63)
