"""The workflow of ``awsbatch_gahp demo``: a small clustered Pegasus-style diamond.

Four levels, each a bag (cluster) of jobs that only depend on the level before::

    level 1  split    1 job   input.txt          -> part-1.txt .. part-N.txt
    level 2  count    N jobs  part-i.txt         -> counts-i.txt     (in parallel)
    level 3  merge    1 job   counts-*.txt       -> merged.txt
    level 4  summary  1 job   merged.txt         -> summary.txt

The jobs are small POSIX sh scripts (awk, sort, head) written into the work directory; each
takes the directory holding its files as its first argument, so the same scripts run with
absolute paths on the submit host (the demo's default: the local Batch runs jobs on this
machine) and with ``"."`` inside a staged job's scratch directory (``--staging``, and the
DAGMan files of ``--write-dag``).  Everything here is pure (no AWS, no GAHP): the driver is
:mod:`gahp.demo`.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random

#: Words of the generated input text; their frequency follows a Zipf-like law so the
#: top-10 of the summary is meaningful.
VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if so "
    "no will more can its who said what up out about into than them only other time some could "
    "these two may first then do any like my now over such our man me even most made after also "
    "did many before must through back years where much your way well down should because each "
    "just those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three batch condor pegasus workflow"
).split()

SCRIPTS = {
    "split.sh": r"""#!/bin/sh
# split.sh DIR N: split DIR/input.txt round robin by line into DIR/part-1.txt .. part-N.txt
set -eu
cd "$1"
n=$2
awk -v n="$n" '
    BEGIN { for (i = 1; i <= n; i++) printf "" > ("part-" i ".txt") }
    { print > ("part-" ((NR - 1) % n + 1) ".txt") }
' input.txt
i=1
while [ "$i" -le "$n" ]; do
    echo "split: part-$i.txt has $(wc -w < "part-$i.txt" | tr -d ' ') words"
    i=$((i + 1))
done
""",
    "count.sh": r"""#!/bin/sh
# count.sh DIR I: count the words of DIR/part-I.txt into DIR/counts-I.txt ("word count" lines)
set -eu
cd "$1"
i=$2
LC_ALL=C; export LC_ALL
awk '{ for (f = 1; f <= NF; f++) c[$f]++ } END { for (w in c) print w, c[w] }' "part-$i.txt" \
    | sort > "counts-$i.txt.tmp"
mv "counts-$i.txt.tmp" "counts-$i.txt"
echo "count: part-$i.txt: $(wc -l < "counts-$i.txt" | tr -d ' ') distinct words"
""",
    "merge.sh": r"""#!/bin/sh
# merge.sh DIR N: add up DIR/counts-1.txt .. counts-N.txt into DIR/merged.txt
set -eu
cd "$1"
n=$2
LC_ALL=C; export LC_ALL
files=
i=1
while [ "$i" -le "$n" ]; do
    [ -f "counts-$i.txt" ] || { echo "merge: counts-$i.txt is missing" >&2; exit 1; }
    files="$files counts-$i.txt"
    i=$((i + 1))
done
# shellcheck disable=SC2086
cat $files | awk '{ c[$1] += $2 } END { for (w in c) print w, c[w] }' | sort > merged.txt.tmp
mv merged.txt.tmp merged.txt
echo "merge: $n count files, $(wc -l < merged.txt | tr -d ' ') distinct words"
""",
    "summary.sh": r"""#!/bin/sh
# summary.sh DIR: totals and the 10 most frequent words of DIR/merged.txt into DIR/summary.txt
set -eu
cd "$1"
LC_ALL=C; export LC_ALL
{
    awk '{ t += $2; d++ } END { print "total_words", t + 0; print "distinct_words", d + 0 }' merged.txt
    echo "top_10"
    sort -k2,2nr -k1,1 merged.txt | head -n 10
} > summary.txt.tmp
mv summary.txt.tmp summary.txt
cat summary.txt
""",
}


@dataclasses.dataclass
class DemoJob:
    """One node of the diamond."""

    name: str  # unique, e.g. count_2
    level: int
    level_name: str  # split / count / merge / summary
    script: str  # key of SCRIPTS
    args: list[str]  # after the directory argument
    inputs: list[str]  # file names in the data directory
    outputs: list[str]
    parents: list[str] = dataclasses.field(default_factory=list)


LEVELS = ("split", "count", "merge", "summary")


def make_input_text(words: int = 3000, seed: int = 2024, per_line: int = 12) -> str:
    """A deterministic text of ``words`` lower-case words, ``per_line`` to a line."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]
    chosen = rng.choices(VOCABULARY, weights=weights, k=words)
    lines = [" ".join(chosen[i:i + per_line]) for i in range(0, len(chosen), per_line)]
    return "\n".join(lines) + "\n"


