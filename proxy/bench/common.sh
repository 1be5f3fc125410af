# Shared by the proxy benchmarks (sourced): tools, a 1 kB nginx backend, ports, and the
# CPU/memory readings. Expects `set -euo pipefail` and the repository root as the directory.

ENVOY="${ENVOY_BIN:-$HOME/.cache/istio-rs/venv/bin/envoy}"
[ -x "$ENVOY" ] || { echo "Envoy not found at $ENVOY; run ./test.sh once or set ENVOY_BIN" >&2; exit 1; }
for tool in wrk hey nginx openssl; do
    if ! command -v "$tool" >/dev/null; then
        [ "$(id -u)" = 0 ] || { echo "$tool is missing and installing it needs root" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey nginx openssl >/dev/null
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
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk -v field="$2:" '$1 == field {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }
envoy_version() { "$ENVOY" --version 2>/dev/null | grep -o 'version: [^/]*/[0-9.]*' | head -1 | cut -d/ -f2; }
# The Envoy launcher may exec the binary under the same pid; if not, its child is Envoy.
real_envoy() { pgrep -P "$1" envoy || echo "$1"; }

# The backend: nginx, one worker, a 1 kB body, on $BACKEND.
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

# hey_at_1000 URL [HEY ARGS…]: hey at 1000 req/s over 16 connections for 10 s; prints "total
# p50 p90 p99" (ms), failing unless every answer is a 200.
hey_at_1000() {
    local out total
    out=$(hey -z 10s -c 16 -q 63 "${@:2}" "$1")
    total=$(echo "$out" | awk '/\[200\]/ {print $2}')
    if [ -z "$total" ] || echo "$out" | grep -Eq '^ *\[[13-5][0-9]{2}\][[:space:]]+[0-9]+ responses'; then
        echo "$1 did not answer 200 to every request:" >&2; echo "$out" | sed -n '/Status code/,$p' >&2; exit 1
    fi
    echo "$total $(echo "$out" | awk '/ 50% in/ {print $3 * 1000}') $(echo "$out" | awk '/ 90% in/ {print $3 * 1000}') $(echo "$out" | awk '/ 99% in/ {print $3 * 1000}')"
}

# bench_bootstrap ADMIN_PORT LISTEN_PORT [HTTP_FILTERS [ROUTE_EXTRA [CLUSTERS [MANAGER_EXTRA]]]]:
# a static bootstrap (for both planes) with one HTTP listener routing everything to the nginx
# backend. HTTP_FILTERS are YAML list items (indented 10) put before the router; ROUTE_EXTRA is
# put in the route's flow mapping before `route:` (e.g. `typed_per_filter_config: {…}, `);
# CLUSTERS are YAML list items (indented 2) after the backend's; MANAGER_EXTRA are fields of the
# connection manager (indented 10, e.g. `access_log:`).
bench_bootstrap() {
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
${6:-}
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, ${4:-}route: {cluster: backend}}]}]
          http_filters:
${3:-}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $BACKEND}}}}]}]
${5:-}
YAML
}

# mixer_cluster: a cluster item for bench_bootstrap's CLUSTERS reaching a local `mixs` on
# $MIXER_PORT over HTTP/2 (the mixer filters' and ext_authz's gRPC).
mixer_cluster() {
    cat <<YAML
  - name: mixer
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: mixer
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $MIXER_PORT}}}}]}]
YAML
}
