#!/bin/sh
# awsbatch-gahp job wrapper (generated jobs start it through the fetch-and-run contract).
#
# Started by the AWS "fetch and run" entrypoint (BATCH_FILE_TYPE=script,
# BATCH_FILE_S3_URL=s3://.../wrapper.sh, the first command argument dropped), or by
# Pegasus's images, it needs only a POSIX sh, the aws CLI and the usual small tools
# (mktemp, ln, cp, mv, wc, date, find, and sha256sum or openssl; setsid if present).
#
# Environment (set by the GAHP in containerOverrides; no credentials, ever):
#   AWSBATCH_GAHP_URL          s3://bucket/prefix/<attempt>/ of this submit attempt
#   AWSBATCH_GAHP_JOB_SHA256   SHA-256 of in/meta/job.sh (the job's argv, environment, manifest)
#   AWSBATCH_GAHP_KEEP         non-empty: keep the local work directory
#   AWS_BATCH_JOB_ATTEMPT      set by AWS Batch: each attempt writes under out/<attempt>/
#
# Layout under the prefix:
#   in/meta/job.sh  in/meta/inputs.sha256  in/meta/exe/<name>  in/meta/stdin  in/work/...
#   out/<attempt>/stdout  .../stderr  .../f/<i>  .../d/<i>/...  .../m/<i>   (the outputs)
#   out/<attempt>/result   (the result record, uploaded last, once the outputs are there)
#
# The job's environment is applied only in the job's own process: this shell, its aws
# and sha256sum calls keep the container's environment.  Every variable of the wrapper is
# named __awsbatch_gahp_*.
#
# Exit status: the job's own exit code (128+N for a signal, as Docker reports it); 1 when
# staging failed before the command ran.  The result record tells the GAHP which it was.

PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
export PATH

log() { printf 'awsbatch-gahp-wrapper: %s\n' "$*" >&2; }

__awsbatch_gahp_url=${AWSBATCH_GAHP_URL:-}
__awsbatch_gahp_job_sha=${AWSBATCH_GAHP_JOB_SHA256:-}
__awsbatch_gahp_keep=${AWSBATCH_GAHP_KEEP:-}
__awsbatch_gahp_attempt=${AWS_BATCH_JOB_ATTEMPT:-1}
case $__awsbatch_gahp_attempt in
    [1-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;;
    *) __awsbatch_gahp_attempt=1 ;;
esac
case $__awsbatch_gahp_url in
    s3://*/) ;;
    s3://*) __awsbatch_gahp_url=$__awsbatch_gahp_url/ ;;
    *) log "AWSBATCH_GAHP_URL must be an s3:// prefix, got '$__awsbatch_gahp_url'"; exit 2 ;;
esac
case $__awsbatch_gahp_job_sha in
    *[!0-9a-f]*|'') log "AWSBATCH_GAHP_JOB_SHA256 must be the SHA-256 of job.sh"; exit 2 ;;
esac
__awsbatch_gahp_dest=${__awsbatch_gahp_url}out/$__awsbatch_gahp_attempt/
unset AWSBATCH_GAHP_URL AWSBATCH_GAHP_JOB_SHA256 AWSBATCH_GAHP_KEEP BATCH_FILE_TYPE BATCH_FILE_S3_URL

if ! command -v aws >/dev/null 2>&1; then
    log "the aws CLI is not installed in this image"
    exit 1
fi
# Resolved now, with the container's PATH: the job's own PATH may not have them.
__awsbatch_gahp_env=$(command -v env 2>/dev/null) || __awsbatch_gahp_env=env
__awsbatch_gahp_setsid=$(command -v setsid 2>/dev/null) || __awsbatch_gahp_setsid=

__awsbatch_gahp_tmp=${TMPDIR:-/tmp}
__awsbatch_gahp_root=$(mktemp -d "$__awsbatch_gahp_tmp/awsbatch-gahp.XXXXXX" 2>/dev/null) || {
    __awsbatch_gahp_root=$__awsbatch_gahp_tmp/awsbatch-gahp.$$
    mkdir -m 700 "$__awsbatch_gahp_root" || { log "cannot create a work directory under $__awsbatch_gahp_tmp"; exit 1; }
}
__awsbatch_gahp_out=$__awsbatch_gahp_root/out
__awsbatch_gahp_result=$__awsbatch_gahp_root/result
mkdir "$__awsbatch_gahp_out" "$__awsbatch_gahp_out/f" "$__awsbatch_gahp_out/d" "$__awsbatch_gahp_out/m" || exit 1
: > "$__awsbatch_gahp_result"

