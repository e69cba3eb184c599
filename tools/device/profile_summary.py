"""Summarises an Nsight Compute raw CSV (tools/device/profile_kernels.sh): GPU time per kernel
family, for one decode step (between two embedding lookups) or for every profiled kernel."""
import collections
import csv
import re
import sys

mode, path = sys.argv[1], sys.argv[2]
with open(path, newline="") as f:
    lines = [line for line in f if line.startswith('"')]
rows = list(csv.DictReader(lines))[1:]  # the second row holds units


def number(row, key):
    return float(row[key].replace(",", "") or 0)


def family(name):
    name = re.sub(r"\(.*", "", name)
    return re.sub(r"^void ", "", name)[:70]


if mode == "decode":
    starts = [i for i, r in enumerate(rows) if "embed" in r["Kernel Name"]]
    if len(starts) >= 2:
        rows = rows[starts[0]:starts[1]]
total = collections.defaultdict(lambda: [0, 0.0, 0.0])
for r in rows:
    key = (family(r["Kernel Name"]), r["launch__grid_size"])
    t = total[key]
    t[0] += 1
    t[1] += number(r, "gpu__time_duration.sum")
    t[2] += number(r, "dram__bytes_read.sum")
all_ns = sum(t[1] for t in total.values())
print(f"{len(rows)} kernels, {all_ns / 1e3:.1f} us GPU time")
print(f"{'kernel':70} {'grid':>7} {'n':>5} {'us':>9} {'%':>5} {'GB/s':>7}")
for (name, grid), (n, ns, nbytes) in sorted(total.items(), key=lambda kv: -kv[1][1]):
    print(f"{name:70} {grid:>7} {n:5d} {ns / 1e3:9.1f} {100 * ns / all_ns:5.1f} {nbytes / max(ns, 1):7.0f}")
