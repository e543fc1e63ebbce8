#!/bin/sh
# awsbatch-gahp job wrapper (generated jobs start it through the fetch-and-run contract).
#
# Started by the AWS "fetch and run" entrypoint (BATCH_FILE_TYPE=script,
# BATCH_FILE_S3_URL=s3://.../wrapper.sh, the first command argument dropped), or by
# Pegasus's images, it needs only a POSIX sh, the aws CLI and the usual small tools
# (mktemp, ln, cp, mv, wc, date, and sha256sum or openssl).
#
# Environment (set by the GAHP in containerOverrides; no credentials, ever):
#   AWSBATCH_GAHP_URL          s3://bucket/prefix/<attempt>/ of this submit attempt
#   AWSBATCH_GAHP_JOB_SHA256   SHA-256 of in/meta/job.sh (the job's argv, environment, manifest)
#   AWSBATCH_GAHP_KEEP         non-empty: keep the local work directory
#
# Layout under the prefix:
#   in/meta/job.sh  in/meta/inputs.sha256  in/meta/exe/<name>  in/meta/stdin  in/work/...
#   out/stdout  out/stderr  out/f/<i>  out/d/<i>/...  out/result   (written by this script)
#
# Exit status: the job's own exit code (128+N for a signal, as Docker reports it); 1 when
# staging failed before the command ran; 143 when terminated.  The result record
# out/result (key=value lines) tells the GAHP which it was.

PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
export PATH

log() { printf 'awsbatch-gahp-wrapper: %s\n' "$*" >&2; }

gahp_url=${AWSBATCH_GAHP_URL:-}
gahp_job_sha=${AWSBATCH_GAHP_JOB_SHA256:-}
gahp_keep=${AWSBATCH_GAHP_KEEP:-}
case $gahp_url in
    s3://*/) ;;
    s3://*) gahp_url=$gahp_url/ ;;
    *) log "AWSBATCH_GAHP_URL must be an s3:// prefix, got '$gahp_url'"; exit 2 ;;
esac
unset AWSBATCH_GAHP_URL AWSBATCH_GAHP_JOB_SHA256 AWSBATCH_GAHP_KEEP BATCH_FILE_TYPE BATCH_FILE_S3_URL

if ! command -v aws >/dev/null 2>&1; then
    log "the aws CLI is not installed in this image"
    exit 1
fi

tmpbase=${TMPDIR:-/tmp}
root=$(mktemp -d "$tmpbase/awsbatch-gahp.XXXXXX" 2>/dev/null) || {
    root=$tmpbase/awsbatch-gahp.$$
    mkdir -m 700 "$root" || { log "cannot create a work directory under $tmpbase"; exit 1; }
}
out=$root/out
mkdir "$out" "$out/f" "$out/d" || exit 1
: > "$out/result"

child=
finishing=
started=
exit_code=
exit_signal=
staging_error=
start_time=
bytes_out=0
job_bytes_in=0

now() { date +%s 2>/dev/null || echo 0; }
record() { printf '%s=%s\n' "$1" "$2" >> "$out/result"; }

# sha_of FILE: print the file's SHA-256 in hex.
if command -v sha256sum >/dev/null 2>&1; then
    sha_of() { _h=$(sha256sum < "$1") || return 1; printf '%s\n' "${_h%% *}"; }
elif command -v openssl >/dev/null 2>&1; then
    sha_of() { _h=$(openssl dgst -sha256 -r < "$1") || return 1; printf '%s\n' "${_h%% *}"; }
else
    sha_of() { log "neither sha256sum nor openssl is installed"; return 1; }
fi
size_of() { _s=$(wc -c < "$1") || return 1; printf '%s\n' $_s; }

fail_staging() {
    staging_error=$*
    log "$*"
    finish 1
}

# verify_input HEX SIZE PATH: PATH is relative to $root (work/<name> or meta/...).
verify_input() {
    _name=${3#work/}
    [ -f "$root/$3" ] || fail_staging "input $_name was not downloaded from ${gahp_url}in/$3"
    _got=$(sha_of "$root/$3") || fail_staging "cannot compute the SHA-256 of input $_name"
    [ "$_got" = "$1" ] || fail_staging "input $_name is corrupted: its SHA-256 is $_got, expected $1"
}

# fetch_url URL NAME: an input the job fetches itself (s3://, http://, https://).
fetch_url() {
    case $1 in
        s3://*) aws s3 cp --only-show-errors "$1" "$root/work/$2" >&2 ;;
        http://*|https://*)
            if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$root/work/$2" "$1"
            elif command -v wget >/dev/null 2>&1; then wget -q -O "$root/work/$2" "$1"
            else false; fi ;;
        *) false ;;
    esac || fail_staging "cannot fetch input $1"
}

