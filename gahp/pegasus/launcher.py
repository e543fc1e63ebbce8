"""The in-container cluster launcher (POSIX sh), uploaded once per clustered job.

A bag of tasks is submitted as an array job (or, for a lone task, a single job) whose
environment makes any fetch-and-run image run this launcher:

``BATCH_FILE_TYPE=script``, ``BATCH_FILE_S3_URL=<run prefix>/_pegasus-aws-batch/<prefix>/cluster-launcher.sh``,
``PEGASUS_AWS_BATCH_CLUSTER_URL=<unit url>``, ``PEGASUS_AWS_BATCH_BUCKET=<run prefix>``

It needs only ``sh`` and the ``aws`` CLI (plus ``unzip`` for zip tasks).  It

1. picks its task: ``$PEGASUS_AWS_BATCH_CLUSTER_URL/task-$AWS_BATCH_JOB_ARRAY_INDEX.sh``
   (``$PEGASUS_AWS_BATCH_TASK_INDEX`` for a single job), a file of shell assignments written by
   the client with the task's executable, its argument string and its environment;
2. downloads credential files named by ``s3://`` values of the usual credential variables
   (``X509_USER_PROXY*``, ``PEGASUS_CREDENTIALS*``, ``S3CFG*``, ``BOTO_CONFIG*``,
   ``SSH_PRIVATE_KEY*``, ``IRODS_ENVIRONMENT_FILE*``, ``GOOGLE_PKCS12*``), mode 600;
3. runs the task the way a fetch-and-run container would have run it as a job of its own: if the
   task's environment has ``BATCH_FILE_TYPE``/``BATCH_FILE_S3_URL`` (Pegasus's tasks do, pointing at
   ``pegasus-aws-batch-launch.sh``), the file is downloaded and run (script) or unzipped and
   ``./<executable>`` run (zip); otherwise the task's ``TRANSFER_INPUT_FILES`` are fetched from
   ``$PEGASUS_AWS_BATCH_BUCKET`` and the executable is run directly.  The argument string is
   passed as **one** argv element, as Pegasus does;
4. sends the task's stdout to stdout and collects stderr, then prints the TASK STDERR marker line
   followed by the collected stderr, and exits with the task's exit code.
"""
from __future__ import annotations

import re
import shlex

from .logs import TASK_STDERR_MARKER

LAUNCHER_NAME = "cluster-launcher.sh"

_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

LAUNCHER = r"""#!/bin/sh
# pegasus-aws-batch cluster launcher (awsbatch-gahp).  See gahp/pegasus/launcher.py.
MARKER='@MARKER@'
idx=${AWS_BATCH_JOB_ARRAY_INDEX:-${PEGASUS_AWS_BATCH_TASK_INDEX:-}}
cluster=${PEGASUS_AWS_BATCH_CLUSTER_URL%/}
# BATCH_FILE_* of the job named this launcher; the task's own come from its description
unset BATCH_FILE_TYPE BATCH_FILE_S3_URL PEGASUS_AWS_BATCH_TASK_INDEX PEGASUS_AWS_BATCH_CLUSTER_URL
top=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/pegasus-aws-batch.XXXXXX") || { echo "$MARKER"; echo "mktemp failed"; exit 1; }
errf="$work/.task-stderr"
: > "$errf"
exec 2>>"$errf"
_pab_name=unknown
finish() {
    rc=$1
    echo "pegasus-aws-batch-launcher: task $_pab_name exitcode $rc" >&2
    echo "$MARKER"
    cat "$errf"
    cd "$top" || true
    [ -n "${KEEP_BATCH_FILE_CONTENTS:-}" ] || rm -rf "$work"
    exit "$rc"
}
trap 'finish 143' TERM
trap 'finish 130' INT
command -v aws >/dev/null 2>&1 || { echo "the aws CLI is not installed" >&2; finish 1; }
[ -n "$idx" ] || { echo "no AWS_BATCH_JOB_ARRAY_INDEX or PEGASUS_AWS_BATCH_TASK_INDEX" >&2; finish 2; }
case $cluster in s3://*) ;; *) echo "PEGASUS_AWS_BATCH_CLUSTER_URL must start with s3://" >&2; finish 2 ;; esac
cd "$work" || finish 1
aws s3 cp --quiet "$cluster/task-$idx.sh" ./.task.sh >&2 || { echo "cannot download $cluster/task-$idx.sh" >&2; finish 1; }
. ./.task.sh
bucket=${PEGASUS_AWS_BATCH_BUCKET%/}
for v in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=s3:\/\/.*/\1/p'); do
    case $v in
        X509_USER_PROXY*|PEGASUS_CREDENTIALS*|S3CFG*|BOTO_CONFIG*|SSH_PRIVATE_KEY*|IRODS_ENVIRONMENT_FILE*|GOOGLE_PKCS12*)
            eval "url=\$$v"
            f=$(basename "$url")
            if aws s3 cp --quiet "$url" "./$f" >&2; then
                chmod 600 "./$f"
                eval "$v=\$work/\$f"
                export "$v"
            else
                echo "cannot download credential $url" >&2
            fi ;;
    esac
done
if [ -n "${BATCH_FILE_TYPE:-}" ] && [ -n "${BATCH_FILE_S3_URL:-}" ]; then
    case $BATCH_FILE_TYPE in
        script)
            aws s3 cp --quiet "$BATCH_FILE_S3_URL" ./.batch-file >&2 || { echo "cannot download $BATCH_FILE_S3_URL" >&2; finish 1; }
            chmod u+x ./.batch-file || finish 1
            set -- ./.batch-file ;;
        zip)
            aws s3 cp --quiet "$BATCH_FILE_S3_URL" ./.batch-file.zip >&2 || { echo "cannot download $BATCH_FILE_S3_URL" >&2; finish 1; }
            unzip -q ./.batch-file.zip >&2 || finish 1
            [ -r "./$_pab_exe" ] || { echo "$_pab_exe not in $BATCH_FILE_S3_URL" >&2; finish 1; }
            chmod u+x "./$_pab_exe" || finish 1
            set -- "./$_pab_exe" ;;
        *)
            echo "BATCH_FILE_TYPE must be script or zip, not $BATCH_FILE_TYPE" >&2
            finish 2 ;;
    esac
else
    if [ -n "${TRANSFER_INPUT_FILES:-}" ] && [ -n "$bucket" ]; then
        for f in $(echo "$TRANSFER_INPUT_FILES" | tr ',' ' '); do
            aws s3 cp --quiet "$bucket/$f" "./$f" >&2 || echo "cannot download $bucket/$f" >&2
        done
    fi
    set -- "$_pab_exe"
fi
if [ "$_pab_nargs" = 1 ]; then
    set -- "$@" "$_pab_args"
fi
"$@" 2>>"$errf"
finish $?
""".replace("@MARKER@", TASK_STDERR_MARKER)


def task_script(name: str, executable: str, arguments: str, environment: list) -> tuple[str, list]:
    """The per-task description the launcher sources.  Returns (text, skipped variable names)."""
    q = shlex.quote
    lines = ["# task description written by pegasus-aws-batch",
             f"_pab_name={q(name)}",
             f"_pab_exe={q(executable)}",
             f"_pab_nargs={1 if arguments else 0}",
             f"_pab_args={q(arguments or '')}"]
    skipped = []
    for var, value in environment:
        if not _NAME_OK.match(var) or var.startswith("AWS_BATCH"):
            skipped.append(var)
            continue
        lines.append(f"{var}={q(value)}; export {var}")
    return "\n".join(lines) + "\n", skipped
