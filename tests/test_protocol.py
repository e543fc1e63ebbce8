"""The sans-I/O protocol core: escaping, tokenising, requests, replies, the result queue."""

import ast
import os
import pathlib

import classad2
import pytest

from gahp import protocol

TRANSCRIPT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "conformance" / "gridmanager-transcript.txt"
if not TRANSCRIPT.exists():  # CI lays shared/ beside the clone
    TRANSCRIPT = pathlib.Path(os.environ.get("AWSBATCH_GAHP_TRANSCRIPT", "/work/shared/conformance/gridmanager-transcript.txt"))


def transcript_lines(kind: str) -> list[str]:
    """Every RECV (gridmanager -> GAHP) or SEND line of the recording, exactly as on the wire."""
    lines = []
    for row in TRANSCRIPT.read_text().splitlines():
        marker = f"] {kind} "
        if marker in row:
            lines.append(ast.literal_eval(row.split(marker, 1)[1]))
    return lines


# ------------------------------------------------------------------ escaping (C7)

@pytest.mark.parametrize("raw, wire", [
    ("plain", "plain"),
    ("two words", "two\\ words"),
    ("back\\slash", "back\\\\slash"),
    ("cr\rlf\n", "cr\\\rlf\\\n"),
    ('"quoted" ad', '"quoted"\\ ad'),
])
def test_escape(raw, wire):
    assert protocol.escape(raw) == wire
    assert protocol.read_argv(wire + "\n") == [raw]


def test_empty_field_is_null_so_arity_never_changes():
    assert protocol.field("") == "NULL"
    assert protocol.field(None) == "NULL"
    line = protocol.simple_result("7", 0, None)
    assert protocol.read_argv(line) == ["7", "0", "NULL"]


def test_tokenizer_left_to_right_unescaping():
    # an escaped backslash followed by an (unescaped) separator, then an escaped space
    tok = protocol.LineTokenizer()
    assert tok.feed(b"CMD a\\\\ b\\ c\r\n") == [["CMD", "a\\", "b c"]]


def test_tokenizer_escaped_newline_is_inside_an_argument_and_split_reads():
    tok = protocol.LineTokenizer()
    assert tok.feed(b"BLAH_PING 2 ab\\") == []
    assert tok.pending
    assert tok.feed(b"\ncd\r") == []
    assert tok.feed(b"\n") == [["BLAH_PING", "2", "ab\ncd"]]
    assert not tok.pending


def test_tokenizer_accepts_lf_and_crlf_and_several_lines_per_read():
    tok = protocol.LineTokenizer()
    assert tok.feed(b"COMMANDS\nRESULTS\r\nVERSION\n") == [["COMMANDS"], ["RESULTS"], ["VERSION"]]


def test_tokenizer_keeps_escaped_quote_inside_classad():
    wire = b'BLAH_JOB_SUBMIT 2 [\\ A\\ =\\ "x\\\\"y"\\ ]\r\n'
    [[cmd, reqid, ad]] = protocol.LineTokenizer().feed(wire)
    assert ad == '[ A = "x\\"y" ]'
    assert classad2.parseOne(ad)["A"] == 'x"y'


def test_read_argv_like_the_gridmanager():
    assert protocol.read_argv("S 1 \n") == ["S", "1", ""]  # trailing space = extra field
    assert protocol.read_argv("a  b\r\n") == ["a", "", "b"]
    assert protocol.read_argv("a\\nb\n") == ["anb"]  # \n is just 'n'


# ------------------------------------------------------------------ requests (C9)

def test_commands_are_case_insensitive():
    assert protocol.parse_request(["blah_job_status", "3", "x"]).command == "BLAH_JOB_STATUS"


@pytest.mark.parametrize("argv, message", [
    ([""], "Empty request"),
    (["NOPE"], "Unknown command"),
    (["BLAH_JOB_STATUS", "3"], "expected 2 parameters, 1 found"),
    (["BLAH_JOB_SUBMIT", "x", "[]"], "bad request id"),
    (["BLAH_JOB_SUBMIT", "0", "[]"], "bad request id"),
    (["RESULTS", "extra"], "expected 0 parameters"),
])
def test_bad_requests_are_errors(argv, message):
    with pytest.raises(protocol.RequestError, match=message):
        protocol.parse_request(argv)


