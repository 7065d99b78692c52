"""
The machine a benchmark ran on, and the CPU its processes spent.

CPU times come from /proc: the machine's (``/proc/stat``: idle, steal), a
process tree's (a gunicorn master and its workers, PostgreSQL's postmaster
and its backends), and this process's ended children's (wrk, through
``getrusage``). CPU time, unlike a rate, does not depend on how the load was
shared out, and steal says how much of the run another guest took.
"""

import os
import platform
import resource
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sh(*args: str, env=None) -> subprocess.CompletedProcess:
    """Run ``args`` in the project's directory; return its output, or raise."""
    return subprocess.run(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    )


def machine_cpu() -> list[int]:
    """Return the machine's CPU times from /proc/stat (user … steal), in ticks."""
    return [int(field) for field in Path("/proc/stat").read_text().split()[1:9]]


def tree_cpu(pid: int) -> float:
    """
    Return the CPU seconds of process ``pid`` and of its children, those that
    run (gunicorn's workers, PostgreSQL's backends) and those that ended.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile: its parent counts it
        if int(stat.parent.name) == pid:
            ticks += sum(int(field) for field in fields[11:15])  # with ended children
        elif int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """Return the CPU seconds this process's ended children spent."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Accounting:
    """
    The CPU spent from ``start()`` to ``stop()``: the machine's shares, the
    ended children's (the load's client), and each meter's tree (name: pid).
    """

    def __init__(self, meters: dict[str, int] | None = None) -> None:
        self.meters = meters or {}

    def start(self) -> "Accounting":
        self.children = children_cpu()
        self.machine = machine_cpu()
        self.trees = {name: tree_cpu(pid) for name, pid in self.meters.items()}
        self.began = time.monotonic()
        return self

    def stop(self, answers: int) -> dict:
        """Return the shares of the machine and each meter's ms per answer."""
        wall = time.monotonic() - self.began
        trees = {
            name: tree_cpu(self.meters[name]) - cpu for name, cpu in self.trees.items()
        }
        client = children_cpu() - self.children
        cpu = [b - a for a, b in zip(self.machine, machine_cpu(), strict=True)]
        total = max(1, sum(cpu))
        return {
            "client_cpu": client / (wall * (os.cpu_count() or 1)),
            "steal": cpu[7] / total,
            "idle": (cpu[3] + cpu[4]) / total,
            "cpu_ms": {
                name: 1000 * seconds / max(1, answers)
                for name, seconds in trees.items()
            },
        }


def facts() -> dict[str, str | int]:
    """Return what ran the benchmark: CPU, system, and the versions that matter."""
    import django
    import gunicorn

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "wrk": wrk.stdout.split(" [")[0].strip(),
    }


def postgres_version(bindir: Path) -> str:
    """Return ``postgres --version`` of the server in ``bindir``."""
    return sh(str(bindir / "postgres"), "--version").stdout.strip()


def describe(facts: dict) -> list[str]:
    """Return ``facts()`` as the lines of a report."""
    return [
        f"CPU: {facts['cpu']}, {facts['cores']} cores",
        f"{facts['system']}; Python {facts['python']}",
        f"Django {facts['django']}, gunicorn {facts['gunicorn']}, {facts['wrk']}",
    ]
