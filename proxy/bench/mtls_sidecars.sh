#!/usr/bin/env bash
# Istio's mutual-TLS data path, ours against stock Envoy in the same run: a client sidecar
# (plain HTTP in, Istio mutual TLS out: SNI outbound_.80_._.server, ALPN istio, the server's
# SPIFFE name checked) and a server sidecar (mutual TLS in, client certificate required, plain
# HTTP to the app), in front of nginx serving 1 kB. Two workers per proxy. At 1000 req/s over
# 16 connections (hey, Istio's benchmark conditions) it reports the latency both proxies add
# over going straight to nginx (p50/p90/p99), CPU per 1000 requests and peak resident memory
# per proxy.
#
#   proxy/bench/mtls_sidecars.sh             # builds the release proxy, installs hey/nginx
#   PERF_DIR=/tmp/p proxy/bench/mtls_sidecars.sh   # also records a CPU profile of our two
#                                                  # proxies while measured (perf; skews CPU)
#
# Needs: cargo, the Envoy that ./test.sh installs, openssl, and (installed if missing, as root)
# Debian's hey, wrk and nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

source proxy/bench/common.sh

# Workload certificates as Citadel issues them: P-256 keys, SPIFFE URI SANs, one root.
certs() {
    local dir="$WORK/certs"
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/O=cluster.local" \
        -keyout "$dir/root.key" -out "$dir/root.pem" 2>/dev/null
    for who in client server; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/" \
            -keyout "$dir/$who.key" -out "$dir/$who.csr" 2>/dev/null
        printf 'subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$who" \
            > "$dir/$who.ext"
        openssl x509 -req -in "$dir/$who.csr" -CA "$dir/root.pem" -CAkey "$dir/root.key" -CAcreateserial -days 1 \
            -extfile "$dir/$who.ext" -out "$dir/$who.pem" 2>/dev/null
    done
}

tls_context() { # who
    cat <<YAML
          common_tls_context:
            alpn_protocols: [istio, http/1.1]
            tls_certificates:
            - certificate_chain: {filename: $WORK/certs/$1.pem}
              private_key: {filename: $WORK/certs/$1.key}
            validation_context:
              trusted_ca: {filename: $WORK/certs/root.pem}
YAML
}

hcm() { # cluster
    cat <<YAML
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: $1}}]}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
YAML
}

cluster() { # name, port, [tls]
    cat <<YAML
  - name: $1
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: $1
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}}]}]
YAML
    if [ "${3:-}" = tls ]; then
        cat <<YAML
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: outbound_.80_._.server.bench.svc.cluster.local
$(tls_context client | sed 's/^  //')
            match_typed_subject_alt_names:
            - {san_type: URI, matcher: {exact: spiffe://cluster.local/ns/bench/sa/server}}
YAML
    fi
}

client_bootstrap() { # admin, listen, server port
    cat <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $1}}}
static_resources:
  listeners:
  - name: outbound
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
$(hcm server)
  clusters:
$(cluster server "$3" tls)
YAML
}

server_bootstrap() { # admin, listen
    cat <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $1}}}
static_resources:
  listeners:
  - name: inbound
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
$(tls_context server)
      filters:
$(hcm app)
  clusters:
$(cluster app "$BACKEND")
YAML
}

# start KIND NAME BOOTSTRAP: runs a proxy with two workers; its pid is left in STARTED.
start() {
    if [ "$1" = ours ]; then
        "$PROXY" run --config-file "$3" --concurrency 2 >/dev/null 2>"$WORK/$2.log" &
    else
        "$ENVOY" -c "$3" --concurrency 2 --disable-hot-restart --base-id "$RANDOM" --log-level error \
            >/dev/null 2>"$WORK/$2.log" &
    fi
    local pid=$!
    PIDS+=("$pid")
    sleep 0.5
    STARTED=$pid
    if [ "$1" = envoy ]; then STARTED=$(real_envoy "$pid"); fi
}

