#!/usr/bin/env bash
# JWT authentication and a 20-policy RBAC filter on every request, the built-in data plane
# against a stock Envoy: both run the same static bootstrap (jwt_authn with an RS256 provider
# and the payload in the dynamic metadata, then RBAC whose 20 policies each match a path
# prefix, the method and the token's subject, the request matching the last one), one
# worker, in front of the same nginx serving 1 kB. Every request carries a valid token.
# Measures the latency added at a fixed 1000 req/s over 16 connections (hey) and CPU per 1000
# requests.
#
#   proxy/bench/authz_filters.sh
#
# Needs: cargo, the Envoy that ./test.sh installs, openssl, and (installed if missing, as root)
# Debian's wrk, hey and nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

source proxy/bench/common.sh
cp "$WORK/www/index.html" "$WORK/www/p20"   # the path the requests ask for

# The issuer's key, its JWKS, and a token (RS256) for subject user20.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
openssl genrsa -out "$WORK/key.pem" 2048 2>/dev/null
MODULUS=$(openssl rsa -in "$WORK/key.pem" -noout -modulus | cut -d= -f2 | python3 -c 'import sys, binascii; sys.stdout.buffer.write(binascii.unhexlify(sys.stdin.read().strip()))' | b64url)
JWKS="{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"kid\":\"bench\",\"n\":\"$MODULUS\",\"e\":\"AQAB\"}]}"
HEADER=$(printf '{"alg":"RS256","kid":"bench","typ":"JWT"}' | b64url)
PAYLOAD=$(printf '{"iss":"bench@istio-rs","sub":"user20","exp":%d}' $(( $(date +%s) + 3600 )) | b64url)
SIGNATURE=$(printf '%s.%s' "$HEADER" "$PAYLOAD" | openssl dgst -sha256 -sign "$WORK/key.pem" | b64url)
TOKEN="$HEADER.$PAYLOAD.$SIGNATURE"

policies() {
    for i in $(seq 1 20); do
        cat <<YAML
                  policy-$i:
                    permissions: [{and_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}, {url_path: {path: {prefix: /p$i}}}]}}]
                    principals: [{metadata: {filter: envoy.filters.http.jwt_authn, path: [{key: "bench@istio-rs"}, {key: sub}], value: {string_match: {exact: user$i}}}}]
YAML
    done
}

filters() {
    cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                origins-0:
                  issuer: bench@istio-rs
                  forward: true
                  payload_in_metadata: bench@istio-rs
                  local_jwks: {inline_string: '$JWKS'}
              rules: [{match: {prefix: /}, requires: {provider_name: origins-0}}]
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                policies:
$(policies)
YAML
}

bootstrap() { bench_bootstrap "$1" "$2" "$(filters)"; } # admin port, listen port

# measure URL PID: prints "p50 p90 p99 cpu_per_1000" with the token on every request.
measure() {
    local url=$1 pid=$2 before after total p50 p90 p99 result
    hey -z 2s -c 16 -q 63 -H "Authorization: Bearer $TOKEN" "$url" >/dev/null   # warm-up
    before=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    result=$(hey_at_1000 "$url" -H "Authorization: Bearer $TOKEN")
    read -r total p50 p90 p99 <<<"$result"
    after=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    local cpu=-
    if [ "$pid" != - ]; then
        cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$total" 'BEGIN {printf "%.3f", (t / hz) / (n / 1000)}')
    fi
    echo "$p50 $p90 $p99 $cpu"
}

wait_port "$BACKEND"
DIRECT=$(measure "http://127.0.0.1:$BACKEND/p20" -) || exit 1

OURS_ADMIN=$(free_port); OURS_PORT=$(free_port)
bootstrap "$OURS_ADMIN" "$OURS_PORT" > "$WORK/ours.yaml"
"$PROXY" run --config-file "$WORK/ours.yaml" --concurrency 1 >/dev/null 2>"$WORK/ours.log" & OURS_PID=$!; PIDS+=($OURS_PID)
wait_port "$OURS_PORT"
# A request without the token must be refused (the filters really run).
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$OURS_PORT/p20")
[ "$code" = 401 ] || { echo "built-in: a request without a token got $code, not 401" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$OURS_PORT/p19")
[ "$code" = 403 ] || { echo "built-in: user20 on /p19 got $code, not 403" >&2; exit 1; }
OURS=$(measure "http://127.0.0.1:$OURS_PORT/p20" "$OURS_PID") || exit 1
kill "$OURS_PID"

ENVOY_ADMIN=$(free_port); ENVOY_PORT=$(free_port)
bootstrap "$ENVOY_ADMIN" "$ENVOY_PORT" > "$WORK/envoy.yaml"
"$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level error >/dev/null 2>"$WORK/envoy.log" & ENVOY_PID=$!; PIDS+=($ENVOY_PID)
wait_port "$ENVOY_PORT"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ENVOY_PORT/p19")
[ "$code" = 403 ] || { echo "Envoy: user20 on /p19 got $code, not 403" >&2; exit 1; }
REAL_ENVOY=$(real_envoy "$ENVOY_PID")
ENVOY_RESULT=$(measure "http://127.0.0.1:$ENVOY_PORT/p20" "$REAL_ENVOY") || exit 1

read -r d_p50 d_p90 d_p99 _ <<<"$DIRECT"
read -r o_p50 o_p90 o_p99 o_cpu <<<"$OURS"
read -r e_p50 e_p90 e_p99 e_cpu <<<"$ENVOY_RESULT"
latency_row() { # percentile, ours, Envoy's, direct
    local ours envoy
    ours=$(added "$2" "$4"); envoy=$(added "$3" "$4")
    echo "| added latency $1 at 1000 req/s (ms) | $ours | $envoy | $(ratio "$ours" "$envoy") |"
}
echo
echo "| JWT (RS256) + 20-policy RBAC, one worker, 1 kB | built-in | Envoy $(envoy_version) | built-in / Envoy |"
echo "|---|---|---|---|"
latency_row p50 "$o_p50" "$e_p50" "$d_p50"
latency_row p90 "$o_p90" "$e_p90" "$d_p90"
latency_row p99 "$o_p99" "$e_p99" "$d_p99"
echo "| CPU seconds per 1000 requests | $o_cpu | $e_cpu | $(ratio "$o_cpu" "$e_cpu") |"
echo "(direct to nginx: p50 $d_p50 ms, p90 $d_p90 ms, p99 $d_p99 ms at 1000 req/s)"
