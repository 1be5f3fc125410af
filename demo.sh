#!/usr/bin/env bash
# Brings up Istio's demo profile with Bookinfo on this Linux host (the local platform: pods are
# network namespaces with the same iptables capture as on Kubernetes), prints where to look,
# and tears everything down on Ctrl-C. Needs root, iproute2 and iptables; builds the workspace
# first. Extra arguments go to `istioctl demo` (e.g. --detach, then `./demo.sh --down`).
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
    echo "the demo needs root (network namespaces, iptables): run sudo $0" >&2
    exit 1
fi
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
# Bootstrap 3 and jQuery for Bookinfo's page: installed where apt-get can, else the page gets
# a plain built-in stylesheet.
if [ ! -e /usr/share/javascript/bootstrap/css/bootstrap.min.css ] && command -v apt-get >/dev/null; then
    missing+=(libjs-bootstrap)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} (Debian packages)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
    else
        echo "please install: ${missing[*]}" >&2
        exit 1
    fi
fi
cargo build --workspace --bins
exec ./target/debug/istioctl demo "$@"
