#!/usr/bin/env bash
# The data planes holding a large mesh's config: one Pilot serves a mesh of $SERVICES services
# (1000 by default: ServiceEntries with two endpoints each, a VirtualService and DestinationRule
# for the first, no Sidecar scoping, so every proxy gets everything) to the built-in proxy and,
# after it, to a stock Envoy, each started by `proxy sidecar` (the agent) with $WORKERS workers
# (2, Istio's default). For each plane it reports:
#   - the time from the agent's start until the proxy has ACKed all four xDS types;
#   - the data plane process's resident memory holding that config (for Envoy, the Envoy
#     process alone; the built-in proxy's figure includes its agent, which is the same process);
#   - the time from Pilot's push to the proxy's ACK for a VirtualService edit (one route
#     configuration) and for every service's endpoints changing (EDS for every cluster), read
#     from Pilot's `/debug/syncz` (sent and ACKed nonces) every few milliseconds.
#
#   proxy/bench/mesh_config.sh                       # builds release pilot and proxy
#   SERVICES=2000 WORKERS=1 proxy/bench/mesh_config.sh
#
# Needs: cargo, python3 and the Envoy that ./test.sh installs.
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVICES="${SERVICES:-1000}"
WORKERS="${WORKERS:-2}"
ENVOY="${ENVOY_BIN:-$HOME/.cache/istio-rs/venv/bin/envoy}"
[ -x "$ENVOY" ] || { echo "Envoy not found at $ENVOY; run ./test.sh once or set ENVOY_BIN" >&2; exit 1; }
# One package at a time: built together, their dependencies' features unify differently and
# both binaries are built again.
cargo build -q --release -p pilot
cargo build -q --release -p proxy
PILOT="$PWD/target/release/pilot"
PROXY="$PWD/target/release/proxy"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }

# write_mesh ENDPOINT_SUFFIX WEIGHT: the mesh, one object per file (a file changes only when its
# object does).
write_mesh() {
    python3 - "$WORK/config" "$SERVICES" "$1" "$2" <<'PY'
import os, sys
directory, services, suffix, weight = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
os.makedirs(directory, exist_ok=True)
def write(name, text):
    path = os.path.join(directory, name)
    if not os.path.exists(path) or open(path).read() != text:
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
for i in range(services):
    write(f"svc{i}.yaml", f"""apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {{name: svc{i}, namespace: bench}}
spec:
  hosts: [svc{i}.bench.svc.cluster.local]
  addresses: [10.{i // 250}.{i % 250}.1]
  ports: [{{number: {8000 + i % 20}, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {{address: 10.200.{i % 250}.{suffix}, labels: {{version: v1}}}}
  - {{address: 10.201.{i % 250}.{suffix}, labels: {{version: v2}}}}
""")
host = "svc0.bench.svc.cluster.local"
write("rules.yaml", f"""apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: svc0, namespace: bench}}
spec:
  hosts: [{host}]
  http:
  - route:
    - destination: {{host: {host}, subset: v1}}
      weight: {weight}
    - destination: {{host: {host}, subset: v2}}
      weight: {100 - weight}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: svc0, namespace: bench}}
spec:
  host: {host}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
""")
PY
}

# syncz POD MODE [ARG]: polls Pilot's /debug/syncz for POD's entry. MODE `converged` waits until
# every type is ACKed at its last sent nonce and prints the seconds since ARG (a Unix time); `push` first
# notes KIND's sent nonce, waits for a new one (Pilot's push) and then for its ACK, and prints
# the milliseconds between the two. Fails on a NACK or after a minute.
syncz() {
    python3 - "$PILOT_HTTP" "$@" <<'PY'
import http.client, json, sys, time
port, pod, mode = sys.argv[1], sys.argv[2], sys.argv[3]
kind = sys.argv[4] if len(sys.argv) > 4 else None
started = float(sys.argv[4]) if mode == "converged" else None
connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
def entry():
    connection.request("GET", "/debug/syncz")
    for e in json.loads(connection.getresponse().read()):
        if e["proxy"].startswith(pod + "."):
            if e.get("nacks"):
                sys.exit(f"{pod} rejected config: {e['nacks']}")
            return e
    return None
kinds = ["cluster", "listener", "route", "endpoint"]
start = time.monotonic()
deadline = start + 60
if mode == "converged":
    while time.monotonic() < deadline:
        e = entry()
        if e and all(e[f"{k}_sent"] and e[f"{k}_sent"] == e[f"{k}_acked"] for k in kinds):
            print(f"{time.time() - started:.2f}")
            sys.exit(0)
        time.sleep(0.005)
    sys.exit(f"{pod} did not ACK every type within a minute")
before = entry()[f"{kind}_sent"]
print("ready", flush=True)
sent = None
while time.monotonic() < deadline:
    e = entry()
    if sent is None and e[f"{kind}_sent"] != before:
        sent = time.monotonic()
    if sent is not None and e[f"{kind}_acked"] == e[f"{kind}_sent"]:
        print(f"{(time.monotonic() - sent) * 1000:.0f}")
        sys.exit(0)
    time.sleep(0.002)
sys.exit(f"{pod}: no {kind} push and ACK within a minute")
PY
}

