"""The server loop in-process: immediate acknowledgements, R semantics, failures answered.

A fake service stands in for AWS so timing and failures can be controlled exactly.
"""

import os
import time

import pytest

from gahp import protocol
from gahp.server import GahpServer, Output


class SlowService:
    """Answers after ``delay`` seconds, or raises, like a throttled or broken backend."""

    def __init__(self, delay=0.0, fail=False):
        self.delay = delay
        self.fail = fail

    def _answer(self, reply, line):
        if self.fail:
            raise RuntimeError("backend exploded")
        time.sleep(self.delay)
        reply(line)

    def submit(self, reqid, ad, reply):
        self._answer(reply, protocol.submit_result(reqid, 0, None, f"awsbatch/us-east-1/job-{reqid}"))

    def status(self, reqid, job_id, reply):
        self._answer(reply, protocol.status_result(reqid, 0, None, 2, "[]"))

    def cancel(self, reqid, job_id, reply):
        self._answer(reply, protocol.simple_result(reqid, 0, None))

    def ping(self, reqid, kind, reply):
        self._answer(reply, protocol.simple_result(reqid, 0, None))

    def refresh_proxy(self, reqid, job_id, path, reply):
        self._answer(reply, protocol.simple_result(reqid, 0, None))

    def close(self):
        pass


class Wire:
    """The gridmanager's end of the GAHP's stdout, for an in-process server."""

    def __init__(self, service):
        self.r, w = os.pipe()
        self.server = GahpServer(Output(w), lambda executor: service, workers=8)
        self.buffer = b""

    def send(self, line):
        argv = protocol.tokenize_line(line.encode() + b"\r\n")
        return self.server.handle(argv)

    def lines(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.buffer.count(b"\n") < n:
            assert time.monotonic() < deadline, f"expected {n} lines, have {self.buffer!r}"
            import select

            if select.select([self.r], [], [], 0.05)[0]:
                self.buffer += os.read(self.r, 65536)
        out, rest = self.buffer.split(b"\n")[:n], b"\n".join(self.buffer.split(b"\n")[n:])
        self.buffer = rest
        return [protocol.read_argv(x.decode()) for x in out]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def wire():
    made = []

    def make(service):
        w = Wire(service)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_acknowledgement_does_not_wait_for_a_slow_backend(wire):
    w = wire(SlowService(delay=2.0))
    started = time.monotonic()
    for reqid in range(2, 52):  # 50 in flight, GRIDMANAGER_MAX_PENDING_REQUESTS' default
        w.send(f"BLAH_JOB_STATUS {reqid} awsbatch/us-east-1/x")
    assert [line[0] for line in w.lines(50)] == ["S"] * 50
    assert time.monotonic() - started < 1.0  # C3: all acknowledged while the backend sleeps


def test_async_r_once_per_cycle_and_every_result_once(wire):
    w = wire(SlowService())
    w.send("ASYNC_MODE_ON")
    assert w.lines(1) == [["S", "Async mode on"]]
    w.send("BLAH_JOB_SUBMIT 2 [\\ A\\ =\\ 1\\ ]")
    w.send("BLAH_PING 3 awsbatch")
    got = w.lines(3)  # S, S and exactly one R (in any order relative to the second S)
    assert sorted(x[0] for x in got) == ["R", "S", "S"]
    time.sleep(0.2)
    w.send("RESULTS")
    header, *results = w.lines(3)
    assert header == ["S", "2"]
    assert sorted(r[0] for r in results) == ["2", "3"]  # in the order they were queued
    assert ["2", "0", "NULL", "awsbatch/us-east-1/job-2"] in results
    w.send("BLAH_JOB_CANCEL 4 awsbatch/us-east-1/x")
    assert sorted(x[0] for x in w.lines(2)) == ["R", "S"]  # re-armed by the last RESULTS


def test_without_async_mode_there_is_no_r(wire):
    w = wire(SlowService())
    w.send("BLAH_PING 2 awsbatch")
    assert w.lines(1) == [["S"]]
    time.sleep(0.2)
    w.send("RESULTS")
    assert w.lines(2) == [["S", "1"], ["2", "0", "NULL"]]


@pytest.mark.parametrize("command, arity", [
    ("BLAH_JOB_SUBMIT 2 []", 4), ("BLAH_JOB_STATUS 2 x", 5), ("BLAH_JOB_CANCEL 2 x", 3),
    ("BLAH_PING 2 awsbatch", 3), ("BLAH_JOB_REFRESH_PROXY 2 x /tmp/p", 3),
])
def test_a_crashing_service_still_answers_with_the_right_arity(wire, command, arity):
    w = wire(SlowService(fail=True))
    w.send(command)
    assert w.lines(1) == [["S"]]  # C4: never E or F to a well-formed async request
    time.sleep(0.2)
    w.send("RESULTS")
    header, result = w.lines(2)
    assert header == ["S", "1"] and len(result) == arity and result[1] == "1"
    assert "backend exploded" in result[2]


def test_sync_commands_and_quit(wire):
    w = wire(SlowService())
    w.send("commands")
    assert "BLAH_JOB_SUBMIT" in w.lines(1)[0]
    w.send("BLAH_JOB_STATUS 2")  # wrong arity: E, not a crash
    assert w.lines(1)[0][0] == "E"
    assert w.send("QUIT") is False
    assert w.lines(1) == [["S"]]


def test_a_request_that_breaks_the_handler_costs_one_reply_not_the_process(wire):
    w = wire(SlowService())
    w.server.results = None  # any bug inside handle(): here RESULTS cannot drain
    import os as _os

    r, wfd = _os.pipe()
    _os.write(wfd, b"RESULTS\r\nCOMMANDS\r\n")
    _os.close(wfd)
    assert w.server.serve(r) == 0  # survived to the end of its input
    replies = w.lines(2)
    assert replies[0][0] == "E" and replies[1][0] == "S"
