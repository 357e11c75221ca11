#!/usr/bin/env python3
"""Inclusive instruction cost per leave of each function, from the two runs
of bench/profile/leave.sh: python3 bench/profile/inclusive.py OUT_DIR N [FILTER]"""
import re, subprocess, sys

out, n = sys.argv[1], int(sys.argv[2])
pat = re.compile(sys.argv[3]) if len(sys.argv) > 3 else None


def load(name):
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", f"{out}/{name}/callgrind.out"],
        capture_output=True, text=True).stdout
    costs = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)$", line)
        if m:
            fn = re.sub(r"^.*?:(?=[^/]*\[)", "", m.group(2)).split(" [")[0]
            costs[fn] = max(costs.get(fn, 0), int(m.group(1).replace(",", "")))
    return costs


a, b = load("once"), load("twice")
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / n, k) for k in set(a) | set(b))[::-1]
for v, k in rows:
    if v >= 2000 and (pat is None or pat.search(k)):
        print(f"{v:>10,.0f}  {k[:140]}")