# stage_output INDEX NAME: put one transfer_output_files entry under $out.
stage_output() {
    case $2 in
        /*|..|../*|*/..|*/../*) record "out.$1" refused; return 0 ;;
    esac
    _src=$root/work/$2
    if [ -L "$_src" ]; then
        record "out.$1" link
    elif [ -f "$_src" ]; then
        ln "$_src" "$out/f/$1" 2>/dev/null || cp "$_src" "$out/f/$1" || { record "out.$1" unreadable; return 0; }
        _h=$(sha_of "$out/f/$1") && _n=$(size_of "$out/f/$1") || { record "out.$1" unreadable; return 0; }
        record "out.$1" "file $_h $_n"
        bytes_out=$((bytes_out + _n))
    elif [ -d "$_src" ]; then
        mv "$_src" "$out/d/$1" 2>/dev/null || cp -R "$_src" "$out/d/$1" || { record "out.$1" unreadable; return 0; }
        record "out.$1" dir
    else
        record "out.$1" missing
    fi
}

stream_record() {  # KEY FILE
    if [ -f "$2" ]; then
        _h=$(sha_of "$2") && _n=$(size_of "$2") || return 0
        record "$1" "$_h $_n"
        bytes_out=$((bytes_out + _n))
    fi
}

upload_outputs() {
    aws s3 cp --recursive --no-follow-symlinks --only-show-errors --checksum-algorithm SHA256 \
        "$out/" "${gahp_url}out/" >&2 && return 0
    log "retrying the upload without S3 additional checksums"
    aws s3 cp --recursive --no-follow-symlinks --only-show-errors "$out/" "${gahp_url}out/" >&2
}

# finish CODE: record the outcome, upload what exists, exit.
finish() {
    [ -n "$finishing" ] && return 0
    finishing=1
    trap '' TERM INT HUP
    if [ -n "$started" ]; then
        stream_record stdout "$out/stdout"
        stream_record stderr "$out/stderr"
        if command -v job_outputs >/dev/null 2>&1; then job_outputs; fi
    fi
    record version 1
    [ -n "$exit_code" ] && record exit_code "$exit_code"
    [ -n "$exit_signal" ] && record exit_signal "$exit_signal"
    [ -n "$terminated" ] && record terminated "$terminated"
    [ -n "$staging_error" ] && record error "$staging_error"
    [ -n "$start_time" ] && record start "$start_time"
    record end "$(now)"
    record bytes_in "$job_bytes_in"
    record bytes_out "$bytes_out"
    if ! upload_outputs; then
        log "cannot upload the job's outputs to ${gahp_url}out/"
        [ "$1" = 0 ] && set -- 1
    fi
    cd / || true
    if [ -z "$gahp_keep" ]; then rm -rf "$root"; fi
    exit "$1"
}

terminated=
on_signal() {
    terminated=$1
    log "received SIG$1: stopping the job and uploading what exists"
    [ -n "$child" ] && kill -"$1" "$child" 2>/dev/null
    if [ -n "$child" ]; then exit_signal=$2; fi
    [ -z "$started" ] && staging_error="terminated by SIG$1 before the command started"
    finish $((128 + $2))
}
trap 'on_signal TERM 15' TERM
trap 'on_signal INT 2' INT
trap 'on_signal HUP 1' HUP

# ---------------------------------------------------------------- stage in
log "downloading inputs from ${gahp_url}in/"
aws s3 cp --recursive --only-show-errors "${gahp_url}in/" "$root/" >&2 \
    || fail_staging "cannot download the job's inputs from ${gahp_url}in/"
[ -f "$root/meta/job.sh" ] || fail_staging "the job description ${gahp_url}in/meta/job.sh is missing"
if [ -n "$gahp_job_sha" ]; then
    _got=$(sha_of "$root/meta/job.sh") || fail_staging "cannot compute the SHA-256 of job.sh"
    [ "$_got" = "$gahp_job_sha" ] \
        || fail_staging "the job description job.sh is corrupted: its SHA-256 is $_got, expected $gahp_job_sha"
fi
mkdir -p "$root/work" || fail_staging "cannot create $root/work"
# job.sh defines: job_bytes_in, job_fast_check, job_dirs, job_inputs, job_urls, job_env,
# job_outputs, job_stdin, job_stdout, job_stderr, and sets the positional parameters to
# the job's exact argv (the executable first).
. "$root/meta/job.sh"
job_dirs
checked=
if [ -n "$job_fast_check" ] && command -v sha256sum >/dev/null 2>&1; then
    (cd "$root" && sha256sum -c meta/inputs.sha256 > "$root/meta/check.log" 2>&1) && checked=1
fi
[ -n "$checked" ] || job_inputs   # names the first bad file
job_urls

# ---------------------------------------------------------------- run
cd "$root/work" || fail_staging "cannot enter $root/work"
_CONDOR_SCRATCH_DIR=$root/work
export _CONDOR_SCRATCH_DIR
job_env
[ -n "$job_stdin" ] && job_stdin=$root/$job_stdin || job_stdin=/dev/null
case $job_stdout in
    file) job_out=$out/stdout ;;
    *) job_out=/dev/null ;;
esac
case $job_stderr in
    file) job_err=$out/stderr ;;
    *) job_err=/dev/null ;;
esac
if [ "$1" != env ] && [ -f "$1" ] && [ ! -x "$1" ]; then chmod u+x "$1" 2>/dev/null; fi
start_time=$(now)
started=1
log "running the job"
if [ "$job_stderr" = merged ]; then
    "$@" < "$job_stdin" > "$job_out" 2>&1 &
else
    "$@" < "$job_stdin" > "$job_out" 2> "$job_err" &
fi
child=$!
wait "$child"
rc=$?
child=
# A POSIX shell cannot tell exit(128+N) from death by signal N: treat 129..192 as signals,
# as Docker and AWS Batch do.
if [ "$rc" -gt 128 ] && [ "$rc" -le 192 ]; then
    exit_signal=$((rc - 128))
else
    exit_code=$rc
fi
log "the job exited with status $rc"
finish "$rc"
