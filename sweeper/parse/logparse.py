"""Streaming extraction of metric values from a benchmark log, per instance.

Works on bytes, chunk by chunk, so memory stays bounded whatever the log's size and any
encoding goes through. Handles what launchers really print:

* OpenMPI/poprun `[1,<rank>]<stdout>:` and torchrun `[default<rank>]:` tags. A process that
  writes part of a line gets a tag, and another instance's tag may follow on the same
  physical line; that instance's next tagged segment continues its line. Lines are
  reassembled per instance before any value is read.
* CRLF line ends and progress bars redrawn with carriage returns (each `\\r` ends a line).
* A last line without its newline (a write cut off): never read, since its number may be
  incomplete. Metric regexes also need text after the number, so a cut value cannot match.

Values that are not numbers are counted, not read; NaN and inf are kept so the run can be
judged invalid.
"""

from __future__ import annotations

import io
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sweeper.process import aside
from sweeper.process.cores import available_cores

CHUNK_BYTES = 1 << 20
# A file this large or larger is read in parts, one process per core (up to MAX_PARTS).
PARALLEL_MIN_BYTES = 64 << 20
MAX_PARTS = 8
# A partial line longer than this is cut: a runaway progress bar must not grow memory.
MAX_PARTIAL_BYTES = 1 << 16

TAG = re.compile(rb"\[(?:\d+,(\d+)\]<std(?:out|err)>|default(\d+)\]):")
# CRLF is one line end; any other \r ends a line too (a progress bar's redraws). One regex
# pass: bytes.replace of a two-byte pattern took four times as long.
LINE_END_CR = re.compile(rb"\r\n?")
_LAST_BYTE = operator.itemgetter(slice(-1, None))  # b"" for an empty segment
UNTAGGED = -1  # lines outside any instance tag (the launcher's own output)


@dataclass(frozen=True)
class MetricPatterns:
    """One log format: compiled regexes whose group `value` is the number."""

    name: str
    throughput: re.Pattern[bytes]
    latency_ms: re.Pattern[bytes] | None = None
    # A line saying why the program stopped measuring (its `value`: a word, e.g. budget).
    stopped: re.Pattern[bytes] | None = None

    @classmethod
    def compile(
        cls, name: str, throughput: str, latency_ms: str | None, stopped: str | None = None
    ) -> MetricPatterns:
        return cls(
            name,
            _compile_value_regex(name, throughput),
            _compile_value_regex(name, latency_ms) if latency_ms else None,
            _compile_value_regex(name, stopped) if stopped else None,
        )


def _compile_value_regex(format_name: str, regex: str) -> re.Pattern[bytes]:
    try:
        pattern = re.compile(regex.encode())
    except re.error as exc:
        raise ValueError(f"metric format '{format_name}': bad regex {regex!r}: {exc}") from None
    if pattern.groups != 1 or "value" not in pattern.groupindex:
        raise ValueError(
            f"metric format '{format_name}': regex {regex!r} needs exactly one group, "
            "named value: (?P<value>...)"
        )
    return pattern


@dataclass
class ParsedLog:
    """Values found in one log, by instance (rank), in the order they were printed."""

    format: str | None = None
    throughput: dict[int, list[float]] = field(default_factory=dict)
    latency_ms: dict[int, list[float]] = field(default_factory=dict)
    tagged: bool = False
    stopped: str | None = None  # why measuring stopped, where the program says it
    unparseable_values: int = 0
    bytes_read: int = 0

    def instances(self) -> list[int]:
        return sorted(set(self.throughput) | set(self.latency_ms))


class _InstanceDemux:
    """Splits a tagged byte stream into complete lines per instance."""

    def __init__(self) -> None:
        self.partial: dict[int, bytes] = {}
        self.tagged = False

    def feed(self, chunk: bytes) -> dict[int, list[bytes]]:
        """Returns, per instance, blocks of complete lines (each block ends with a newline)."""
        out: dict[int, list[bytes]] = {}
        pieces = TAG.split(chunk)
        # pieces: [untagged, mpi_rank, torchrun_rank, segment, mpi_rank, torchrun_rank, ...]
        self._segment(UNTAGGED, pieces[0], out)
        if len(pieces) > 1:
            self.tagged = True
        for i in range(1, len(pieces), 3):
            rank = int(pieces[i] or pieces[i + 1])
            self._segment(rank, pieces[i + 2], out)
        return out

    def _segment(self, rank: int, segment: bytes, out: dict[int, list[bytes]]) -> None:
        if not segment:
            return
        end = segment.find(b"\n")
        if end < 0:
            # A line still being written: keep it for this instance's next segment.
            self.partial[rank] = (self.partial.get(rank, b"") + segment)[-MAX_PARTIAL_BYTES:]
            return
        head = segment[: end + 1]
        pending = self.partial.pop(rank, None)
        if pending is not None:
            head = pending + head
        out.setdefault(rank, []).append(head)
        rest = segment[end + 1 :]
        if rest:
            # Untagged lines after a tagged one belong to no instance (e.g. poprun itself);
            # an unterminated untagged tail waits for more bytes.
            cut = rest.rfind(b"\n")
            if cut >= 0:
                out.setdefault(UNTAGGED, []).append(rest[: cut + 1])
            if cut < len(rest) - 1:
                tail = rest[cut + 1 :]
                self.partial[UNTAGGED] = (self.partial.get(UNTAGGED, b"") + tail)[
                    -MAX_PARTIAL_BYTES:
                ]