__awsbatch_gahp_nl='
'
__awsbatch_gahp_cr=$(printf '\r')
__awsbatch_gahp_child=
__awsbatch_gahp_grouped=
__awsbatch_gahp_finishing=
__awsbatch_gahp_started=
__awsbatch_gahp_exit_code=
__awsbatch_gahp_exit_signal=
__awsbatch_gahp_staging_error=
__awsbatch_gahp_terminated=
__awsbatch_gahp_start_time=
__awsbatch_gahp_bytes_out=0
__awsbatch_gahp_bytes_in=0
__awsbatch_gahp_fast_sha=
__awsbatch_gahp_exe=

now() { date +%s 2>/dev/null || echo 0; }

# record KEY VALUE: one line of the result record (a value never spans lines).
record() {
    __awsbatch_gahp_v=$2
    case $__awsbatch_gahp_v in
        *"$__awsbatch_gahp_nl"*|*"$__awsbatch_gahp_cr"*)
            __awsbatch_gahp_v=$(printf '%s' "$__awsbatch_gahp_v" | tr '\r\n' '  ') ;;
    esac
    printf '%s=%s\n' "$1" "$__awsbatch_gahp_v" >> "$__awsbatch_gahp_result"
}

# sha_of FILE: print the file's SHA-256 in hex.
if command -v sha256sum >/dev/null 2>&1; then
    sha_of() { __awsbatch_gahp_h=$(sha256sum < "$1") || return 1; printf '%s\n' "${__awsbatch_gahp_h%% *}"; }
elif command -v openssl >/dev/null 2>&1; then
    sha_of() { __awsbatch_gahp_h=$(openssl dgst -sha256 -r < "$1") || return 1; printf '%s\n' "${__awsbatch_gahp_h%% *}"; }
else
    sha_of() { log "neither sha256sum nor openssl is installed"; return 1; }
fi
size_of() { __awsbatch_gahp_s=$(wc -c < "$1") || return 1; printf '%s\n' $__awsbatch_gahp_s; }

fail_staging() {
    __awsbatch_gahp_staging_error=$*
    log "$*"
    finish 1
}

# verify_input HEX SIZE PATH: PATH is relative to the work root (work/<name> or meta/...).
verify_input() {
    __awsbatch_gahp_name=${3#work/}
    [ -f "$__awsbatch_gahp_root/$3" ] \
        || fail_staging "input $__awsbatch_gahp_name was not downloaded from ${__awsbatch_gahp_url}in/$3"
    __awsbatch_gahp_got=$(sha_of "$__awsbatch_gahp_root/$3") \
        || fail_staging "cannot compute the SHA-256 of input $__awsbatch_gahp_name"
    [ "$__awsbatch_gahp_got" = "$1" ] \
        || fail_staging "input $__awsbatch_gahp_name is corrupted: its SHA-256 is $__awsbatch_gahp_got, expected $1"
}

# fetch_url URL NAME: an input the job fetches itself (s3://, http://, https://).
fetch_url() {
    case $1 in
        s3://*) aws s3 cp --only-show-errors "$1" "$__awsbatch_gahp_root/work/$2" >&2 ;;
        http://*|https://*)
            if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$__awsbatch_gahp_root/work/$2" "$1"
            elif command -v wget >/dev/null 2>&1; then wget -q -O "$__awsbatch_gahp_root/work/$2" "$1"
            else false; fi ;;
        *) false ;;
    esac || fail_staging "cannot fetch input $1"
}

