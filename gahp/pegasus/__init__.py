"""A drop-in replacement for Pegasus's ``pegasus-aws-batch`` client.

Modules:

* :mod:`gahp.pegasus.properties` -- pegasusrc (Java properties) parsing and the
  flag -> ``--conf`` property fallbacks.
* :mod:`gahp.pegasus.credentials` -- AWS and ``pegasus-s3`` credentials, endpoint overrides.
* :mod:`gahp.pegasus.entities` -- create / wait / delete compute environment, job queue,
  job definition and S3 staging bucket.
* :mod:`gahp.pegasus.launcher` -- the in-container cluster launcher (POSIX sh).
* :mod:`gahp.pegasus.bag` -- running a bag of tasks (``.in`` files) as array or single jobs.
* :mod:`gahp.pegasus.logs` -- CloudWatch log retrieval, TASK STDERR split, cluster records.
* :mod:`gahp.pegasus.cli` -- the ``pegasus-aws-batch`` command line.
* :mod:`gahp.pegasus.demo` -- the clustered diamond run used by ``awsbatch_gahp demo --pegasus``.
"""

#: exit codes, as Pegasus's client uses them
EXIT_OK = 0
EXIT_TASK_FAILURE = 1
EXIT_NON_TASK_FAILURE = 2


class PegasusAWSBatchError(Exception):
    """An AWS or internal error: the client exits with 2."""


class StopFlag:
    """Set by SIGINT/SIGTERM, checked by the client between steps.

    The handler does nothing but record the signal, so an AWS call in flight (a SubmitJob
    whose job id must be recorded and terminated) always completes, and a second signal
    cannot escape as a traceback."""

    def __init__(self):
        import threading
        self.event = threading.Event()
        self.signum = None
        self.count = 0

    def handler(self, signum, frame):   # noqa: ARG002 - signal handler signature
        self.count += 1
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def set(self, signum=None):
        self.handler(signum, None)

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    @property
    def message(self) -> str:
        return f"interrupted by signal {self.signum}"

    def install(self) -> dict:
        """Install the handler for SIGINT and SIGTERM (main thread only); returns the old
        handlers for :meth:`restore`."""
        import signal
        import threading
        old = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                old[s] = signal.signal(s, self.handler)
        return old

    @staticmethod
    def restore(old: dict):
        import signal
        for s, h in old.items():
            signal.signal(s, h)
