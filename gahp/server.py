"""The GAHP process: pipes, threads and signals around :mod:`gahp.protocol`.

The main thread only reads stdin, tokenises, and answers at once: synchronous commands
completely, asynchronous ones with ``S`` before any AWS work starts (a reply slower than
20 s makes the gridmanager EXCEPT, gahp-protocol.md §1.7).  The work runs on a bounded
thread pool whose queue absorbs any burst of pipelined requests; results go to the
:class:`~gahp.protocol.ResultQueue`, announced by ``R`` in async mode.

Only protocol lines ever reach the real stdout: at start-up fd 1 is duplicated into a
private handle and fd 1 itself is pointed at stderr, so a stray ``print`` or a library
warning cannot desynchronise the gridmanager (§9.4).  The process exits promptly on
``QUIT``, stdin EOF or SIGTERM (the gridmanager never sends QUIT, §1.8).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import select
import signal
import sys
import threading
from typing import Callable

from . import __date__, __version__, protocol

log = logging.getLogger("gahp")

#: What COMMANDS lists: every command the protocol module knows how to parse.
SUPPORTED = list(protocol.COMMANDS)


class Output:
    """The protocol's only writer: whole lines, one write each, under one lock."""

    def __init__(self, fd: int):
        self._fd = fd
        self.lock = threading.RLock()
        self.broken = False

    def send(self, *lines: str) -> None:
        data = "".join(line + protocol.CRLF for line in lines).encode("utf-8", "surrogateescape")
        with self.lock:
            if self.broken:
                return
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as exc:  # EPIPE: the gridmanager is gone
                self.broken = True
                log.warning("cannot write to the gridmanager (%s); exiting", exc)


class GahpServer:
    def __init__(self, output: Output, service_factory: Callable[[concurrent.futures.Executor], object], workers: int = 32):
        self.output = output
        self.results = protocol.ResultQueue()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gahp")
        self._service_factory = service_factory
        self._service = None
        self._service_lock = threading.Lock()
        self.banner = protocol.banner(__version__, __date__)

    # ------------------------------------------------------------------ results
    def post_result(self, line: str) -> None:
        with self.output.lock:
            if self.results.push(line):
                self.output.send("R")

    def service(self):
        with self._service_lock:
            if self._service is None:
                self._service = self._service_factory(self.executor)
            return self._service

    # ------------------------------------------------------------------ dispatch
    def handle(self, argv: list[str]) -> bool:
        """Answer one request line; False means: exit now."""
        try:
            request = protocol.parse_request(argv)
        except protocol.RequestError as exc:
            log.info("bad request %r: %s", argv[:2], exc)
            self.output.send(protocol.reply_error(str(exc)))
            return True
        name = request.command
        if name == "COMMANDS":
            self.output.send(protocol.reply_success(*SUPPORTED))
        elif name == "VERSION":
            self.output.send(protocol.reply_success(self.banner))
        elif name == "QUIT":
            self.output.send(protocol.reply_success())
            return False
        elif name == "RESULTS":
            with self.output.lock:
                self.output.send(*protocol.ResultQueue.render(self.results.drain()))
        elif name in ("ASYNC_MODE_ON", "ASYNC_MODE_OFF"):
            with self.output.lock:
                self.results.set_async(name == "ASYNC_MODE_ON")
                self.output.send(protocol.reply_success("Async mode on" if name == "ASYNC_MODE_ON" else "Async mode off"))
        else:
            self.output.send(protocol.reply_success())
            self.executor.submit(self._run_async, request)
        return True

    def _run_async(self, request: protocol.Request) -> None:
        answered = threading.Event()

        def reply(line: str) -> None:
            answered.set()
            self.post_result(line)

        try:
            service = self.service()
            params = request.params
            if request.command == "BLAH_JOB_SUBMIT":
                service.submit(request.reqid, params[0], reply)
            elif request.command == "BLAH_JOB_STATUS":
                service.status(request.reqid, params[0], reply)
            elif request.command == "BLAH_JOB_CANCEL":
                service.cancel(request.reqid, params[0], reply)
            elif request.command == "BLAH_PING":
                service.ping(request.reqid, params[0] if params else "", reply)
            elif request.command == "BLAH_JOB_REFRESH_PROXY":
                service.refresh_proxy(request.reqid, params[0], params[1], reply)
        except Exception as exc:  # the service failed to even start: still answer
            log.exception("%s %s failed", request.command, request.reqid)
            if not answered.is_set():
                self.post_result(failure_result(request, f"awsbatch_gahp internal error: {exc}"))

    # ------------------------------------------------------------------ main loop
    def serve(self, infd: int = 0) -> int:
        """Read requests until EOF, QUIT or a signal.

        A signal may be delivered to any thread, which would leave a plain blocking read
        on stdin asleep; so the loop also watches the signal wake-up pipe, and the
        Python handler (which raises SystemExit) runs as soon as select returns."""
        tokenizer = protocol.LineTokenizer()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False) if threading.current_thread() is threading.main_thread() else None
        try:
            while not self.output.broken:
                try:
                    ready, _, _ = select.select([infd, wake_r], [], [])
                except InterruptedError:
                    continue
                if wake_r in ready:
                    os.read(wake_r, 512)
                if infd not in ready:
                    continue
                data = os.read(infd, 65536)
                if not data:
                    if tokenizer.pending:
                        log.warning("stdin closed in the middle of a request line; it is ignored")
                    log.info("stdin closed; exiting")
                    return 0
                for argv in tokenizer.feed(data):
                    try:
                        if not self.handle(argv):
                            return 0
                    except Exception:  # a bug must cost one reply, never the process
                        log.exception("cannot handle request %r", argv[:2])
                        self.output.send(protocol.reply_error("internal error handling the request"))
            return 0
        finally:
            if previous is not None:
                signal.set_wakeup_fd(previous)
            os.close(wake_r)
            os.close(wake_w)

    def shutdown(self) -> None:
        service = self._service
        if service is not None:
            try:
                service.close()
            except Exception:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)