def test_ping_type_is_optional():
    assert protocol.parse_request(["BLAH_PING", "2"]).params == ()
    assert protocol.parse_request(["BLAH_PING", "2", "awsbatch"]).params == ("awsbatch",)


# ------------------------------------------------------------------ results (C5, C6)

def test_result_arities():
    assert len(protocol.read_argv(protocol.submit_result("2", 0, None, "awsbatch/us-east-1/abc"))) == 4
    assert len(protocol.read_argv(protocol.submit_result("2", 1, "no queue given", None))) == 4
    assert protocol.read_argv(protocol.submit_result("2", 1, "x", "ignored"))[3] == "N/A"
    ad = '[ AWSBatchStatus = "RUNNING"; Reason = "two words \\"q\\"" ]'
    fields = protocol.read_argv(protocol.status_result("3", 0, None, 2, ad))
    assert fields == ["3", "0", "NULL", "2", ad]
    assert len(protocol.read_argv(protocol.status_result("3", 1, "gone", 0, ""))) == 5
    assert protocol.read_argv(protocol.simple_result("4", 1, "multi\nline reason")) == ["4", "1", "multi\nline reason"]


def test_result_queue_announces_once_per_cycle():
    q = protocol.ResultQueue()
    assert q.push("2 0 NULL") is False  # sync mode: no R
    q.set_async(True)
    assert q.push("3 0 NULL") is True
    assert q.push("4 0 NULL") is False
    assert q.drain() == ["2 0 NULL", "3 0 NULL", "4 0 NULL"]
    assert q.drain() == []
    assert protocol.ResultQueue.render([]) == ["S 0"]
    assert q.push("5 0 NULL") is True  # re-armed by the RESULTS that returned lines


def test_no_result_line_looks_like_an_async_notification():
    # a line of a single argument starting with R would be swallowed by the gridmanager
    for line in (protocol.submit_result("2", 0, None, "R"), protocol.simple_result("9", 0, None)):
        assert len(protocol.read_argv(line)) > 1


def test_banner_shape():
    text = protocol.banner("1.2.3", "Nov 27 2026")
    assert text.startswith("$GahpVersion: ") and text.endswith(" $") and len(text) <= 149


# ------------------------------------------------------------------ the recorded transcript

def test_every_transcript_request_tokenizes_and_parses():
    lines = transcript_lines("RECV")
    assert len(lines) >= 200
    seen = set()
    for raw in lines:
        argv = protocol.tokenize_line(raw.encode())
        request = protocol.parse_request(argv)
        seen.add(request.command)
        if request.command == "BLAH_JOB_SUBMIT":
            ad = classad2.parseOne(request.params[0])
            assert "JobDirectory" in ad and "Cmd" in ad
    assert {"COMMANDS", "ASYNC_MODE_ON", "RESULTS", "BLAH_JOB_SUBMIT", "BLAH_JOB_STATUS",
            "BLAH_JOB_CANCEL", "BLAH_PING", "BLAH_JOB_REFRESH_PROXY"} <= seen


def test_transcript_replies_parse_with_our_reader():
    """Our reader agrees with the gridmanager about the stub's recorded replies."""
    for raw in transcript_lines("SEND"):
        args = protocol.read_argv(raw)
        assert args and args[0]
        if args[0][0].isdigit():  # a result line: known arities only
            assert len(args) in (3, 4, 5)


def test_oversized_lines_are_discarded_and_answered():
    tok = protocol.LineTokenizer(max_line=10)
    assert tok.feed(b"BLAH_PING 2 " + b"x" * 100) == []
    assert tok.feed(b"\\\nstill the same line\nCOMMANDS\r\n") == [protocol.LineTokenizer.OVERSIZED, ["COMMANDS"]]
    with pytest.raises(protocol.RequestError, match="longer than"):
        protocol.parse_request(protocol.LineTokenizer.OVERSIZED)


def test_reqids_are_ascii_digits_only():
    for bad in ["²", "１２", "-3", "3.0", "9" * 19]:
        with pytest.raises(protocol.RequestError, match="bad request id"):
            protocol.parse_request(["BLAH_JOB_STATUS", bad, "x"])


def test_error_fields_stay_far_below_the_gridmanagers_argument_limit():
    line = protocol.submit_result("2", 1, "x" * 600_000, None)
    fields = protocol.read_argv(line)
    assert len(fields) == 4 and len(fields[2]) <= protocol.MAX_ERROR_CHARS < protocol.MAX_ARGUMENT_BYTES
