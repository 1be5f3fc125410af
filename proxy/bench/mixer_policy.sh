#!/usr/bin/env bash
# Mixer policy checks on every request, the built-in data plane (Istio 1.4's `mixer` filter:
# check cache on the referenced attributes, quota prefetch) against a stock Envoy (`ext_authz`
# asking Mixer every time, as DESIGN.md §3 gives it). Both run a static bootstrap, one worker,
# in front of the same nginx serving 1 kB, with the check cluster pointing at one local `mixs`
# serving 1.4's default config plus a list checker (the method must be whitelisted) and a
# memquota rule (a quota no request exhausts) that every request charges. Measures the latency
# added at a fixed 1000 req/s over 16 connections (hey), the proxy's CPU and Mixer's CPU per
# 1000 requests.
#
#   proxy/bench/mixer_policy.sh
#
# Needs: cargo, the Envoy that ./test.sh installs, and (installed if missing, as root) Debian's
# wrk, hey and nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

source proxy/bench/common.sh
cargo build -q --release -p mixer
MIXS="$PWD/target/release/mixs"

# Mixer: 1.4's default config, a whitelist of methods and a generous quota.
mkdir -p "$WORK/mixer" "$WORK/pods"
cp install/mixer/config.yaml "$WORK/mixer/"
cat > "$WORK/mixer/policy.yaml" <<'YAML'
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: methods, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {overrides: [GET], blacklist: false}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: method, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params: {value: request.method | "none"}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkmethod, namespace: istio-system}
spec:
  actions: [{handler: methods, instances: [method]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotahandler, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas: [{name: requestcountquota.instance.istio-system, maxAmount: 100000000, validDuration: 1s}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcountquota, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {path: request.path | "none"}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions: [{handler: quotahandler, instances: [requestcountquota]}]
YAML
MIXER_PORT=$(free_port)
"$MIXS" server --configStoreURL "fs://$WORK/mixer" --podStore "$WORK/pods" --address 127.0.0.1 \
    --port "$MIXER_PORT" --monitoringPort "$(free_port)" >"$WORK/mixer.log" 2>&1 & MIXER_PID=$!; PIDS+=($MIXER_PID)
wait_port "$MIXER_PORT"

# The route's ServiceConfig as Pilot carries it to Envoy: base64 of the protobuf with
# disable_report_calls and one QuotaSpec charging requestcountquota 1 (istio/api 1.4.6's field
# numbers: ServiceConfig.quota_spec = 5, QuotaSpec.rules = 1, QuotaRule.quotas = 2,
# Quota.quota = 1, Quota.charge = 2).
SERVICE_CONFIG=$(python3 - <<'PY'
import base64
def field(number, payload):
    return bytes([number << 3 | 2, len(payload)]) + payload
quota = field(1, b"requestcountquota") + bytes([2 << 3, 1])
spec = field(1, field(2, quota))
print(base64.b64encode(bytes([2 << 3, 1]) + field(5, spec)).decode())
PY
)

bootstrap() { # admin port, listen port, "mixer" or "ext_authz"
    local filter route_config
    if [ "$3" = mixer ]; then
        filter=$(cat <<YAML
          - name: mixer
            typed_config:
              "@type": type.googleapis.com/istio.mixer.v1.config.client.HttpClientConfig
              transport:
                check_cluster: mixer
                network_fail_policy: {policy: FAIL_CLOSE}
              default_destination_service: default
              service_configs:
                default:
                  disable_report_calls: true
                  quota_spec: [{rules: [{quotas: [{quota: requestcountquota, charge: 1}]}]}]
              mixer_attributes:
                attributes:
                  context.reporter.kind: {string_value: inbound}
                  destination.uid: {string_value: kubernetes://bench.default}
YAML
)
        route_config=""
    else
        filter=$(cat <<YAML
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              grpc_service: {envoy_grpc: {cluster_name: mixer, authority: mixer}, timeout: 5s}
              status_on_error: {code: ServiceUnavailable}
YAML
)
        route_config="typed_per_filter_config: {envoy.filters.http.ext_authz: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, check_settings: {context_extensions: {istio.mixer.service_config: \"$SERVICE_CONFIG\"}}}}, "
    fi
    bench_bootstrap "$1" "$2" "$filter" "$route_config" "$(mixer_cluster)"
}

# measure URL PID: prints "p50 p90 p99 proxy_cpu_per_1000 mixer_cpu_per_1000".
measure() {
    local url=$1 pid=$2 before after m_before m_after total p50 p90 p99 result hz
    hz=$(getconf CLK_TCK)
    hey -z 2s -c 16 -q 63 "$url" >/dev/null   # warm-up
    before=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    m_before=$(cpu_ticks "$MIXER_PID")
    result=$(hey_at_1000 "$url")
    read -r total p50 p90 p99 <<<"$result"
    after=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    m_after=$(cpu_ticks "$MIXER_PID")
    local cpu=- mixer_cpu
    if [ "$pid" != - ]; then
        cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$total" 'BEGIN {printf "%.3f", (t / hz) / (n / 1000)}')
    fi
    mixer_cpu=$(awk -v t=$((m_after - m_before)) -v hz="$hz" -v n="$total" 'BEGIN {printf "%.3f", (t / hz) / (n / 1000)}')
    echo "$p50 $p90 $p99 $cpu $mixer_cpu"
}

# Each plane must refuse a method the list does not hold (the check really runs).
refuses_post() { # port, name
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$1/")
    [ "$code" = 403 ] || { echo "$2: a POST got $code, not 403 (see $WORK)" >&2; exit 1; }
}

wait_port "$BACKEND"
DIRECT=$(measure "http://127.0.0.1:$BACKEND/" -) || exit 1

OURS_ADMIN=$(free_port); OURS_PORT=$(free_port)
bootstrap "$OURS_ADMIN" "$OURS_PORT" mixer > "$WORK/ours.yaml"
"$PROXY" run --config-file "$WORK/ours.yaml" --concurrency 1 >/dev/null 2>"$WORK/ours.log" & OURS_PID=$!; PIDS+=($OURS_PID)
wait_port "$OURS_PORT"
refuses_post "$OURS_PORT" built-in
OURS=$(measure "http://127.0.0.1:$OURS_PORT/" "$OURS_PID") || exit 1
kill "$OURS_PID"

ENVOY_ADMIN=$(free_port); ENVOY_PORT=$(free_port)
bootstrap "$ENVOY_ADMIN" "$ENVOY_PORT" ext_authz > "$WORK/envoy.yaml"
"$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level error >/dev/null 2>"$WORK/envoy.log" & ENVOY_PID=$!; PIDS+=($ENVOY_PID)
wait_port "$ENVOY_PORT"
refuses_post "$ENVOY_PORT" Envoy
REAL_ENVOY=$(real_envoy "$ENVOY_PID")
ENVOY_RESULT=$(measure "http://127.0.0.1:$ENVOY_PORT/" "$REAL_ENVOY") || exit 1

read -r d_p50 d_p90 d_p99 _ _ <<<"$DIRECT"
read -r o_p50 o_p90 o_p99 o_cpu o_mixer <<<"$OURS"
read -r e_p50 e_p90 e_p99 e_cpu e_mixer <<<"$ENVOY_RESULT"
latency_row() { # percentile, ours, Envoy's, direct
    local ours envoy
    ours=$(added "$2" "$4"); envoy=$(added "$3" "$4")
    echo "| added latency $1 at 1000 req/s (ms) | $ours | $envoy | $(ratio "$ours" "$envoy") |"
}
echo
echo "| Mixer policy (list + memquota), one worker, 1 kB | built-in (mixer filter) | Envoy $(envoy_version) + ext_authz | built-in / Envoy |"
echo "|---|---|---|---|"
latency_row p50 "$o_p50" "$e_p50" "$d_p50"
latency_row p90 "$o_p90" "$e_p90" "$d_p90"
latency_row p99 "$o_p99" "$e_p99" "$d_p99"
echo "| proxy CPU seconds per 1000 requests | $o_cpu | $e_cpu | $(ratio "$o_cpu" "$e_cpu") |"
echo "| Mixer CPU seconds per 1000 requests | $o_mixer | $e_mixer | $(ratio "$o_mixer" "$e_mixer") |"
echo "(direct to nginx: p50 $d_p50 ms, p90 $d_p90 ms, p99 $d_p99 ms at 1000 req/s)"
