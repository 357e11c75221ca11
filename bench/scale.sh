#!/usr/bin/env bash
# How a scattered leave's cost grows with data: 10,000 chats against
# 1,000,000 chats (10 members each: 100,000 and 10,000,000 memberships),
# alternating, each run on a fresh server and a fresh copy of its world.
#
# Each world is provisioned once through the admin API (`--requests 0`,
# about 4 minutes for 1M chats) and kept in OUT/golden-*; every run copies
# that database (and syncs, so the copy's writeback does not land in the
# run), starts `confab serve` on it and leaves with `--tenant big --reuse`.
# Besides the load generator's table it prints the server threads' CPU
# time during the run (jiffies, 1/100 s) and, once per world, the time from
# exec to `/readyz` answering 200 on the large database.
#
# Usage: bench/scale.sh OUT_DIR [RUNS] [LEAVES]     (needs ~5 GB in OUT_DIR)
set -euo pipefail
out=${1:?usage: bench/scale.sh OUT_DIR [RUNS] [LEAVES]}
runs=${2:-3}
leaves=${3:-20000}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$repo/target/release}
port=18904
base=http://127.0.0.1:$port
mkdir -p "$out"

serve() { # serve DB_FILE: starts the server, sets $srv
    "$bin/confab" serve --listen 127.0.0.1:$port --admin-token bt --bitrix-rate-limit off \
        --database-url "sqlite://$1" >"$(dirname "$1")/server.log" 2>&1 &
    srv=$!
    for _ in $(seq 500); do curl -sf "$base/readyz" >/dev/null && return; sleep 0.01; done
    echo "the server did not become ready: $(dirname "$1")/server.log" >&2
    exit 1
}
stop() { kill -INT "$srv"; wait "$srv" || true; }
# Per-thread-name CPU time of the server, jiffies.
cpu() {
    for t in /proc/"$srv"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
        awk '{a[$1] += $NF} END {for (k in a) print k, a[k]}' | sort
}

for chats in 10000 1000000; do
    g=$out/golden-$chats
    [ -f "$g/confab.db" ] && continue
    rm -rf "$g" && mkdir -p "$g"
    serve "$g/confab.db"
    "$bin/confab-bench" load --base "$base" --admin-token bt --workload scattered \
        --chats $chats --members 10 --requests 0 --tenant big
    stop
    # Start-up on the provisioned database.
    t0=$(date +%s%N)
    serve "$g/confab.db"
    t1=$(date +%s%N)
    echo "start-up on $chats chats ($(du -h "$g/confab.db" | cut -f1)): $(((t1 - t0) / 1000000)) ms to /readyz, RSS $(awk '/VmRSS/ {print $2, $3}' /proc/$srv/status)"
    stop
done

for i in $(seq "$runs"); do
    for chats in 10000 1000000; do
        d=$out/run-$chats
        rm -rf "$d" && mkdir -p "$d"
        cp "$out/golden-$chats/confab.db" "$d/" && sync
        serve "$d/confab.db"
        before=$(cpu)
        "$bin/confab-bench" load --base "$base" --admin-token bt --workload scattered \
            --chats $chats --members 10 --requests "$leaves" --pid "$srv" \
            --tenant big --reuse --json "$out/run$i-$chats.json" >"$d/bench.txt" 2>&1
        after=$(cpu)
        stop
        echo "== run $i, $chats chats"
        grep -E 'phase|healthz|leave|RSS' "$d/bench.txt"
        echo "server CPU, jiffies: $(join <(echo "$before") <(echo "$after") | awk '{printf "%s %d  ", $1, $3 - $2}')"
        rm -rf "$d"
    done
done
