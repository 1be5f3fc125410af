#!/usr/bin/env bash
# The built-in data plane against a stock Envoy, side by side: both run the same static
# bootstrap (one HTTP listener, one route, one cluster) with one worker thread, in front of the
# same nginx backend serving 1 kB. Measures peak throughput (wrk), latency at a fixed 1000 req/s
# over 16 connections (hey; Istio's benchmark conditions), CPU per 1000 requests, and resident
# memory idle (after start-up) and under load (the peak while serving).
#
#   proxy/bench/proxy_vs_envoy.sh            # builds the release proxy, installs wrk/hey/nginx
#
# Needs: cargo, the Envoy that ./test.sh installs, and (installed if missing, as root) Debian's
# wrk, hey and nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

ENVOY="${ENVOY_BIN:-$HOME/.cache/istio-rs/venv/bin/envoy}"
[ -x "$ENVOY" ] || { echo "Envoy not found at $ENVOY; run ./test.sh once or set ENVOY_BIN" >&2; exit 1; }
for tool in wrk hey nginx; do
    if ! command -v "$tool" >/dev/null; then
        [ "$(id -u)" = 0 ] || { echo "$tool is missing and installing it needs root" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey nginx >/dev/null
    fi
done
cargo build -q --release -p proxy
PROXY="$PWD/target/release/proxy"

WORK="$(mktemp -d)"
chmod 755 "$WORK"   # nginx's workers run as another user
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The backend: nginx, one worker, a 1 kB body.
BACKEND=$(free_port)
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/index.html"
cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$BACKEND; root $WORK/www; location / { index index.html; } }
}
NGINX
nginx -c "$WORK/nginx/nginx.conf" & PIDS+=($!)

bootstrap() { # admin port, listen port
    cat <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $1}}}
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $BACKEND}}}}]}]
YAML
}

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk -v field="$2:" '$1 == field {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

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
    local out
    out=$(hey -z 10s -c 16 -q 63 "$url")
    after=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    local total p50 p90 p99
    total=$(echo "$out" | awk '/\[200\]/ {print $2}')
    if [ -z "$total" ] || echo "$out" | grep -Eq '^ *\[[13-5][0-9]{2}\][[:space:]]+[0-9]+ responses'; then
        echo "$url did not answer 200 to every request:" >&2; echo "$out" | sed -n '/Status code/,$p' >&2; exit 1
    fi
    p50=$(echo "$out" | awk '/ 50% in/ {print $3 * 1000}')
    p90=$(echo "$out" | awk '/ 90% in/ {print $3 * 1000}')
    p99=$(echo "$out" | awk '/ 99% in/ {print $3 * 1000}')
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

OURS_ADMIN=$(free_port); OURS_PORT=$(free_port)
bootstrap "$OURS_ADMIN" "$OURS_PORT" > "$WORK/ours.yaml"
"$PROXY" run --config-file "$WORK/ours.yaml" --concurrency 1 >/dev/null 2>"$WORK/ours.log" & OURS_PID=$!; PIDS+=($OURS_PID)
wait_port "$OURS_PORT"
OURS=$(measure "http://127.0.0.1:$OURS_PORT/" "$OURS_PID")
kill "$OURS_PID"

ENVOY_ADMIN=$(free_port); ENVOY_PORT=$(free_port)
bootstrap "$ENVOY_ADMIN" "$ENVOY_PORT" > "$WORK/envoy.yaml"
"$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level error >/dev/null 2>"$WORK/envoy.log" & ENVOY_PID=$!; PIDS+=($ENVOY_PID)
wait_port "$ENVOY_PORT"
# The launcher may exec the binary under the same pid; if not, measure its child.
REAL_ENVOY=$(pgrep -P "$ENVOY_PID" envoy || echo "$ENVOY_PID")
ENVOY_RESULT=$(measure "http://127.0.0.1:$ENVOY_PORT/" "$REAL_ENVOY")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
read -r d_rps d_p50 d_p90 d_p99 _ _ _ <<<"$DIRECT"
read -r o_rps o_p50 o_p90 o_p99 o_cpu o_idle o_peak <<<"$OURS"
read -r e_rps e_p50 e_p90 e_p99 e_cpu e_idle e_peak <<<"$ENVOY_RESULT"
added() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }
latency_row() { # percentile, ours, Envoy's, direct
    local ours envoy
    ours=$(added "$2" "$4"); envoy=$(added "$3" "$4")
    echo "| added latency $1 at 1000 req/s (ms) | $ours | $envoy | $(ratio "$ours" "$envoy") |"
}
echo
echo "| one worker, HTTP/1.1, 1 kB | built-in | Envoy $("$ENVOY" --version 2>/dev/null | grep -o 'version: [^/]*/[0-9.]*' | head -1 | cut -d/ -f2) | built-in / Envoy |"
echo "|---|---|---|---|"
echo "| peak throughput (req/s, 16 conns) | $o_rps | $e_rps | $(ratio "$o_rps" "$e_rps") |"
latency_row p50 "$o_p50" "$e_p50" "$d_p50"
latency_row p90 "$o_p90" "$e_p90" "$d_p90"
latency_row p99 "$o_p99" "$e_p99" "$d_p99"
echo "| CPU seconds per 1000 requests | $o_cpu | $e_cpu | $(ratio "$o_cpu" "$e_cpu") |"
echo "| resident memory idle (MB) | $o_idle | $e_idle | $(ratio "$o_idle" "$e_idle") |"
echo "| resident memory under load, peak (MB) | $o_peak | $e_peak | $(ratio "$o_peak" "$e_peak") |"
echo "(direct to nginx: $d_rps req/s; p50 $d_p50 ms, p90 $d_p90 ms, p99 $d_p99 ms at 1000 req/s)"
