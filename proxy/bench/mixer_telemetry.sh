#!/usr/bin/env bash
# What reporting every request to Mixer costs. The built-in data plane with Istio 1.4's `mixer`
# filter reporting (batched, delta-encoded Report calls) and a stock Envoy streaming its access
# log to Mixer over gRPC (DESIGN.md §3), each measured with and without reporting, and the
# built-in data plane with 1.4's in-proxy telemetry instead (telemetry v2: the metadata
# exchange and stats plugins, counted on its own Prometheus endpoint), in front of
# the same nginx serving 1 kB, one worker each. One `mixs` (release build) serves 1.4's default
# telemetry config: kubernetesenv and the four HTTP metrics into the prometheus adapter. At a
# fixed 1000 req/s over 16 connections (hey) it measures the latency reporting adds (p50, p90,
# p99), the proxy's CPU per 1000 requests with and without reports, and Mixer's CPU per 1000
# reported requests (1.4 published 0.6 vCPU per 1000 mesh requests per second). It checks that
# Mixer's `istio_requests_total` grew by every request reported.
#
#   proxy/bench/mixer_telemetry.sh
#
# Needs: cargo, the Envoy that ./test.sh installs, and (installed if missing, as root) Debian's
# wrk, hey and nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

source proxy/bench/common.sh
cargo build -q --release -p mixer
MIXS="$PWD/target/release/mixs"

mkdir -p "$WORK/mixer" "$WORK/pods"
cp install/mixer/config.yaml install/mixer/telemetry.yaml "$WORK/mixer/"
MIXER_PORT=$(free_port)
METRICS_PORT=$(free_port)
"$MIXS" server --configStoreURL "fs://$WORK/mixer" --podStore "$WORK/pods" --address 127.0.0.1 \
    --port "$MIXER_PORT" --monitoringPort "$(free_port)" --prometheusAdapterPort "$METRICS_PORT" \
    >"$WORK/mixer.log" 2>&1 & MIXER_PID=$!; PIDS+=($MIXER_PID)
wait_port "$MIXER_PORT"
wait_port "$METRICS_PORT"

# The built-in plane reports through 1.4's mixer filter (no checks).
MIXER_FILTER=$(cat <<YAML
          - name: mixer
            typed_config:
              "@type": type.googleapis.com/istio.mixer.v1.config.client.HttpClientConfig
              transport: {report_cluster: mixer}
              default_destination_service: default
              service_configs:
                default: {disable_check_calls: true}
              mixer_attributes:
                attributes:
                  context.reporter.kind: {string_value: inbound}
                  destination.uid: {string_value: kubernetes://bench.default}
                  destination.namespace: {string_value: default}
                  destination.service.host: {string_value: bench.default.svc.cluster.local}
YAML
)
# A stock Envoy streams its access log to Mixer, as Pilot configures it for that plane.
ACCESS_LOG=$(cat <<'YAML'
          access_log:
          - name: envoy.access_loggers.http_grpc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig
              common_config:
                log_name: istio-mixer-inbound
                transport_api_version: V3
                buffer_flush_interval: 1s
                grpc_service: {envoy_grpc: {cluster_name: mixer}}
YAML
)

# Telemetry v2: 1.4's null-VM plugins, as Pilot sends them from 1.4's EnvoyFilters.
V2_FILTERS=$(cat <<'YAML'
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: envoy.wasm.metadata_exchange}
                vm_config: {runtime: envoy.wasm.runtime.null, code: {local: {inline_string: envoy.wasm.metadata_exchange}}}
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: stats_inbound
                configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: '{"debug": "false", "stat_prefix": "istio",}'}
                vm_config: {vm_id: stats_inbound, runtime: envoy.wasm.runtime.null, code: {local: {inline_string: envoy.wasm.stats}}}
YAML
)

# The requests the proxy on admin port $1 has counted itself (telemetry v2).
counted_in_proxy() {
    curl -s "http://127.0.0.1:$1/stats/prometheus" | awk '/^istio_requests_total\{/ {sum += $NF} END {printf "%d", sum}'
}

# The requests Mixer has counted so far (the sum of istio_requests_total).
reported() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^istio_requests_total\{/ {sum += $NF} END {printf "%d", sum}'
}

# measure URL PID: prints "total p50 p90 p99 proxy_cpu_per_1000 mixer_cpu_per_1000".
measure() {
    local url=$1 pid=$2 before after m_before m_after total p50 p90 p99 result hz
    hz=$(getconf CLK_TCK)
    hey -z 2s -c 16 -q 63 "$url" >/dev/null   # warm-up
    sleep 2   # the warm-up's reports
    before=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    m_before=$(cpu_ticks "$MIXER_PID")
    result=$(hey_at_1000 "$url")
    read -r total p50 p90 p99 <<<"$result"
    sleep 2   # the last batches
    after=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    m_after=$(cpu_ticks "$MIXER_PID")
    local cpu=- mixer_cpu
    if [ "$pid" != - ]; then
        cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$total" 'BEGIN {printf "%.3f", (t / hz) / (n / 1000)}')
    fi
    mixer_cpu=$(awk -v t=$((m_after - m_before)) -v hz="$hz" -v n="$total" 'BEGIN {printf "%.4f", (t / hz) / (n / 1000)}')
    echo "$total $p50 $p90 $p99 $cpu $mixer_cpu"
}