def diamond(parts: int = 4) -> list[list[DemoJob]]:
    """The jobs, level by level."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    part_files = [f"part-{i}.txt" for i in range(1, parts + 1)]
    count_files = [f"counts-{i}.txt" for i in range(1, parts + 1)]
    split = DemoJob("split", 1, "split", "split.sh", [str(parts)], ["input.txt"], part_files)
    counts = [DemoJob(f"count_{i}", 2, "count", "count.sh", [str(i)], [f"part-{i}.txt"], [f"counts-{i}.txt"],
                      parents=[split.name]) for i in range(1, parts + 1)]
    merge = DemoJob("merge", 3, "merge", "merge.sh", [str(parts)], count_files, ["merged.txt"],
                    parents=[c.name for c in counts])
    summary = DemoJob("summary", 4, "summary", "summary.sh", [], ["merged.txt"], ["summary.txt"],
                      parents=[merge.name])
    return [[split], counts, [merge], [summary]]


# --------------------------------------------------------------------------- expected results


def word_counts(text: str) -> collections.Counter:
    return collections.Counter(text.split())


def split_parts(text: str, parts: int) -> list[str]:
    """What split.sh writes: lines dealt round robin."""
    out: list[list[str]] = [[] for _ in range(parts)]
    for i, line in enumerate(text.splitlines()):
        out[i % parts].append(line + "\n")
    return ["".join(p) for p in out]


def merged_text(counts: collections.Counter) -> str:
    """merged.txt: ``word count`` lines in byte order of the word."""
    return "".join(f"{w} {c}\n" for w, c in sorted(counts.items(), key=lambda kv: kv[0].encode()))


def summary_text(counts: collections.Counter) -> str:
    """summary.txt as summary.sh writes it, computed independently in Python."""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode()))[:10]
    lines = [f"total_words {sum(counts.values())}", f"distinct_words {len(counts)}", "top_10"]
    lines += [f"{w} {c}" for w, c in top]
    return "\n".join(lines) + "\n"


def write_scripts(directory: str) -> dict[str, str]:
    """Write the job scripts (mode 755) into ``directory``; returns name -> absolute path."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name, body in SCRIPTS.items():
        path = os.path.join(directory, name)
        with open(path, "w") as fh:
            fh.write(body)
        os.chmod(path, 0o755)
        paths[name] = os.path.abspath(path)
    return paths


# --------------------------------------------------------------------------- HTCondor syntax


def v2_quote(args: list[str]) -> str:
    """HTCondor V2 ("new") argument syntax for ``args`` (the inverse of parse_args_v2)."""
    out = []
    for arg in args:
        if arg and not any(ch.isspace() or ch in "'\"" for ch in arg):
            out.append(arg)
        else:
            out.append("'" + arg.replace("'", "''") + "'")
    return " ".join(out)


def submit_file_arguments(args: list[str]) -> str:
    """A submit file ``arguments = "..."`` value (V2 syntax inside double quotes)."""
    return '"' + v2_quote(args).replace('"', '""') + '"'


def write_dag(directory: str, parts: int = 4, words: int = 3000, *, grid_resource: str = "batch awsbatch",
              extra_submit_lines: list[str] | None = None) -> str:
    """Write the diamond as a DAGMan workflow of grid universe jobs; returns the .dag path.

    Each node's submit file runs its script with ``"."`` as the data directory and moves
    its files with ``transfer_input_files``/``transfer_output_files`` (so the GAHP needs
    ``AWSBATCH_GAHP_S3_URL`` set, as on real AWS Batch).  Node outputs land in
    ``directory``, where the next level's nodes pick them up.
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    write_scripts(directory)
    with open(os.path.join(directory, "input.txt"), "w") as fh:
        fh.write(make_input_text(words))
    levels = diamond(parts)
    dag = [f"# awsbatch_gahp demo: a clustered diamond ({parts} count jobs), grid_resource = {grid_resource}"]
    for level in levels:
        for job in level:
            sub = f"{job.name}.sub"
            lines = [
                f"# level {job.level} ({job.level_name}) of the awsbatch_gahp demo diamond",
                "universe = grid",
                f"grid_resource = {grid_resource}",
                f"executable = {job.script}",
                f"arguments = {submit_file_arguments(['.', *job.args])}",
                "should_transfer_files = YES",
                "when_to_transfer_output = ON_EXIT",
                f"transfer_input_files = {', '.join(job.inputs)}",
                f"transfer_output_files = {', '.join(job.outputs)}",
                f"output = {job.name}.out",
                f"error = {job.name}.err",
                "log = diamond.log",
                "request_cpus = 1",
                "request_memory = 256",
                *(extra_submit_lines or []),
                "queue",
            ]
            with open(os.path.join(directory, sub), "w") as fh:
                fh.write("\n".join(lines) + "\n")
            dag.append(f"JOB {job.name} {sub}")
    for level in levels:
        for job in level:
            if job.parents:
                dag.append(f"PARENT {' '.join(job.parents)} CHILD {job.name}")
    path = os.path.join(directory, "diamond.dag")
    with open(path, "w") as fh:
        fh.write("\n".join(dag) + "\n")
    return path
