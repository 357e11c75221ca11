#!/usr/bin/env bash
# Instruction counts of confab's leave under valgrind's callgrind: counts,
# not seconds, so two runs of the same binary agree whatever else the
# machine is doing. The server is profiled twice on the same world, once
# with N and once with 2N leaves (each run also makes as many /healthz
# calls); the difference, divided by N, is the cost of one leave plus one
# /healthz, without start-up and provisioning.
# Usage: bench/profile/leave.sh OUT_DIR [WORKLOAD] [N] [FACE]
# (CHATS=... sets the number of chats, for a scattered world smaller than
# the default 10,000 that provisions quickly under valgrind; CONFAB=... the
# server binary, to profile another build.)
set -euo pipefail
out=${1:?usage: bench/profile/leave.sh OUT_DIR [scattered|concentrated] [N] [FACE]}
workload=${2:-concentrated}
n=${3:-1000}
face=${4:-vibecode}
repo=$(cd "$(dirname "$0")/../.." && pwd)
port=18977
confab=${CONFAB:-$repo/target/release/confab}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
mkdir -p "$out"
run() { # run NAME REQUESTS
    rm -rf "$out/$1"
    mkdir -p "$out/$1"
    valgrind --tool=callgrind --callgrind-out-file="$out/$1/callgrind.out" \
        "$confab" serve --listen 127.0.0.1:$port --admin-token bt --bitrix-rate-limit off \
        --database-url "sqlite://$out/$1/data/confab.db" >"$out/$1/server.log" 2>&1 &
    local server=$!
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 1; done
    "$repo/target/release/confab-bench" load --base "http://127.0.0.1:$port" --admin-token bt \
        --workload "$workload" --face "$face" --requests "$2" --concurrency 16 ${CHATS:+--chats "$CHATS"} >"$out/$1/bench.txt" 2>&1
    kill -INT $server
    wait $server || true
    callgrind_annotate --threshold=100 "$out/$1/callgrind.out" >"$out/$1/annotate.txt" 2>/dev/null
}
run once "$n"
run twice "$((2 * n))"
python3 - "$out" "$n" <<'PY'
import re, sys
out, n = sys.argv[1], int(sys.argv[2])
def load(name):
    costs, total = {}, 0
    for line in open(f"{out}/{name}/annotate.txt"):
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        v, fn = int(m.group(1).replace(",", "")), m.group(2)
        if fn.startswith("PROGRAM TOTALS"):
            total = v
        else:
            fn = re.sub(r"^.*?:(?=[^/]*\[)", "", fn).split(" [")[0]
            costs[fn] = costs.get(fn, 0) + v
    return costs, total
a, ta = load("once")
b, tb = load("twice")
per = (tb - ta) / n
print(f"instructions per leave (with one /healthz): {per:,.0f}")
diff = sorted(((b.get(k, 0) - a.get(k, 0)) / n, k) for k in set(a) | set(b))[::-1]
print("top self costs per leave:")
for v, k in diff[:25]:
    print(f"{v:>10,.0f}  {100 * v / per:5.1f}%  {k[:110]}")
PY
