"""A gridmanager emulator: drives a batch GAHP exactly as ``condor_gridmanager`` does.

No HTCondor daemons can run where this project is built, so the GAHP is judged by this
emulator, written from gahp-protocol.md and the recorded transcript.  It starts the GAHP
with no arguments, reads the banner, sends ``COMMANDS``/``ASYNC_MODE_ON``/``BLAH_PING``,
pipelines ``BLAH_*`` requests with CRLF line ends and reqids from 2, polls ``RESULTS``
when an ``R`` arrives (or on a timer), and checks every line the way the real
gridmanager would — more strictly, since a violation here is a test failure instead of
an EXCEPT:

* the banner starts with ``$`` and is at most 149 characters;
* every return line of an asynchronous request starts with ``S``;
* ``RESULTS`` answers ``S <n>`` and then exactly n lines;
* every result line has the exact arity of its command, no empty field, a reqid that
  was outstanding, and (for status) a parseable ClassAd whose exit attributes appear
  only with status 4;
* no reply line takes longer than ``GRIDMANAGER_GAHP_RESPONSE_TIMEOUT`` (20 s).

The demo (``awsbatch_gahp demo``) uses it too, so it lives in the package.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import threading
import time

from . import protocol


class ProtocolViolation(AssertionError):
    """The GAHP did something that would crash, hang or confuse a real gridmanager."""


@dataclasses.dataclass
class Result:
    reqid: str
    command: str
    fields: list[str]  # the whole result line, reqid first

    @property
    def rc(self) -> int:
        return int(self.fields[1])

    @property
    def error(self) -> str:
        return self.fields[2]

    # status results
    @property
    def status(self) -> int:
        return int(self.fields[3])

    @property
    def ad(self):
        import classad2

        return classad2.parseOne(self.fields[4])

    # submit results
    @property
    def job_id(self) -> str:
        return self.fields[3]


def _read_lines(stream, sink: "queue.Queue[tuple[float, str | None]]", notify: threading.Event) -> None:
    """Split GAHP output into lines at *unescaped* LFs, stamping their arrival time.

    An ``R`` line is an async notification: it wakes the poller at once (as the
    gridmanager's pipe handler does) and is also queued, to be swallowed by the reader."""
    buf: list[str] = []
    escaped = False
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(1)
        if not chunk:
            if buf:
                sink.put((time.monotonic(), "".join(buf)))
            sink.put((time.monotonic(), None))
            return
        text = chunk.decode("utf-8", "surrogateescape")
        for ch in text:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "\n":
                line = "".join(buf)
                if line.rstrip("\r\n") == "R":
                    notify.set()
                sink.put((time.monotonic(), line))
                buf = []


class Gridmanager:
    def __init__(
        self,
        argv=("awsbatch_gahp",),
        *,
        env: dict | None = None,
        cwd: str | None = None,
        batch_type: str = "awsbatch",
        response_timeout: float = 20.0,
        stderr=None,
    ):
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.batch_type = batch_type
        self.response_timeout = response_timeout
        self._stderr = stderr
        self.proc: subprocess.Popen | None = None
        self._lines: "queue.Queue[tuple[float, str | None]]" = queue.Queue()
        self._next_reqid = 2  # the gridmanager's counter pre-increments from 1 (§2.3)
        self.pending: dict[str, str] = {}
        self.results: dict[str, Result] = {}
        self.commands: list[str] = []
        self.banner: str | None = None
        self.banner_seconds: float | None = None
        self.first_ping: Result | None = None
        self.reply_latencies: list[float] = []
        self.notified = threading.Event()
        self._eof = False

    # ------------------------------------------------------------------ process
    def start(self) -> "Gridmanager":
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr if self._stderr is not None else subprocess.DEVNULL,
            env=self.env, cwd=self.cwd, close_fds=True, bufsize=0,
            start_new_session=True,  # a DaemonCore child: no terminal, no Ctrl-C from it
        )
        threading.Thread(target=_read_lines, args=(self.proc.stdout, self._lines, self.notified), daemon=True).start()
        line = self._read_line(timeout=max(self.response_timeout, 10.0), what="the banner")
        self.banner_seconds = time.monotonic() - started
        text = line.rstrip("\r\n")
        if not text.startswith("$") or len(text.replace("\\", "")) > 149:
            raise ProtocolViolation(f"bad banner {text!r}: must start with '$' and be at most 149 characters")
        self.banner = text
        return self

    def handshake(self) -> list[str]:
        """COMMANDS, ASYNC_MODE_ON if listed, then the first BLAH_PING (§1.5)."""
        reply = self.sync("COMMANDS")
        if reply[0] != "S":
            raise ProtocolViolation(f"COMMANDS reply {reply!r} does not start with S")
        self.commands = [c.upper() for c in reply[1:]]
        if "ASYNC_MODE_ON" in self.commands:
            if self.sync("ASYNC_MODE_ON")[0] != "S":
                raise ProtocolViolation("ASYNC_MODE_ON refused")
        if "BLAH_PING" in self.commands:
            result = self.wait(self.request("BLAH_PING", self.batch_type), timeout=60)
            self.first_ping = result
        return self.commands

    def __enter__(self) -> "Gridmanager":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, how: str = "eof", timeout: float = 10.0) -> int | None:
        """End the GAHP as the gridmanager would: stdin EOF (after an EXCEPT) or SIGTERM."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        try:
            if how == "sigterm":
                proc.send_signal(signal.SIGTERM)
            elif how == "quit":
                self._write("QUIT")
            else:
                proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ProtocolViolation(f"GAHP did not exit within {timeout} s of {how}")

    # ------------------------------------------------------------------ wire
    def _write(self, line: str) -> None:
        assert self.proc is not None
        self.proc.stdin.write((line + "\r\n").encode("utf-8", "surrogateescape"))
        self.proc.stdin.flush()

    def _read_line(self, timeout: float | None = None, what: str = "a reply") -> str:
        """One line, swallowing ``R`` notifications as the gridmanager does (§2.6)."""
        timeout = self.response_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                stamp, line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise ProtocolViolation(f"no {what} within {timeout:g} s (the gridmanager would EXCEPT)") from None
            if line is None:
                self._eof = True
                raise ProtocolViolation(f"GAHP closed stdout while the gridmanager waited for {what}")
            args = protocol.read_argv(line)
            if len(args) == 1 and args[0].startswith("R"):
                self.notified.set()
                continue
            return line

    def send(self, line: str) -> list[str]:
        """Write one raw line and return the parsed return line (any first letter)."""
        self._write(line)
        started = time.monotonic()
        reply = protocol.read_argv(self._read_line())
        self.reply_latencies.append(time.monotonic() - started)
        return reply

    def sync(self, command: str, *args: str) -> list[str]:
        return self.send(" ".join([command, *(protocol.escape(a) for a in args)]))

    def request(self, command: str, *args: str) -> str:
        """Send an asynchronous command; returns its reqid once the ``S`` arrived."""
        reqid = str(self._next_reqid)
        self._next_reqid += 1
        reply = self.send(" ".join([command, reqid, *(protocol.escape(a) if a else "NULL" for a in args)]))
        if not reply or not reply[0].startswith("S"):
            raise ProtocolViolation(f"{command} {reqid} was answered {reply!r}: the gridmanager would EXCEPT")
        self.pending[reqid] = command
        return reqid

    def replay(self, raw: str, timeout: float = 60.0):
        """Send one recorded gridmanager line byte for byte and check what comes back."""
        argv = protocol.tokenize_line(raw)
        command = argv[0].upper()
        if command == "RESULTS":
            return self.poll()
        reply = self.send(raw.rstrip("\r\n"))
        if command in protocol.RESULT_ARITY:
            if not reply or not reply[0].startswith("S"):
                raise ProtocolViolation(f"{raw!r} was answered {reply!r}: the gridmanager would EXCEPT")
            self.pending[argv[1]] = command
            return self.wait(argv[1], timeout)
        if not reply or reply[0] != "S":
            raise ProtocolViolation(f"{raw!r} was answered {reply!r}")
        return reply

    def poll(self) -> list[Result]:
        """One ``RESULTS`` exchange, every line validated."""
        self.notified.clear()
        header = self.sync("RESULTS")
        if len(header) != 2 or header[0] != "S" or not header[1].isdigit():
            raise ProtocolViolation(f"bad RESULTS header {header!r}")
        results = []
        for _ in range(int(header[1])):
            results.append(self._validate(protocol.read_argv(self._read_line(what="a result line"))))
        return results

    def _validate(self, fields: list[str]) -> Result:
        reqid = fields[0]
        command = self.pending.pop(reqid, None)
        if command is None:
            raise ProtocolViolation(f"result for reqid {reqid!r}, which is not outstanding: {fields!r}")
        arity = protocol.RESULT_ARITY[command]
        if len(fields) != arity:
            raise ProtocolViolation(f"{command} result has {len(fields)} fields, the gridmanager ASSERTs {arity}: {fields!r}")
        if any(f == "" for f in fields):
            raise ProtocolViolation(f"empty field in {command} result {fields!r}")
        if not fields[1].lstrip("-").isdigit():
            raise ProtocolViolation(f"rc {fields[1]!r} is not a number")
        result = Result(reqid, command, fields)
        if command == "BLAH_JOB_SUBMIT" and result.rc == 0 and (result.job_id in ("NULL", "N/A") or " " in result.job_id):
            raise ProtocolViolation(f"submit succeeded without a usable job id: {fields!r}")
        if command == "BLAH_JOB_STATUS":
            if not fields[3].isdigit():
                raise ProtocolViolation(f"status field {fields[3]!r} is not a number")
            ad = result.ad
            if result.rc == 0:
                if not 1 <= result.status <= 5:
                    raise ProtocolViolation(f"status {result.status} out of range 1..5")
                if ad is None:
                    raise ProtocolViolation(f"status ad {fields[4]!r} does not parse: the gridmanager would ignore it")
                if result.status != 4 and any(k in ad for k in ("ExitCode", "ExitBySignal", "ExitSignal")):
                    raise ProtocolViolation(f"exit attributes with status {result.status}: {fields[4]}")
            elif result.status != 0:
                raise ProtocolViolation(f"failed status query must report status 0, got {fields!r}")
        self.results[reqid] = result
        return result

    # ------------------------------------------------------------------ helpers
    def wait(self, reqid: str, timeout: float = 60.0, poll_every: float = 5.0) -> Result:
        """Wait for one result: poll at once on ``R``, otherwise every ``poll_every`` s."""
        deadline = time.monotonic() + timeout
        while reqid not in self.results:
            if time.monotonic() > deadline:
                raise ProtocolViolation(f"no result for reqid {reqid} ({self.pending.get(reqid)}) within {timeout:g} s")
            self.notified.wait(timeout=min(poll_every, max(deadline - time.monotonic(), 0.01)))
            self.poll()
        return self.results.pop(reqid)

    def submit(self, ad: str, timeout: float = 60.0) -> Result:
        return self.wait(self.request("BLAH_JOB_SUBMIT", ad), timeout)

    def status(self, job_id: str, timeout: float = 60.0) -> Result:
        return self.wait(self.request("BLAH_JOB_STATUS", job_id), timeout)

    def cancel(self, job_id: str, timeout: float = 60.0) -> Result:
        return self.wait(self.request("BLAH_JOB_CANCEL", job_id), timeout)

    def wait_for_status(self, job_id: str, wanted=(4, 5), timeout: float = 60.0, every: float = 0.5) -> Result:
        """Poll a job's status, as the gridmanager's probe interval does, until it is in ``wanted``."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.status(job_id, timeout=max(deadline - time.monotonic(), 1.0))
            if result.rc == 0 and result.status in wanted:
                return result
            if time.monotonic() > deadline:
                raise ProtocolViolation(f"job {job_id} still {result.fields!r} after {timeout:g} s")
            time.sleep(every)