# stage_manifest INDEX: list out/d/INDEX's regular files, with SHA-256 and size, in out/m/INDEX.
stage_manifest() {
    __awsbatch_gahp_d=$__awsbatch_gahp_out/d/$1
    __awsbatch_gahp_m=$__awsbatch_gahp_out/m/$1
    # A line-based manifest cannot carry names with a newline, carriage return or backslash.
    __awsbatch_gahp_bad=$(find "$__awsbatch_gahp_d" \( -name "*$__awsbatch_gahp_nl*" \
        -o -name "*$__awsbatch_gahp_cr*" -o -name '*\\*' \) -print 2>/dev/null)
    if [ -n "$__awsbatch_gahp_bad" ]; then record "out.$1" badname; return 1; fi
    (cd "$__awsbatch_gahp_d" && find . -type f -print) > "$__awsbatch_gahp_root/list" \
        || { record "out.$1" unreadable; return 1; }
    : > "$__awsbatch_gahp_m"
    __awsbatch_gahp_count=0
    while IFS= read -r __awsbatch_gahp_f; do
        __awsbatch_gahp_f=${__awsbatch_gahp_f#./}
        __awsbatch_gahp_h=$(sha_of "$__awsbatch_gahp_d/$__awsbatch_gahp_f") \
            && __awsbatch_gahp_n=$(size_of "$__awsbatch_gahp_d/$__awsbatch_gahp_f") \
            || { record "out.$1" unreadable; return 1; }
        printf '%s %s %s\n' "$__awsbatch_gahp_h" "$__awsbatch_gahp_n" "$__awsbatch_gahp_f" >> "$__awsbatch_gahp_m"
        __awsbatch_gahp_count=$((__awsbatch_gahp_count + 1))
        __awsbatch_gahp_bytes_out=$((__awsbatch_gahp_bytes_out + __awsbatch_gahp_n))
    done < "$__awsbatch_gahp_root/list"
    __awsbatch_gahp_h=$(sha_of "$__awsbatch_gahp_m") && __awsbatch_gahp_n=$(size_of "$__awsbatch_gahp_m") \
        || { record "out.$1" unreadable; return 1; }
    record "out.$1" "dir $__awsbatch_gahp_h $__awsbatch_gahp_n $__awsbatch_gahp_count"
}

# stage_output INDEX NAME: put one transfer_output_files entry under out/.
stage_output() {
    case $2 in
        /*|..|../*|*/..|*/../*) record "out.$1" refused; return 0 ;;
    esac
    __awsbatch_gahp_src=$__awsbatch_gahp_root/work/$2
    __awsbatch_gahp_dst=$__awsbatch_gahp_out/f/$1
    if [ -L "$__awsbatch_gahp_src" ]; then
        record "out.$1" link
    elif [ -f "$__awsbatch_gahp_src" ]; then
        ln "$__awsbatch_gahp_src" "$__awsbatch_gahp_dst" 2>/dev/null \
            || cp "$__awsbatch_gahp_src" "$__awsbatch_gahp_dst" || { record "out.$1" unreadable; return 0; }
        __awsbatch_gahp_h=$(sha_of "$__awsbatch_gahp_dst") && __awsbatch_gahp_n=$(size_of "$__awsbatch_gahp_dst") \
            || { record "out.$1" unreadable; return 0; }
        record "out.$1" "file $__awsbatch_gahp_h $__awsbatch_gahp_n"
        __awsbatch_gahp_bytes_out=$((__awsbatch_gahp_bytes_out + __awsbatch_gahp_n))
    elif [ -d "$__awsbatch_gahp_src" ]; then
        mv "$__awsbatch_gahp_src" "$__awsbatch_gahp_out/d/$1" 2>/dev/null \
            || cp -R "$__awsbatch_gahp_src" "$__awsbatch_gahp_out/d/$1" || { record "out.$1" unreadable; return 0; }
        stage_manifest "$1" || rm -rf "$__awsbatch_gahp_out/d/$1" "$__awsbatch_gahp_out/m/$1"
    else
        record "out.$1" missing
    fi
    return 0
}

stream_record() {  # KEY FILE
    if [ -f "$2" ]; then
        __awsbatch_gahp_h=$(sha_of "$2") && __awsbatch_gahp_n=$(size_of "$2") || return 0
        record "$1" "$__awsbatch_gahp_h $__awsbatch_gahp_n"
        __awsbatch_gahp_bytes_out=$((__awsbatch_gahp_bytes_out + __awsbatch_gahp_n))
    fi
}

upload_outputs() {
    aws s3 cp --recursive --no-follow-symlinks --only-show-errors --checksum-algorithm SHA256 \
        "$__awsbatch_gahp_out/" "$__awsbatch_gahp_dest" >&2 && return 0
    log "retrying the upload without S3 additional checksums"
    aws s3 cp --recursive --no-follow-symlinks --only-show-errors "$__awsbatch_gahp_out/" "$__awsbatch_gahp_dest" >&2
}

# finish CODE: record the outcome, upload the outputs, then the record, exit.
finish() {
    [ -n "$__awsbatch_gahp_finishing" ] && return 0
    __awsbatch_gahp_finishing=1
    trap '' TERM INT HUP
    if [ -n "$__awsbatch_gahp_started" ]; then
        stream_record stdout "$__awsbatch_gahp_out/stdout"
        stream_record stderr "$__awsbatch_gahp_out/stderr"
        if command -v job_outputs >/dev/null 2>&1; then job_outputs; fi
    fi
    record version 2
    record attempt "$__awsbatch_gahp_attempt"
    [ -n "$__awsbatch_gahp_exit_code" ] && record exit_code "$__awsbatch_gahp_exit_code"
    [ -n "$__awsbatch_gahp_exit_signal" ] && record exit_signal "$__awsbatch_gahp_exit_signal"
    [ -n "$__awsbatch_gahp_terminated" ] && record terminated "$__awsbatch_gahp_terminated"
    [ -n "$__awsbatch_gahp_staging_error" ] && record error "$__awsbatch_gahp_staging_error"
    [ -n "$__awsbatch_gahp_start_time" ] && record start "$__awsbatch_gahp_start_time"
    record end "$(now)"
    record bytes_in "$__awsbatch_gahp_bytes_in"
    record bytes_out "$__awsbatch_gahp_bytes_out"
    if ! upload_outputs; then
        log "cannot upload the job's outputs to $__awsbatch_gahp_dest"
        record upload_error "the staging wrapper could not upload the job's outputs to $__awsbatch_gahp_dest"
        [ "$1" = 0 ] && set -- 1
    fi
    # The record last: the GAHP reads nothing before it exists.
    if ! aws s3 cp --only-show-errors "$__awsbatch_gahp_result" "${__awsbatch_gahp_dest}result" >&2; then
        log "cannot upload the result record to ${__awsbatch_gahp_dest}result"
        [ "$1" = 0 ] && set -- 1
    fi
    cd / || true
    if [ -z "$__awsbatch_gahp_keep" ]; then rm -rf "$__awsbatch_gahp_root"; fi
    exit "$1"
}

# signal_job SIGNAL: the job's whole process group when it has one of its own, else the job.
signal_job() {
    if [ -n "$__awsbatch_gahp_grouped" ] && kill "-$1" "-$__awsbatch_gahp_child" 2>/dev/null; then
        return 0
    fi
    kill "-$1" "$__awsbatch_gahp_child" 2>/dev/null
}

# After SIGTERM (TerminateJob, timeout, spot reclaim; Docker allows 30 s before SIGKILL):
# stop the job, wait up to 20 s for it to end, and only then hash and upload its outputs.
on_signal() {
    trap '' TERM INT HUP
    __awsbatch_gahp_terminated=$1
    if [ -z "$__awsbatch_gahp_child" ]; then
        log "received SIG$1 before the command started"
        [ -z "$__awsbatch_gahp_started" ] \
            && __awsbatch_gahp_staging_error="terminated by SIG$1 before the command started"
        finish $((128 + $2))
    fi
    log "received SIG$1: stopping the job, then uploading what exists"
    signal_job TERM
    ( sleep 20; signal_job KILL ) &
    __awsbatch_gahp_watchdog=$!
    wait "$__awsbatch_gahp_child"
    __awsbatch_gahp_rc=$?
    kill -KILL "$__awsbatch_gahp_watchdog" 2>/dev/null  # it ignores TERM, as this shell now does
    __awsbatch_gahp_child=
    job_status "$__awsbatch_gahp_rc"
    finish "$__awsbatch_gahp_rc"
}
trap 'on_signal TERM 15' TERM
trap 'on_signal INT 2' INT
trap 'on_signal HUP 1' HUP

# job_status RC: a POSIX shell cannot tell exit(128+N) from death by signal N; treat
# 129..192 as signals, as Docker and AWS Batch do.
job_status() {
    if [ "$1" -gt 128 ] && [ "$1" -le 192 ]; then
        __awsbatch_gahp_exit_signal=$(($1 - 128))
    else
        __awsbatch_gahp_exit_code=$1
    fi
}

# ---------------------------------------------------------------- stage in
log "downloading inputs from ${__awsbatch_gahp_url}in/"
aws s3 cp --recursive --only-show-errors "${__awsbatch_gahp_url}in/" "$__awsbatch_gahp_root/" >&2 \
    || fail_staging "cannot download the job's inputs from ${__awsbatch_gahp_url}in/"
[ -f "$__awsbatch_gahp_root/meta/job.sh" ] \
    || fail_staging "the job description ${__awsbatch_gahp_url}in/meta/job.sh is missing"
__awsbatch_gahp_got=$(sha_of "$__awsbatch_gahp_root/meta/job.sh") || fail_staging "cannot compute the SHA-256 of job.sh"
[ "$__awsbatch_gahp_got" = "$__awsbatch_gahp_job_sha" ] || fail_staging \
    "the job description job.sh is corrupted: its SHA-256 is $__awsbatch_gahp_got, expected $__awsbatch_gahp_job_sha"
mkdir -p "$__awsbatch_gahp_root/work" || fail_staging "cannot create $__awsbatch_gahp_root/work"
# job.sh sets __awsbatch_gahp_{bytes_in,fast_sha,stdin_rel,stdout_mode,stderr_mode,exe},
# defines job_dirs, job_inputs, job_urls, job_env, job_outputs, and sets the positional
# parameters to the job's exact argv (the executable first).
. "$__awsbatch_gahp_root/meta/job.sh"
job_dirs
__awsbatch_gahp_checked=
if [ -n "$__awsbatch_gahp_fast_sha" ] && command -v sha256sum >/dev/null 2>&1; then
    # The manifest's own hash is in job.sh, whose hash is in the Batch job: a rewritten
    # manifest is caught here.
    __awsbatch_gahp_got=$(sha_of "$__awsbatch_gahp_root/meta/inputs.sha256" 2>/dev/null) || __awsbatch_gahp_got=
    [ "$__awsbatch_gahp_got" = "$__awsbatch_gahp_fast_sha" ] || fail_staging \
        "the input manifest inputs.sha256 is corrupted: its SHA-256 is $__awsbatch_gahp_got, expected $__awsbatch_gahp_fast_sha"
    (cd "$__awsbatch_gahp_root" && sha256sum -c meta/inputs.sha256 > "$__awsbatch_gahp_root/meta/check.log" 2>&1) \
        && __awsbatch_gahp_checked=1
fi
[ -n "$__awsbatch_gahp_checked" ] || job_inputs   # names the first bad file
job_urls

# ---------------------------------------------------------------- run
cd "$__awsbatch_gahp_root/work" || fail_staging "cannot enter $__awsbatch_gahp_root/work"
if [ -n "$__awsbatch_gahp_stdin_rel" ]; then
    __awsbatch_gahp_stdin=$__awsbatch_gahp_root/$__awsbatch_gahp_stdin_rel
else
    __awsbatch_gahp_stdin=/dev/null
fi
case $__awsbatch_gahp_stdout_mode in
    file) __awsbatch_gahp_stdout=$__awsbatch_gahp_out/stdout ;;
    *) __awsbatch_gahp_stdout=/dev/null ;;
esac
case $__awsbatch_gahp_stderr_mode in
    file) __awsbatch_gahp_stderr=$__awsbatch_gahp_out/stderr ;;
    *) __awsbatch_gahp_stderr=/dev/null ;;
esac
if [ -n "$__awsbatch_gahp_exe" ]; then
    chmod u+x "$__awsbatch_gahp_exe" 2>/dev/null || log "cannot make $__awsbatch_gahp_exe executable"
fi

# In the job's own process (never this shell): its environment, then its command, in a
# process group of its own when setsid exists (so SIGTERM reaches all it started).
run_job() {
    _CONDOR_SCRATCH_DIR=$__awsbatch_gahp_root/work
    export _CONDOR_SCRATCH_DIR
    job_env
    if [ -n "$__awsbatch_gahp_setsid" ]; then exec "$__awsbatch_gahp_setsid" "$@"; fi
    exec "$@"
}

__awsbatch_gahp_start_time=$(now)
__awsbatch_gahp_started=1
[ -n "$__awsbatch_gahp_setsid" ] && __awsbatch_gahp_grouped=1
log "running the job"
if [ "$__awsbatch_gahp_stderr_mode" = merged ]; then
    ( run_job "$@" ) < "$__awsbatch_gahp_stdin" > "$__awsbatch_gahp_stdout" 2>&1 &
else
    ( run_job "$@" ) < "$__awsbatch_gahp_stdin" > "$__awsbatch_gahp_stdout" 2> "$__awsbatch_gahp_stderr" &
fi
__awsbatch_gahp_child=$!
wait "$__awsbatch_gahp_child"
__awsbatch_gahp_rc=$?
__awsbatch_gahp_child=
job_status "$__awsbatch_gahp_rc"
log "the job exited with status $__awsbatch_gahp_rc"
finish "$__awsbatch_gahp_rc"
