"""The gridmanager <-> batch GAHP wire protocol, free of I/O.

Everything here is pure: bytes in, argument lists and reply lines out.  The server
(:mod:`gahp.server`) owns the pipes and threads; this module owns the rules that make
the real ``condor_gridmanager`` happy, each one cited in ``docs/gahp-protocol.md``:

* requests are tokenised left to right, a backslash makes the next byte literal and an
  unescaped space separates arguments (§2.2); an escaped CR or LF is part of an argument,
  so a line ends only at an *unescaped* LF (and an unescaped CR is dropped);
* every outgoing field escapes space, backslash, CR and LF, and an empty field is sent
  as ``NULL`` so the field count never changes (§2.2, §2.5);
* result lines have exact arities: submit 4, status 5, cancel/ping/refresh-proxy 3 (§2.8);
* asynchronous commands are always acknowledged with ``S``: an ``E``/``F`` crashes the
  gridmanager (§2.4);
* in async mode, one ``R`` line announces the first result queued since the last
  ``RESULTS`` (§2.6).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import re

CRLF = "\r\n"

#: Longest single argument the gridmanager can read (``buf_size = 1024*500``, §2.2);
#: error texts are cut far below it (the gridmanager keeps 1023 bytes of a HoldReason).
MAX_ARGUMENT_BYTES = 500 * 1024 - 1
MAX_ERROR_CHARS = 2048
#: Longest request line we buffer; the gridmanager's lines are far shorter.
MAX_LINE_BYTES = 16 * 1024 * 1024


# --------------------------------------------------------------------------- escaping

_SPECIAL = {" ", "\\", "\r", "\n"}


def escape(field: str) -> str:
    """Escape one outgoing field: a backslash before space, backslash, CR and LF."""
    if not any(c in _SPECIAL for c in field):
        return field
    return "".join("\\" + c if c in _SPECIAL else c for c in field)


def field(value: object) -> str:
    """An outgoing field that is never empty (an empty one would shift the arity)."""
    text = "" if value is None else str(value)
    return escape(text) if text else "NULL"


def join_fields(*values: object) -> str:
    """One protocol line (without line end) from already-chosen field values."""
    return " ".join(field(v) for v in values)


class LineTokenizer:
    """Incremental request tokenizer: feed bytes, get complete argument lists.

    A line ends at an unescaped LF; an unescaped CR is dropped; ``\\X`` is ``X`` for any
    byte X (so ``\\<LF>`` is a newline *inside* an argument).  Bytes are decoded as UTF-8
    with ``surrogateescape`` so nothing is ever lost or rejected at this level.  A line
    longer than ``max_line`` bytes is discarded up to its end and reported as
    :data:`OVERSIZED`, so garbage on stdin cannot exhaust memory.
    """

    OVERSIZED = ["\x00oversized"]

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._args: list[bytearray] = [bytearray()]
        self._escaped = False
        self._size = 0
        self._max = max_line
        self._discarding = False

    def feed(self, data: bytes) -> list[list[str]]:
        lines: list[list[str]] = []
        args = self._args
        for byte in data:
            if self._escaped:
                self._escaped = False
                if not self._discarding:
                    args[-1].append(byte)
            elif byte == 0x5C:  # backslash
                self._escaped = True
                continue
            elif byte == 0x0A:  # unescaped LF: end of line
                if self._discarding:
                    lines.append(list(self.OVERSIZED))
                else:
                    lines.append([a.decode("utf-8", "surrogateescape") for a in args])
                args = self._args = [bytearray()]
                self._size, self._discarding = 0, False
                continue
            elif self._discarding or byte == 0x0D:  # unescaped CR is dropped
                continue
            elif byte == 0x20:  # space
                args.append(bytearray())
            else:
                args[-1].append(byte)
            self._size += 1
            if self._size > self._max and not self._discarding:
                self._discarding = True
                args = self._args = [bytearray()]
        return lines

    @property
    def pending(self) -> bool:
        """True if a partial line is buffered (the server logs it when stdin ends)."""
        return self._escaped or self._discarding or len(self._args) > 1 or bool(self._args[0])


def tokenize_line(line: str | bytes) -> list[str]:
    """Tokenise one complete request line (with or without its line end)."""
    data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    if not data.endswith(b"\n"):
        data += b"\n"
    lines = LineTokenizer().feed(data)
    if len(lines) != 1:
        raise ValueError(f"expected exactly one line, found {len(lines)}")
    return lines[0]


def read_argv(line: str) -> list[str]:
    """Parse one GAHP *output* line exactly as the gridmanager's ``read_argv`` does.

    Used by the gridmanager emulator and the tests to judge our replies strictly:
    a backslash makes the next character literal, an unescaped space ends an argument
    (so a double or trailing space yields an empty argument), an unescaped CR is dropped,
    and the final argument is always added, even if empty.
    """
    if line.endswith("\n"):
        line = line[:-1]
    args = [""]
    escaped = False
    for ch in line:
        if escaped:
            args[-1] += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == " ":
            args.append("")
        elif ch == "\r":
            continue
        else:
            args[-1] += ch
    return args


# --------------------------------------------------------------------------- requests


class Kind(enum.Enum):
    SYNC = "sync"  # the return line is the whole answer
    ASYNC = "async"  # 'S' now, a result line later through RESULTS


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    name: str
    kind: Kind
    min_args: int  # after the command name (reqid included for async commands)
    max_args: int
    result_arity: int | None = None  # fields in the result line, reqid included


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("COMMANDS", Kind.SYNC, 0, 0),
        CommandSpec("VERSION", Kind.SYNC, 0, 0),
        CommandSpec("QUIT", Kind.SYNC, 0, 0),
        CommandSpec("RESULTS", Kind.SYNC, 0, 0),
        CommandSpec("ASYNC_MODE_ON", Kind.SYNC, 0, 0),
        CommandSpec("ASYNC_MODE_OFF", Kind.SYNC, 0, 0),
        CommandSpec("BLAH_PING", Kind.ASYNC, 1, 2, result_arity=3),
        CommandSpec("BLAH_JOB_SUBMIT", Kind.ASYNC, 2, 2, result_arity=4),
        CommandSpec("BLAH_JOB_STATUS", Kind.ASYNC, 2, 2, result_arity=5),
        CommandSpec("BLAH_JOB_CANCEL", Kind.ASYNC, 2, 2, result_arity=3),
        CommandSpec("BLAH_JOB_REFRESH_PROXY", Kind.ASYNC, 3, 3, result_arity=3),
    )
}

#: Result arity by command, as the gridmanager ASSERTs it (§2.8).
RESULT_ARITY = {name: spec.result_arity for name, spec in COMMANDS.items() if spec.result_arity}


_REQID = re.compile(r"[0-9]{1,18}")


@dataclasses.dataclass(frozen=True)
class Request:
    command: str  # upper case
    args: tuple[str, ...]  # after the command name; for async commands args[0] is the reqid

    @property
    def reqid(self) -> str:
        return self.args[0]

    @property
    def params(self) -> tuple[str, ...]:
        """Arguments after the reqid (async commands)."""
        return self.args[1:]


class RequestError(Exception):
    """A request that cannot be served; its text becomes an ``E`` return line."""


def parse_request(argv: list[str]) -> Request:
    """Validate a tokenised request: known command (any case), argument count, reqid."""
    if not argv or argv == [""]:
        raise RequestError("Empty request")
    if argv == LineTokenizer.OVERSIZED:
        raise RequestError(f"request line longer than {MAX_LINE_BYTES} bytes, ignored")
    name = argv[0].upper()
    spec = COMMANDS.get(name)
    if spec is None:
        raise RequestError(f"Unknown command {argv[0][:64]}")
    args = tuple(argv[1:])
    if not spec.min_args <= len(args) <= spec.max_args:
        expected = (
            str(spec.min_args)
            if spec.min_args == spec.max_args
            else f"{spec.min_args} to {spec.max_args}"
        )
        raise RequestError(f"expected {expected} parameters, {len(args)} found")
    if spec.kind is Kind.ASYNC and not (_REQID.fullmatch(args[0]) and int(args[0]) > 0):
        raise RequestError(f"bad request id {args[0][:32]!r}")
    return Request(name, args)


# --------------------------------------------------------------------------- replies


def reply_success(*values: object) -> str:
    """An ``S`` return line, optionally with fields."""
    return " ".join(["S", *(field(v) for v in values)])


def reply_error(message: str) -> str:
    """An ``E`` return line (never for a well-formed asynchronous request)."""
    return "E " + field(message)


def banner(version: str, date: str) -> str:
    """The startup banner: the gridmanager logs the text from ``$`` to the line end."""
    return f"$GahpVersion: {version} {date} awsbatch-gahp $"


# Result lines.  ``rc`` 0 means success; the error field is NULL then.


def _error_text(error: str | None) -> str | None:
    if error and len(error) > MAX_ERROR_CHARS:
        return error[:MAX_ERROR_CHARS - 3] + "..."
    return error


def submit_result(reqid: str, rc: int, error: str | None, job_id: str | None) -> str:
    return join_fields(reqid, rc, _error_text(error) if rc else None, job_id if (rc == 0 and job_id) else "N/A")


def status_result(reqid: str, rc: int, error: str | None, status: int, ad: str) -> str:
    return join_fields(reqid, rc, _error_text(error) if rc else None, status, ad or "[]")


def simple_result(reqid: str, rc: int, error: str | None) -> str:
    return join_fields(reqid, rc, _error_text(error) if rc else None)


# --------------------------------------------------------------------------- results


class ResultQueue:
    """Queued result lines and the async ``R`` notification, as a small state machine.

    ``push`` returns True when the caller must write an ``R`` line now: async mode is on
    and this is the first result since the last ``RESULTS`` that returned lines.  The
    caller serialises ``push``/``drain`` with its output lock, so an ``R`` never lands
    between a ``S <n>`` header and its result lines.
    """

    def __init__(self) -> None:
        self._lines: collections.deque[str] = collections.deque()
        self.async_mode = False
        self._armed = True

    def __len__(self) -> int:
        return len(self._lines)

    def set_async(self, on: bool) -> None:
        self.async_mode = on
        self._armed = True

    def push(self, line: str) -> bool:
        self._lines.append(line)
        if self.async_mode and self._armed:
            self._armed = False
            return True
        return False

    def drain(self) -> list[str]:
        lines = list(self._lines)
        self._lines.clear()
        self._armed = True
        return lines

    @staticmethod
    def render(lines: list[str]) -> list[str]:
        """The complete ``RESULTS`` answer: ``S <n>`` and the n lines, oldest first."""
        return [f"S {len(lines)}", *lines]
