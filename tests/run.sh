#!/usr/bin/env bash
# The one command that installs everything the tests need and runs every test.
#
#   tests/run.sh
#
# Runs as root in CI on a fresh machine; a developer can run it too (it installs only what
# is missing). Tests that need root fail loudly without it; none are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n== %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
apt_packages=(jq curl python3 iproute2 procps file wireguard-go wireguard-tools nftables iperf3)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    section "installing ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || { echo "tests/run.sh: need root to install ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The seed's Python client uses requests.
if ! python3 -c 'import requests' 2>/dev/null; then
    section "installing python requests"
    python3 -m pip install --quiet requests
fi

[ -d ../shared/acceptance ] || { echo "tests/run.sh: ../shared/acceptance is missing (shared/ must sit beside the repository)" >&2; exit 1; }

# --- checks ----------------------------------------------------------------------------
section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --locked --all-targets --all-features -- -D warnings

# --- tests -----------------------------------------------------------------------------
# Every feature but `mock-time` (a test-only fake clock for boringtun that must never reach the
# integration tests: it would freeze WireGuard timers). --all-targets also runs the benchmark
# binaries once in their quick mode, so they keep working.
section "cargo test --features vm --all-targets"
cargo test --locked --features vm --all-targets

section "cargo test --lib --features mock-time wg:: (data-plane timer tests)"
cargo test --locked --lib --features mock-time wg::

# --- fuzzing smoke run ------------------------------------------------------------------
# Bounded: proves the targets build and survive 30 s of libFuzzer each; longer runs are manual
# (`cargo +nightly fuzz run at_codec`, `... wg_ingress`). pipefail makes a crash fail the run.
rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in at_codec wg_ingress; do
    section "cargo +nightly fuzz run $target (30 s)"
    cargo +nightly fuzz run "$target" -- -max_total_time=30 2>&1 | tail -n 3
done
