"""``awsbatch_gahp``: the GAHP itself (no arguments) and its helper subcommands.

condor_gridmanager starts the GAHP with no arguments at all, so the bare command must
go straight to the protocol; everything else is a subcommand.
"""

from __future__ import annotations

import sys

from . import __version__

USAGE = f"""\
usage: awsbatch_gahp                 run the batch GAHP on stdin/stdout (how condor_gridmanager starts it)
       awsbatch_gahp local [opts]    start the embedded local AWS Batch (no AWS account needed)
       awsbatch_gahp demo [opts]     run a small clustered workflow end to end on the local AWS Batch
       awsbatch_gahp doctor [opts]   preflight check of the configured AWS account, queue and bucket
       awsbatch_gahp --version | --help

awsbatch-gahp {__version__}: HTCondor grid universe jobs with grid_resource = batch awsbatch
run on AWS Batch.  Configuration knobs (AWSBATCH_GAHP_*) are read from the HTCondor
configuration or from _CONDOR_AWSBATCH_GAHP_* environment variables.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        from .server import main as serve

        return serve()
    command, rest = args[0], args[1:]
    if command in ("--version", "-V", "version"):
        print(f"awsbatch_gahp {__version__}")
        return 0
    if command in ("--help", "-h", "help"):
        print(USAGE, end="")
        return 0
    if command == "local":
        from .local.cli import main as local_main

        return local_main(rest)
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if command == "doctor":
        from .doctor import main as doctor_main

        return doctor_main(rest)
    print(f"awsbatch_gahp: unknown command {command!r}\n\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