def failure_result(request: protocol.Request, message: str) -> str:
    """A failed result line with the arity the gridmanager expects for this command."""
    if request.command == "BLAH_JOB_SUBMIT":
        return protocol.submit_result(request.reqid, 1, message, None)
    if request.command == "BLAH_JOB_STATUS":
        return protocol.status_result(request.reqid, 1, message, 0, "[]")
    return protocol.simple_result(request.reqid, 1, message)


def _setup_logging(path: str | None) -> None:
    handler: logging.Handler
    if path:
        try:
            handler = logging.FileHandler(os.path.expanduser(path))
        except OSError as exc:
            handler = logging.StreamHandler(sys.stderr)
            print(f"awsbatch_gahp: cannot open AWSBATCH_GAHP_LOG {path}: {exc}; logging to stderr", file=sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s awsbatch_gahp[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> int:
    """Run the GAHP on stdin/stdout, as condor_gridmanager starts it (no arguments)."""
    # Keep fd 1 for the protocol only; everything else written to "stdout" goes to stderr.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    output = Output(proto_fd)
    output.send(protocol.banner(__version__, __date__))  # before any slow initialisation

    def terminate(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)

    from .config import Settings

    settings_error = None
    try:
        settings = Settings.from_condor_config()
    except Exception as exc:
        settings, settings_error = Settings(), f"awsbatch_gahp configuration error: {exc}"
    _setup_logging(settings.log)
    if settings_error:
        log.error(settings_error)
    log.info("awsbatch_gahp %s started (pid %d)", __version__, os.getpid())

    def make_service(executor):
        from .service import JobService

        if settings_error:
            raise RuntimeError(settings_error)
        return JobService(settings, executor)

    server = GahpServer(output, make_service, workers=settings.workers)
    code = 0
    try:
        code = server.serve(0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
        log.info("terminated by signal; exiting")
    except KeyboardInterrupt:
        code = 0
    finally:
        server.shutdown()
        logging.shutdown()
    os._exit(code)