class MetricExtractor:
    """Feeds log bytes in; collects throughput and latency values per instance.

    With several candidate formats, the first (in the given order) whose throughput regex
    matches a complete line is used for the rest of the log (auto-detection).
    """

    def __init__(
        self,
        formats: Iterable[MetricPatterns],
        line_sink: Callable[[int, bytes], None] | None = None,
    ) -> None:
        """`line_sink(rank, block)` receives each instance's complete lines (per-instance logs)."""
        self.line_sink = line_sink
        # None: a workload that reads its figures from a file only (metrics.file).
        self.candidates = list(formats)
        self.chosen: MetricPatterns | None = None
        self.demux = _InstanceDemux()
        self.carry = b""
        self.result = ParsedLog()

    def feed(self, data: bytes) -> None:
        self.result.bytes_read += len(data)
        data = self.carry + data
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut < 0:
            self.carry = data[-MAX_PARTIAL_BYTES:]
            return
        self.carry = data[cut + 1 :]
        self._lines(data[: cut + 1])

    def _lines(self, block: bytes) -> None:
        if b"\r" in block:
            block = LINE_END_CR.sub(b"\n", block)
        if self.line_sink is None and not self.demux.partial and self._scan_whole_lines(block):
            return
        for rank, pieces in self.demux.feed(block).items():
            text = b"".join(pieces)
            if self.line_sink is not None:
                self.line_sink(rank, text)
            self._scan(rank, text)

    def _scan(self, rank: int, text: bytes) -> None:
        if self.chosen is None:
            for fmt in self.candidates:
                if fmt.throughput.search(text):
                    self.chosen = fmt
                    self.result.format = fmt.name
                    break
            else:
                return
        fmt = self.chosen
        self._collect(fmt.throughput, text, self.result.throughput, rank)
        if fmt.latency_ms is not None:
            self._collect(fmt.latency_ms, text, self.result.latency_ms, rank)
        if fmt.stopped is not None and (said := fmt.stopped.findall(text)):
            self.result.stopped = said[-1].decode("utf-8", "replace")

    def _scan_whole_lines(self, block: bytes) -> bool:
        """Fast path for a block in which every tagged line is whole and alone on its line:
        group the lines by instance with C-level splits, then one regex pass per instance.
        Returns False (nothing done) when the block needs the general demultiplexer."""
        pieces = TAG.split(block)
        if len(pieces) == 1:
            self._scan(UNTAGGED, block)
            return True
        head, segments = pieces[0], pieces[3::3]
        # Every tag starts a line and every tagged segment is exactly one line; otherwise
        # (a line cut by another instance's tag, untagged lines in between) go the long way.
        # Each segment ends with a newline and the block has no more newlines than the
        # segments and the head: each segment holds exactly one, so each tag starts a line.
        if (
            (head and not head.endswith(b"\n"))
            or set(map(_LAST_BYTE, segments)) != {b"\n"}
            or block.count(b"\n") != head.count(b"\n") + len(segments)
        ):
            return False
        self.demux.tagged = True
        self._scan(UNTAGGED, head)
        # One of the two rank groups is set per tag (OpenMPI's or torchrun's).
        keys = [a or b for a, b in zip(pieces[1::3], pieces[2::3], strict=True)]
        for rank, lines in _lines_by_instance(keys, segments):
            self._scan(rank, lines)
        return True

    def _collect(
        self, pattern: re.Pattern[bytes], text: bytes, into: dict[int, list[float]], rank: int
    ) -> None:
        found = pattern.findall(text)
        if not found:
            return
        values = into.setdefault(rank, [])
        before = len(values)
        try:
            values.extend(map(float, found))  # all at once in C: the common case
        except ValueError:
            del values[before:]
            for raw in found:
                try:
                    values.append(float(raw))
                except ValueError:
                    self.result.unparseable_values += 1

    def finish(self) -> ParsedLog:
        # self.carry is an unterminated last line: deliberately not read.
        # Instance partials never completed are dropped likewise.
        return _finished(self.result, self.demux.tagged)


# Per digit: a translation table giving 1 for that digit's byte and 0 for any other.
_SELECT_DIGIT = {digit: bytes(int(byte == digit) for byte in range(256)) for digit in b"0123456789"}