# run NAME PROGRAM FILTERS HCM_EXTRA: starts a proxy, measures it, stops it; checks that Mixer
# counted every request when the proxy reports.
run() {
    local name=$1 program=$2 filters=$3 extra=$4 admin port pid counted_before counted total
    admin=$(free_port); port=$(free_port)
    bench_bootstrap "$admin" "$port" "$filters" "" "$(mixer_cluster)" "$extra" > "$WORK/$name.yaml"
    if [ "$program" = envoy ]; then
        "$ENVOY" -c "$WORK/$name.yaml" --concurrency 1 --disable-hot-restart --log-level error \
            --service-node "sidecar~127.0.0.1~bench.default~default.svc.cluster.local" --service-cluster bench \
            >/dev/null 2>"$WORK/$name.log" & pid=$!
    else
        "$PROXY" run --config-file "$WORK/$name.yaml" --concurrency 1 >/dev/null 2>"$WORK/$name.log" & pid=$!
    fi
    PIDS+=($pid)
    wait_port "$port"
    [ "$program" = envoy ] && pid=$(real_envoy "$pid")
    counted_before=$(reported)
    RESULT=$(measure "http://127.0.0.1:$port/" "$pid") || exit 1
    counted=$(( $(reported) - counted_before ))
    read -r total _ <<<"$RESULT"
    if [ "$name" = ours-v2 ]; then
        counted=$(counted_in_proxy "$admin")
        if [ "$counted" -lt "$total" ]; then
            echo "$name: the proxy counted $counted of $total requests (see $WORK)" >&2; exit 1
        fi
    elif [ -n "$filters$extra" ] && [ "$counted" -lt "$total" ]; then
        echo "$name: Mixer counted $counted of $total requests (see $WORK)" >&2; exit 1
    fi
    kill "$pid"
}

wait_port "$BACKEND"
DIRECT=$(measure "http://127.0.0.1:$BACKEND/" -) || exit 1
run ours-off proxy "" "" && OURS_OFF=$RESULT
run ours-on proxy "$MIXER_FILTER" "" && OURS_ON=$RESULT
run ours-v2 proxy "$V2_FILTERS" "" && OURS_V2=$RESULT
run envoy-off envoy "" "" && ENVOY_OFF=$RESULT
run envoy-on envoy "" "$ACCESS_LOG" && ENVOY_ON=$RESULT

read -r _ d_p50 d_p90 d_p99 _ _ <<<"$DIRECT"
read -r _ of_p50 of_p90 of_p99 of_cpu _ <<<"$OURS_OFF"
read -r _ on_p50 on_p90 on_p99 on_cpu on_mixer <<<"$OURS_ON"
read -r _ v2_p50 v2_p90 v2_p99 v2_cpu v2_mixer <<<"$OURS_V2"
read -r _ ef_p50 ef_p90 ef_p99 ef_cpu _ <<<"$ENVOY_OFF"
read -r _ en_p50 en_p90 en_p99 en_cpu en_mixer <<<"$ENVOY_ON"
echo
echo "| Mixer telemetry, one worker, 1 kB, 1000 req/s | built-in, reports off | built-in, mixer filter reports | built-in, telemetry v2 | Envoy $(envoy_version), no log | Envoy + gRPC access log |"
echo "|---|---|---|---|---|---|"
for p in p50 p90 p99; do
    eval "echo \"| added latency $p (ms) | \$(added \$of_$p \$d_$p) | \$(added \$on_$p \$d_$p) | \$(added \$v2_$p \$d_$p) | \$(added \$ef_$p \$d_$p) | \$(added \$en_$p \$d_$p) |\""
done
echo "| proxy CPU seconds per 1000 requests | $of_cpu | $on_cpu | $v2_cpu | $ef_cpu | $en_cpu |"
echo "| Mixer CPU seconds per 1000 reported requests | - | $on_mixer | $v2_mixer | - | $en_mixer |"
echo "(direct to nginx: p50 $d_p50 ms, p90 $d_p90 ms, p99 $d_p99 ms; reporting adds $(ratio "$on_cpu" "$of_cpu")× the built-in proxy's CPU and $(ratio "$en_cpu" "$ef_cpu")× Envoy's; telemetry v2 $(ratio "$v2_cpu" "$of_cpu")× with no Mixer at all)"
