"""Summarises an Nsight Compute raw CSV (tools/device/profile_kernels.sh): GPU time per kernel
family, for one decode step (between two embedding lookups), for every profiled kernel, or
(`steps`) per step of a serving run: each whole step's time, then the families averaged over the
steps with prompt chunks (a flash-attention launch) and over those without."""
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


def is_step_start(row):  # the embedding lookup: a dequantization to float32
    name = row["Kernel Name"]
    return ("embed" in name or "dequantize_kernel" in name) and "half" not in name


def print_families(rows, steps=1):
    total = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for r in rows:
        key = (family(r["Kernel Name"]), r["launch__grid_size"])
        t = total[key]
        t[0] += 1
        t[1] += number(r, "gpu__time_duration.sum")
        t[2] += number(r, "dram__bytes_read.sum")
    all_ns = sum(t[1] for t in total.values())
    print(f"{len(rows)} kernels over {steps} step(s), {all_ns / 1e3 / steps:.1f} us GPU time per step")
    print(f"{'kernel':70} {'grid':>7} {'n/step':>6} {'us/step':>9} {'%':>5} {'GB/s':>7}")
    for (name, grid), (n, ns, nbytes) in sorted(total.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:70} {grid:>7} {n / steps:6.1f} {ns / 1e3 / steps:9.1f} {100 * ns / all_ns:5.1f} "
              f"{nbytes / max(ns, 1):7.0f}")


starts = [i for i, r in enumerate(rows) if is_step_start(r)]
if mode == "steps":
    groups = {True: [], False: []}
    for a, b in zip(starts, starts[1:]):
        step = rows[a:b]
        mixed = any("flash_attention" in r["Kernel Name"] for r in step)
        us = sum(number(r, "gpu__time_duration.sum") for r in step) / 1e3
        print(f"step at kernel {a}: {len(step)} kernels, {us:.1f} us, embedding grid "
              f"{step[0]['launch__grid_size']}, {'prompt chunks' if mixed else 'decode only'}")
        groups[mixed].append(step)
    for mixed, steps in groups.items():
        if steps:
            print(f"\n== steps {'with prompt chunks' if mixed else 'of decode rows only'} ==")
            print_families([r for step in steps for r in step], len(steps))
else:
    if mode == "decode" and len(starts) >= 2:
        rows = rows[starts[0]:starts[1]]
    print_families(rows)
