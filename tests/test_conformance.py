"""Replay every line the real condor_gridmanager sent (the recorded transcript) to awsbatch_gahp.

The recording spans 16 GAHP starts; here one process gets all 232 lines in order.  The
job ids in it belong to the recording's stub GAHP, so status and cancel fail cleanly
(rc != 0 in a well-formed result), and the GAHP is pointed at a queue that does not
exist here, so the recorded jobs (some sleep an hour) are refused, not run: what is checked is that every line gets a reply of the exact shape the
gridmanager requires, promptly, and that the process survives it all.
"""

from gahp import protocol
from test_protocol import transcript_lines


def test_replay_the_recorded_gridmanager(start_gahp):
    gm = start_gahp(handshake=False, NOT_FOUND_GRACE=0, JOB_QUEUE="transcript-replay-no-such-queue")
    counts = {}
    for raw in transcript_lines("RECV"):
        command = protocol.tokenize_line(raw)[0]
        counts[command] = counts.get(command, 0) + 1
        outcome = gm.replay(raw, timeout=60)
        if command == "BLAH_JOB_SUBMIT":
            # neither "fastq" of the recording nor the configured queue exist: explained failure
            assert outcome.rc == 1 and outcome.job_id == "N/A" and "does not exist" in outcome.error
        elif command == "BLAH_JOB_STATUS":
            assert outcome.rc != 0 and outcome.status == 0 and "awsbatch-gahp job id" in outcome.error
        elif command == "BLAH_PING":
            assert outcome.rc == 1 and "transcript-replay-no-such-queue" in outcome.error
        elif command == "BLAH_JOB_REFRESH_PROXY":
            assert outcome.rc == 0
        elif command == "BLAH_JOB_CANCEL":
            assert outcome.rc == 0  # not our job id: nothing to cancel, and no reason to hold
    assert counts["RESULTS"] == 98 and counts["BLAH_JOB_STATUS"] == 79 and counts["BLAH_JOB_SUBMIT"] == 14
    assert max(gm.reply_latencies) < 5.0
    assert gm.proc.poll() is None
