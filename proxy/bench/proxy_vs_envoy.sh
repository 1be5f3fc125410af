#!/usr/bin/env bash
# The built-in data plane against a stock Envoy, side by side: both run the same static
# bootstrap (one HTTP listener, one route, one cluster) with one worker thread, in front of the
# same nginx backend serving 1 kB. Measures peak throughput (wrk), latency at a fixed 1000 req/s
# over 16 connections (hey; Istio's benchmark conditions), CPU per 1000 requests, and resident
# memory idle (after start-up) and under load (the peak while serving). It runs both proxies with
# one worker thread, then both with two (Istio's published benchmark runs its proxies with two),
# and prints a table for each.
#
#   proxy/bench/proxy_vs_envoy.sh            # builds the release proxy, installs wrk/hey/nginx
#   WORKERS="2" proxy/bench/proxy_vs_envoy.sh   # only the two-worker table
#
# Needs: cargo, the Envoy that ./test.sh installs, and (installed if missing, as root) Debian's
# wrk, hey and nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

source proxy/bench/common.sh

bootstrap() { bench_bootstrap "$1" "$2"; } # admin port, listen port


# measure URL PID: prints "rps p50 p90 p99 cpu_per_1000 idle_rss_mb peak_rss_mb"
measure() {
    local url=$1 pid=$2
    local idle=-
    if [ "$pid" != - ]; then sleep 1; idle=$(rss_mb "$pid" VmRSS); fi
    wrk -t1 -c16 -d2s "$url" >/dev/null
    local rps
    local wrk_out
    wrk_out=$(wrk -t2 -c16 -d10s "$url")
    if echo "$wrk_out" | grep -q "Non-2xx"; then echo "$url answered errors under wrk:" >&2; echo "$wrk_out" >&2; exit 1; fi
    rps=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
    local before after
    before=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    local total p50 p90 p99 result
    result=$(hey_at_1000 "$url")   # exits the script when a request fails
    read -r total p50 p90 p99 <<<"$result"
    after=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    local hz; hz=$(getconf CLK_TCK)
    local cpu peak
    if [ "$pid" = - ]; then cpu=-; peak=-; else
        cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$total" 'BEGIN {printf "%.3f", (t / hz) / (n / 1000)}')
        peak=$(rss_mb "$pid" VmHWM)
    fi
    echo "$rps $p50 $p90 $p99 $cpu $idle $peak"
}

wait_port "$BACKEND"
DIRECT=$(measure "http://127.0.0.1:$BACKEND/" -)

latency_row() { # percentile, ours, Envoy's, direct
    local ours envoy
    ours=$(added "$2" "$4"); envoy=$(added "$3" "$4")
    echo "| added latency $1 at 1000 req/s (ms) | $ours | $envoy | $(ratio "$ours" "$envoy") |"
}
worker_label() { if [ "$1" = 1 ]; then echo "one worker"; else echo "$1 workers"; fi; }

read -r d_rps d_p50 d_p90 d_p99 _ _ _ <<<"$DIRECT"
for workers in ${WORKERS:-1 2}; do
    OURS_ADMIN=$(free_port); OURS_PORT=$(free_port)
    bootstrap "$OURS_ADMIN" "$OURS_PORT" > "$WORK/ours.yaml"
    "$PROXY" run --config-file "$WORK/ours.yaml" --concurrency "$workers" >/dev/null 2>"$WORK/ours.log" & OURS_PID=$!; PIDS+=($OURS_PID)
    wait_port "$OURS_PORT"
    OURS=$(measure "http://127.0.0.1:$OURS_PORT/" "$OURS_PID")
    kill "$OURS_PID"

    ENVOY_ADMIN=$(free_port); ENVOY_PORT=$(free_port)
    bootstrap "$ENVOY_ADMIN" "$ENVOY_PORT" > "$WORK/envoy.yaml"
    "$ENVOY" -c "$WORK/envoy.yaml" --concurrency "$workers" --disable-hot-restart --log-level error >/dev/null 2>"$WORK/envoy.log" & ENVOY_PID=$!; PIDS+=($ENVOY_PID)
    wait_port "$ENVOY_PORT"
    REAL_ENVOY=$(real_envoy "$ENVOY_PID")
    ENVOY_RESULT=$(measure "http://127.0.0.1:$ENVOY_PORT/" "$REAL_ENVOY")
    kill "$ENVOY_PID" "$REAL_ENVOY" 2>/dev/null || true

    read -r o_rps o_p50 o_p90 o_p99 o_cpu o_idle o_peak <<<"$OURS"
    read -r e_rps e_p50 e_p90 e_p99 e_cpu e_idle e_peak <<<"$ENVOY_RESULT"
    echo
    echo "| $(worker_label "$workers"), HTTP/1.1, 1 kB | built-in | Envoy $(envoy_version) | built-in / Envoy |"
    echo "|---|---|---|---|"
    echo "| peak throughput (req/s, 16 conns) | $o_rps | $e_rps | $(ratio "$o_rps" "$e_rps") |"
    latency_row p50 "$o_p50" "$e_p50" "$d_p50"
    latency_row p90 "$o_p90" "$e_p90" "$d_p90"
    latency_row p99 "$o_p99" "$e_p99" "$d_p99"
    echo "| CPU seconds per 1000 requests | $o_cpu | $e_cpu | $(ratio "$o_cpu" "$e_cpu") |"
    echo "| resident memory idle (MB) | $o_idle | $e_idle | $(ratio "$o_idle" "$e_idle") |"
    echo "| resident memory under load, peak (MB) | $o_peak | $e_peak | $(ratio "$o_peak" "$e_peak") |"
done
echo
echo "(direct to nginx: $d_rps req/s; p50 $d_p50 ms, p90 $d_p90 ms, p99 $d_p99 ms at 1000 req/s)"
