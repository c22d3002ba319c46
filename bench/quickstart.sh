#!/usr/bin/env bash
# The README's quick start, timed: a fresh clone of this repository's HEAD, then `make run` until it prints
# the signed-in page links, twice. Cold: no venv, no jar cache, no pip cache (PIP_NO_CACHE_DIR); the Debian
# packages are taken as installed. Warm: the same clone again, its venv and jars kept, the stack stopped.
# Each run is stopped with Ctrl-C (SIGINT to its process group) and `make down`. The default ports (Kafka,
# Cassandra, Prometheus, the APIs) must be free: stop any other stack first.
#
#   bash bench/quickstart.sh [CLONE_DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clone="${1:-$(mktemp -d /tmp/fanout-quickstart.XXXXXX)/fanout}"
[[ ! -e "$clone" ]] || { echo "$clone exists: give a new directory" >&2; exit 2; }
git clone -q "$repo" "$clone"
echo "clone of $(git -C "$repo" rev-parse --short HEAD) in $clone"

# Seconds from `make run` to the line with user 2's link, then Ctrl-C and `make down`.
time_make_run() {
    local log=$1 start pid seconds
    start=${EPOCHREALTIME/./}
    (cd "$clone" && exec setsid make run) >"$log" 2>&1 </dev/null &
    pid=$!
    until grep -q "user 2: http" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "make run ended before printing the links; its output ends with:" >&2
            tail -20 "$log" >&2
            exit 1
        fi
        sleep 0.2
    done
    seconds=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
    kill -INT -- "-$pid"  # the process group setsid made, by its leader's pid
    wait "$pid" || true
    make -C "$clone" --no-print-directory down >>"$log" 2>&1
    printf '%d.%03d' $((seconds / 1000)) $((seconds % 1000))
}

cold=$(PIP_NO_CACHE_DIR=1 time_make_run "$clone.cold.log")
echo "cold: ${cold} s from make run to the signed-in links (venv, jars and stack made; log $clone.cold.log)"
warm=$(time_make_run "$clone.warm.log")
echo "warm: ${warm} s (venv and jars kept, the stack started again; log $clone.warm.log)"
