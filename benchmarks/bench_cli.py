"""Wall time of mvld-distill's refusals and --help: the command line checked before the heavy imports
(``examples/distill.py``, as ``mvld-distill``) against the same checks made after importing mvld_hf (what every
refusal cost before the checks moved ahead of torch/transformers).

    python benchmarks/bench_cli.py            # 3 repeats of each case; prints a table and the machine's load
    python benchmarks/bench_cli.py --repeats 1

Goal (issue 24): a bad flag refused in under 10 s of wall time on the project's 2-core machine. Not a test: the
times depend on the machine's load, which is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "distill.py")
EAGER = "import mvld_hf, sys; from mvld_hf.cli.distill import main; main(sys.argv[1:])"

CASES = {
    "bad flag (--max_stpes 5)": ["--max_stpes", "5"],
    "missing package (--report_to wandb)": ["--report_to", "wandb"],
    "--help": ["--help"],
}


def run(command: list[str]) -> tuple[float, float, float | None]:
    """(wall s, CPU s of the child, s to the first line of output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    first = proc.stdout.readline()
    first_at = time.perf_counter() - start if first else None
    proc.stdout.read()
    proc.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, first_at


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"load {load:.1f} on {cores} cores, {time.strftime('%Y-%m-%d %H:%M')}, median of {args.repeats}")
    print("| case | route | wall s | CPU s | first line s |")
    print("|---|---|---|---|---|")
    for name, flags in CASES.items():
        for route, command in (("checked first (examples/distill.py)", [sys.executable, SCRIPT, *flags]),
                               ("imports first (before)", [sys.executable, "-c", EAGER, *flags])):
            runs = [run(command) for _ in range(args.repeats)]
            wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            firsts = [r[2] for r in runs if r[2] is not None]
            first = f"{statistics.median(firsts):.2f}" if firsts else "-"
            print(f"| {name} | {route} | {wall:.2f} | {cpu:.2f} | {first} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
