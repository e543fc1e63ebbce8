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