def submit_ad(**attrs) -> str:
    """A submit ClassAd shaped like the gridmanager's (new syntax, one line)."""
    import classad2

    ad = classad2.ClassAd()
    for key, value in attrs.items():
        ad[key] = value
    return repr(ad)


def gahp_environment(home: str, knobs: dict[str, str], extra: dict | None = None) -> dict:
    """The environment condor_gridmanager gives a GAHP (gahp-protocol.md §1.4): the
    daemons' clean environment, HOME from the owner's passwd entry, GAHP_TEMP pointing
    at a scratch directory that may not exist, CONDOR_CONFIG, and no AWS_* variables."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": home,
        "USER": os.environ.get("USER", "condoruser"),
        "LOGNAME": os.environ.get("LOGNAME", "condoruser"),
        "LANG": "C.UTF-8",
        "TZ": ":/etc/localtime",
        "CONDOR_CONFIG": "ONLY_ENV",
        "BLAHPD_LOCATION": "/usr",
        "CONDOR_PARENT_ID": f"emulator:{os.getpid()}:{int(time.time())}",
        "GAHP_TEMP": os.path.join(home, f"condor_g_scratch.0x{os.getpid():x}.missing"),
    }
    for key in ("VIRTUAL_ENV", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update({f"_CONDOR_{k}": v for k, v in knobs.items()})
    env.update(extra or {})
    return env