def _lines_by_instance(keys: list[bytes], lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
    """Each instance's lines joined, instances in order of appearance; keys[i] is the rank
    (digits) of lines[i]. Selected in C: the per-line Python loop was the parse's largest cost."""
    ranks = b"".join(keys)
    one_digit = len(ranks) == len(keys)  # up to 10 instances: one byte per line
    for key in dict.fromkeys(keys):
        selector: Iterable[object] = (
            ranks.translate(_SELECT_DIGIT[key[0]])
            if one_digit
            else map(operator.eq, keys, itertools.repeat(key))
        )
        yield int(key), b"".join(itertools.compress(lines, selector))


def _finished(result: ParsedLog, tagged: bool) -> ParsedLog:
    result.tagged = tagged
    if tagged:
        # Values outside any instance's tag are not an instance's measurement.
        result.throughput.pop(UNTAGGED, None)
        result.latency_ms.pop(UNTAGGED, None)
    else:
        for series in (result.throughput, result.latency_ms):
            if UNTAGGED in series:
                series[0] = series.pop(UNTAGGED)
    return result


def compile_formats(formats: Mapping[str, Mapping[str, str | None]]) -> list[MetricPatterns]:
    """From config (`name: {throughput: regex, latency_ms: regex}`) to compiled patterns."""
    compiled = []
    for name, spec in formats.items():
        throughput = spec.get("throughput")
        if not throughput:
            raise ValueError(f"metric format '{name}' has no throughput regex")
        compiled.append(
            MetricPatterns.compile(name, throughput, spec.get("latency_ms"), spec.get("stopped"))
        )
    return compiled


def parse_stream(
    stream: BinaryIO,
    formats: Iterable[MetricPatterns],
    line_sink: Callable[[int, bytes], None] | None = None,
) -> ParsedLog:
    extractor = MetricExtractor(formats, line_sink=line_sink)
    _feed(extractor, stream)
    return extractor.finish()


def _feed(extractor: MetricExtractor, stream: BinaryIO, limit: float = math.inf) -> None:
    """The stream's bytes (at most `limit` of them) into the extractor, chunk by chunk."""
    while limit > 0 and (chunk := stream.read(int(min(CHUNK_BYTES, limit)))):
        limit -= len(chunk)
        extractor.feed(chunk)


def parse_bytes(data: bytes, formats: Iterable[MetricPatterns]) -> ParsedLog:
    return parse_stream(io.BytesIO(data), formats)


def parse_file(path: str | Path, formats: Iterable[MetricPatterns]) -> ParsedLog:
    """A log file's values; a large one is read in parts by one process per core."""
    formats = list(formats)
    parts = _parts(Path(path))
    if len(parts) > 1:
        parsed = parse_in_parts(Path(path), formats, parts)
        if parsed is not None:
            return parsed
    with open(path, "rb") as stream:
        return parse_stream(stream, formats)


@dataclass
class _Part:
    """What one part of a file gave, before the file's end is judged (_finished)."""

    result: ParsedLog
    tagged: bool
    # An instance's line still open at the part's end: the next part would not know it.
    open_line: bool


def _parts(path: Path) -> list[tuple[int, int]]:
    """One part per core for a file of PARALLEL_MIN_BYTES or more (else one), where this
    process may fork (sweeper.process.aside.can_fork)."""
    size = path.stat().st_size
    count = min(available_cores(), MAX_PARTS, size // PARALLEL_MIN_BYTES)
    if count < 2 or not aside.can_fork():
        return [(0, size)]
    return split_at_lines(path, count)


def split_at_lines(path: Path, count: int) -> list[tuple[int, int]]:
    """`count` byte ranges of about the same size, each ending with a line."""
    size = path.stat().st_size
    starts = [0]
    with open(path, "rb") as stream:
        for i in range(1, count):
            stream.seek(max(size * i // count, starts[-1]))
            stream.readline()  # to the next line's start
            starts.append(stream.tell())
    bounds = [*starts, size]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _parse_part(path: Path, formats: list[MetricPatterns], start: int, end: int) -> _Part:
    extractor = MetricExtractor(formats)
    with open(path, "rb") as stream:
        stream.seek(start)
        _feed(extractor, stream, end - start)
    return _Part(extractor.result, extractor.demux.tagged, bool(extractor.demux.partial))


def parse_in_parts(
    path: Path, formats: list[MetricPatterns], parts: list[tuple[int, int]]
) -> ParsedLog | None:
    """The parts read at once (forked workers), joined as one reading would have read
    them; None where they might differ from one reading (the caller reads it whole): an
    instance's line open across a part's end, or parts that did not all find one format."""
    with aside.FORK.Pool(len(parts)) as pool:
        done = pool.starmap(_parse_part, [(path, formats, a, b) for a, b in parts])
    # Each part found its format alone: one reading finds it once and reads every later
    # line by it (a part without a throughput line may still hold latencies).
    chosen = {part.result.format for part in done}
    if len(chosen) > 1 or any(part.open_line for part in done[:-1]):
        return None
    joined = ParsedLog(format=chosen.pop())
    for part in done:
        for into, series in (
            (joined.throughput, part.result.throughput),
            (joined.latency_ms, part.result.latency_ms),
        ):
            for rank, values in series.items():
                into.setdefault(rank, []).extend(values)
        joined.stopped = part.result.stopped or joined.stopped
        joined.unparseable_values += part.result.unparseable_values
        joined.bytes_read += part.result.bytes_read
    return _finished(joined, any(part.tagged for part in done))
