"""What a benchmark ran on, said with its figures: cores, CPU model, the file system of the
directory the write-ahead log goes to, that file system's fdatasync latency (a 1-second probe),
and how busy the machine was with other processes (figures taken on a busy machine are not
comparable: a warning when others used more than 5% of the CPU)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BUSY_SHARE = 0.05


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    log_fs: str  # the file system type of the log's directory (ext4, tmpfs, overlay…)
    fdatasync_ms: float  # median of a 1-second probe: 4 KiB appended and fdatasync'd
    others_cpu_share: float  # the highest share of all cores other processes used, sampled before and after

    def line(self) -> str:
        return (f"machine: {self.cores} cores, {self.cpu}; log on {self.log_fs}, fdatasync {self.fdatasync_ms:.3f} ms "
                f"(median of a 1 s probe); other processes {self.others_cpu_share:.0%} of the CPU")

    def warning(self) -> str | None:
        if self.others_cpu_share > BUSY_SHARE:
            return (f"WARNING: other processes used {self.others_cpu_share:.0%} of the CPU (over {BUSY_SHARE:.0%}): "
                    "these figures are not comparable with a quiet machine's")
        return None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def file_system(directory: Path) -> str:
    """The type of the mount that holds `directory` (the longest mount point that is its prefix)."""
    resolved, best, kind = directory.resolve(), "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, point, fs_type, *_ = line.split()
            if (str(resolved) == point or str(resolved).startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best, kind = point, fs_type
    except OSError:
        pass
    return kind


def fdatasync_ms(directory: Path, seconds: float = 1.0) -> float:
    """Median latency of appending 4 KiB and fdatasync, for `seconds`, in a file in `directory`."""
    block = b"\0" * 4096
    timings = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="fdatasync-probe-") as probe:
        ends = time.perf_counter() + seconds
        while time.perf_counter() < ends:
            started = time.perf_counter()
            os.write(probe.fileno(), block)
            os.fdatasync(probe.fileno())
            timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def _busy_and_total() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def others_cpu_share(seconds: float = 1.0) -> float:
    """The share of all cores that other processes use, sampled for `seconds` while this one
    sleeps (the benchmark's servers stopped): taken before and after the rounds."""
    busy, total = _busy_and_total()
    time.sleep(seconds)
    busy_after, total_after = _busy_and_total()
    return (busy_after - busy) / (total_after - total) if total_after > total else 0.0


def describe(log_directory: Path, others_cpu_share: float) -> Machine:
    return Machine(os.cpu_count() or 1, cpu_model(), file_system(log_directory), round(fdatasync_ms(log_directory), 3),
                   round(others_cpu_share, 3))
