"""One output stream of a job (stdout or stderr), read as it is written.

The job writes into a pipe (a job the fork server starts opens a named one, a FIFO in a
private temporary directory, by name like a file; any other job's process is handed an
anonymous one); the runner copies what arrives into the job's log file, up to
a size limit beyond which the output is dropped after a marker line, so a job that prints
without end cannot fill the disk. Every byte still goes to the metric extractor: the
figures come from all of the output, kept or not.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import tempfile
from pathlib import Path

from sweeper.parse.logparse import MetricExtractor

READ_SIZE = 1 << 16
_names = itertools.count()


@functools.cache
def _fifo_dir() -> Path:
    """One private directory per process for its jobs' pipes (made once: a directory per
    job cost more than the rest of the pipe's set-up)."""
    path = Path(tempfile.mkdtemp(prefix="sweeper-pipes-"))
    atexit.register(shutil.rmtree, path, True)
    return path


class LogPipe:
    def __init__(
        self,
        log_path: Path,
        limit_bytes: int | None,
        extractor: MetricExtractor,
        named: bool = False,
    ) -> None:
        """named: a FIFO the job opens by name (`fifo`); else an anonymous pipe, which costs
        the filesystem nothing (a FIFO's set-up was over half a millisecond a stream here,
        between one job's end and the next one's start)."""
        self.log_path = log_path
        self.limit = limit_bytes
        self.extractor = extractor
        self.written = 0
        self.dropped = 0
        # Our own write end as well: the pipe never reads as ended before the job has opened
        # it, and stays readable after; the job's end is told by its exit, not end of file.
        self.fifo: Path | None = None
        if named:
            self.fifo = _fifo_dir() / f"{next(_names)}-{log_path.name}"
            os.mkfifo(self.fifo, 0o600)
            self.fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
            self._own_writer = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        else:
            self.fd, self._own_writer = os.pipe()
            os.set_blocking(self.fd, False)  # reads only: the job's copy of the write end blocks
        # Unbuffered: what arrives is in the log at once (tail -f), one write each.
        self.log = open(log_path, "wb", buffering=0)  # noqa: SIM115 (closed in close())

    def writer(self) -> int:
        """A write end for a child process (the caller closes it once the child has it)."""
        if self.fifo is None:
            return os.dup(self._own_writer)
        return os.open(self.fifo, os.O_WRONLY)

    def note(self, text: str) -> None:
        """A line of the sweeper's own in the log (not parsed for metrics)."""
        self.log.write(text.encode())

    def pump(self) -> None:
        """Takes everything the job has written so far."""
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                return
            self.extractor.feed(data)
            self._keep(data)

    def _keep(self, data: bytes) -> None:
        room = len(data) if self.limit is None else max(0, self.limit - self.written)
        if room:
            self.log.write(data[:room])
            self.written += min(room, len(data))
        if len(data) > room:
            if not self.dropped:
                self.log.write(
                    f"\n[sweeper] log_limit_mb reached ({self.limit} bytes): the rest of this "
                    "output is dropped (its metrics are still read)\n".encode()
                )
            self.dropped += len(data) - room

    def close(self) -> None:
        for fd in (self.fd, self._own_writer):
            os.close(fd)
        self.log.close()
        if self.fifo is not None:
            self.fifo.unlink(missing_ok=True)
