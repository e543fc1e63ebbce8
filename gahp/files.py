"""Writing files on the submit host so that a reader never sees half of one.

Outputs land under the job's initial directory while DAGMan may already be starting the
children that read them, so every file is written under a temporary name in the same
directory and renamed into place only once complete (and verified, for the caller that
checks a checksum).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def replacing(path: str, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file to write; on success it replaces ``path`` atomically with ``mode``.

    If the block raises (a failed download, a checksum mismatch), the temporary file is
    removed and ``path`` is left as it was."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".awsbatch-gahp-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    with replacing(path, mode) as f:
        f.write(data)