# pair KIND: a client and a server sidecar of one kind, measured; writes
# "p50 p90 p99 cpu_per_1000_client cpu_per_1000_server peak_rss_client peak_rss_server" to
# $WORK/KIND.result.
pair() {
    local server_port client_port
    server_port=$(free_port); client_port=$(free_port)
    server_bootstrap "$(free_port)" "$server_port" > "$WORK/$1-server.yaml"
    client_bootstrap "$(free_port)" "$client_port" "$server_port" > "$WORK/$1-client.yaml"
    local server client
    start "$1" "$1-server" "$WORK/$1-server.yaml"; server=$STARTED
    start "$1" "$1-client" "$WORK/$1-client.yaml"; client=$STARTED
    wait_port "$server_port"; wait_port "$client_port"
    local url="http://127.0.0.1:$client_port/"
    hey -z 2s -c 16 -q 63 "$url" >/dev/null   # warm up: connections and handshakes
    local client_before server_before result total p50 p90 p99
    client_before=$(cpu_ticks "$client"); server_before=$(cpu_ticks "$server")
    local profiler=""
    if [ -n "${PERF_DIR:-}" ] && [ "$1" = ours ]; then
        mkdir -p "$PERF_DIR"
        perf record -F 999 -g -o "$PERF_DIR/ours.data" -p "$client,$server" >/dev/null 2>&1 &
        profiler=$!
    fi
    result=$(hey_at_1000 "$url")   # exits the script when a request fails
    if [ -n "$profiler" ]; then kill -INT "$profiler"; wait "$profiler" || true; fi
    read -r total p50 p90 p99 <<<"$result"
    local hz client_ticks server_ticks
    hz=$(getconf CLK_TCK)
    client_ticks=$(( $(cpu_ticks "$client") - client_before )); server_ticks=$(( $(cpu_ticks "$server") - server_before ))
    per_1000() { awk -v t="$1" -v hz="$hz" -v n="$total" 'BEGIN {printf "%.3f", (t / hz) / (n / 1000)}'; }
    echo "$p50 $p90 $p99 $(per_1000 "$client_ticks") $(per_1000 "$server_ticks")" \
        "$(rss_mb "$client" VmHWM) $(rss_mb "$server" VmHWM)" > "$WORK/$1.result"
    kill "$client" "$server"
}

certs
wait_port "$BACKEND"
DIRECT=$(hey_at_1000 "http://127.0.0.1:$BACKEND/")
read -r _ d_p50 d_p90 d_p99 <<<"$DIRECT"
pair ours
pair envoy
read -r o_p50 o_p90 o_p99 o_cpu_c o_cpu_s o_rss_c o_rss_s < "$WORK/ours.result"
read -r e_p50 e_p90 e_p99 e_cpu_c e_cpu_s e_rss_c e_rss_s < "$WORK/envoy.result"

row() { # label, ours, Envoy's
    echo "| $1 | $2 | $3 | $(ratio "$2" "$3") |"
}
echo
echo "| mutual TLS, sidecar to sidecar, 2 workers each, 1 kB at 1000 req/s | built-in | Envoy $(envoy_version) | built-in / Envoy |"
echo "|---|---|---|---|"
row "added latency p50 (ms)" "$(added "$o_p50" "$d_p50")" "$(added "$e_p50" "$d_p50")"
row "added latency p90 (ms)" "$(added "$o_p90" "$d_p90")" "$(added "$e_p90" "$d_p90")"
row "added latency p99 (ms)" "$(added "$o_p99" "$d_p99")" "$(added "$e_p99" "$d_p99")"
row "CPU seconds per 1000 requests, client sidecar" "$o_cpu_c" "$e_cpu_c"
row "CPU seconds per 1000 requests, server sidecar" "$o_cpu_s" "$e_cpu_s"
row "resident memory peak, client sidecar (MB)" "$o_rss_c" "$e_rss_c"
row "resident memory peak, server sidecar (MB)" "$o_rss_s" "$e_rss_s"
echo "(direct to nginx at 1000 req/s: p50 $d_p50 ms, p90 $d_p90 ms, p99 $d_p99 ms)"
