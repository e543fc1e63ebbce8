"""Replay every line the real condor_gridmanager sent (the recorded transcript) to awsbatch_gahp.

The recording spans 16 GAHP starts; here one process gets all 232 lines in order.  The
job ids in it belong to the recording's stub GAHP, so status and cancel fail cleanly
(rc != 0 in a well-formed result), and the GAHP is pointed at a queue that does not
exist here, so the recorded jobs (some sleep an hour) are refused, not run: what is checked is that every line gets a reply of the exact shape the
gridmanager requires, promptly, and that the process survives it all.
"""

from gahp import protocol

# Where each item of the conformance checklist (gahp-protocol.md §11) is tested:
#   C1  banner first, short, early      test_gahp_e2e::test_handshake_banner_commands_and_ping
#   C2  COMMANDS list                   test_gahp_e2e::test_handshake_banner_commands_and_ping
#   C3  one prompt return line          test_server::test_acknowledgement_does_not_wait_for_a_slow_backend,
#                                       test_gahp_e2e::test_200_pipelined_submits, this replay
#   C4  S for well-formed async         test_server::test_a_crashing_service_still_answers_with_the_right_arity,
#                                       this replay (foreign ids, refused submits)
#   C5  RESULTS S n + n lines, once     test_server::test_async_r_once_per_cycle_and_every_result_once,
#                                       test_protocol::test_result_queue_announces_once_per_cycle
#   C6  result arities, no empty field  test_protocol::test_result_arities, every emulator poll (gahp/gridmanager.py)
#   C7  escaping both ways              test_protocol::test_escape, test_tokenizer_*
#   C8  one R per cycle                 test_server::test_async_r_once_per_cycle_and_every_result_once
#   C9  case, E, VERSION, QUIT          test_gahp_e2e::test_handshake_banner_commands_and_ping
#   C10 EOF/SIGTERM exit, clean stdout  test_gahp_e2e::test_shutdown_on_eof_and_sigterm, test_stdout_carries_only_protocol_lines
#   C11 job id answerable by a new GAHP test_gahp_e2e::test_status_and_cancel_work_from_a_fresh_gahp_process
#   C12 status ad, 4 after outputs      test_service::test_status_4_is_sent_only_once_the_output_is_in_place, test_staging_e2e
#   C13 unknown id: rc != 0, status 0   test_gahp_e2e::test_unknown_and_malformed_job_ids
#   C14 idempotent cancel               test_gahp_e2e::test_cancel_of_a_running_job_kills_it_and_is_idempotent
#   C15 ping rc                         test_gahp_e2e::test_ping_reports_*
#   C16 refresh proxy rc 0              this replay (the recorded BLAH_JOB_REFRESH_PROXY)
#   C17 >= 50 outstanding requests      test_server::test_acknowledgement_does_not_wait_for_a_slow_backend
#   C18 Iwd paths, V1/V2, undefined     test_jobad::test_transcript_phase1_ad, test_args_v1_and_env_v1,
#                                       test_undefined_literals_are_tolerated
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
