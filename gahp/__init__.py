"""awsbatch-gahp: run HTCondor grid-universe ``batch awsbatch`` jobs on AWS Batch."""

__version__ = "0.1.0"
#: Release date shown in the GAHP banner (``$GahpVersion: <version> <date> awsbatch-gahp $``).
__date__ = "Nov 27 2026"