# descendant_named PID NAME: the pid of PID's descendant (or PID itself) running NAME.
descendant_named() {
    python3 - "$1" "$2" <<'PY'
import os, sys
root, name = sys.argv[1], sys.argv[2]
children = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        parent = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
    except OSError:
        continue
    children.setdefault(parent, []).append(pid)
queue = [root]
while queue:
    pid = queue.pop(0)
    try:
        if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == name:
            print(pid)
            sys.exit(0)
    except OSError:
        pass
    queue += children.get(pid, [])
sys.exit(f"no {name} under {root}")
PY
}
rss_mb() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# push_to_ack POD KIND CHANGE…: runs CHANGE while the poller watches; prints its milliseconds.
push_to_ack() {
    local pod=$1 kind=$2
    shift 2
    coproc POLL { syncz "$pod" push "$kind"; }
    local line
    read -r line <&"${POLL[0]}"
    [ "$line" = ready ] || { echo "poller: $line" >&2; exit 1; }
    "$@"
    read -r line <&"${POLL[0]}" || true
    wait "$POLL_PID" || { echo "$pod: no $kind push measured" >&2; exit 1; }
    echo "$line"
}

write_mesh 1 50
XDS=$(free_port); PILOT_HTTP=$(free_port)
"$PILOT" discovery --configDir "$WORK/config" --grpcAddr "127.0.0.1:$XDS" --httpAddr "127.0.0.1:$PILOT_HTTP" \
    --monitoringAddr 127.0.0.1:0 >/dev/null 2>"$WORK/pilot.log" & PIDS+=($!)
wait_port "$PILOT_HTTP"
sleep 2 # the first push context

# measure PLANE: prints "converged_s rss_mb route_ms endpoint_ms"
measure() {
    local plane=$1 pod="bench-$1" endpoints_suffix=$2
    local admin status
    admin=$(free_port); status=$(free_port)
    local args=(sidecar --configPath "$WORK/$plane" --serviceCluster "$pod.bench" --discoveryAddress "127.0.0.1:$XDS"
        --proxyAdminPort "$admin" --statusPort "$status" --concurrency "$WORKERS" --drainDuration 1s
        --parentShutdownDuration 2s)
    [ "$plane" = envoy ] && args+=(--binaryPath "$ENVOY")
    local agent started
    started=$(date +%s.%N)
    POD_NAME="$pod" POD_NAMESPACE=bench INSTANCE_IP=127.0.0.1 ISTIO_METAJSON_LABELS='{"app":"bench"}' \
        "$PROXY" "${args[@]}" >/dev/null 2>"$WORK/$plane.log" & agent=$!; PIDS+=($agent)
    local converged
    converged=$(syncz "$pod" converged "$started")
    sleep 3 # settled: no start-up work left
    local pid=$agent
    [ "$plane" = envoy ] && pid=$(descendant_named "$agent" envoy)
    local rss; rss=$(rss_mb "$pid")
    local route endpoint
    route=$(push_to_ack "$pod" route write_mesh 1 "$((RANDOM % 90 + 5))")
    endpoint=$(push_to_ack "$pod" endpoint write_mesh "$endpoints_suffix" 30)
    kill "$agent"; wait "$agent" 2>/dev/null || true
    echo "$converged $rss $route $endpoint"
}

measure builtin 2 > "$WORK/builtin.result"
measure envoy 3 > "$WORK/envoy.result"
read -r o_conv o_rss o_route o_eds < "$WORK/builtin.result"
read -r e_conv e_rss e_route e_eds < "$WORK/envoy.result"
echo
echo "| $SERVICES services, no Sidecar, $WORKERS workers | built-in | Envoy $("$ENVOY" --version 2>/dev/null | grep -o 'version: [^/]*/[0-9.]*' | head -1 | cut -d/ -f2) | built-in / Envoy |"
echo "|---|---|---|---|"
echo "| agent start to every type ACKed (s) | $o_conv | $e_conv | $(ratio "$o_conv" "$e_conv") |"
echo "| resident memory holding the config (MB) | $o_rss | $e_rss | $(ratio "$o_rss" "$e_rss") |"
echo "| VirtualService edit, push to ACK (ms) | $o_route | $e_route | $(ratio "$o_route" "$e_route") |"
echo "| every endpoint changed, push to ACK (ms) | $o_eds | $e_eds | $(ratio "$o_eds" "$e_eds") |"
