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
# libvirt-dev + pkg-config: the `vm` feature links libvirt (and its tests run against libvirt's
# own test driver, which is in libvirt0); qemu-utils: qemu-img makes the VMs' qcow2 disks.
# mtools + dosfstools (+ openssl, util-linux's blkid): the seed-003 server tests read the
# cloud-init seed images edgeward writes with independent tools (mdir/mtype, fsck.vfat, blkid)
# and check its SHA-512 crypt hashes against `openssl passwd -6`.
# libvirt-daemon-system + qemu-system-x86: tests/backup_api.rs runs a private libvirtd with a
# real QEMU guest (TCG) to prove the live `snapshot` backup job the test driver lacks.
apt_packages=(jq curl python3 iproute2 procps file wireguard-go wireguard-tools nftables iperf3
    libvirt-dev pkg-config qemu-utils mtools dosfstools openssl util-linux
    libvirt-daemon-system qemu-system-x86)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    section "installing ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || { echo "tests/run.sh: need root to install ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian 12's qemu-system-x86 (7.2) removes a newer, backported qemu-utils: put Debian's back.
if ! command -v qemu-img >/dev/null; then
    section "installing qemu-utils (again, to match qemu-system-x86)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils
fi

# The seed's Python client uses requests.
if ! python3 -c 'import requests' 2>/dev/null; then
    section "installing python requests"
    python3 -m pip install --quiet requests
fi

# The HiLink simulator is checked against the widely used Python client written for real sticks.
if ! python3 -c 'import huawei_lte_api' 2>/dev/null; then
    section "installing python huawei-lte-api"
    python3 -m pip install --quiet huawei-lte-api
fi

# --- the console and OpenAPI tests (issue 11) -------------------------------------------
# chromium: tests/novnc.rs drives Debian's headless Chromium; nodejs + npm: its page uses noVNC
# from npm (tests/novnc/package.json, pinned by its package-lock.json).
web_packages=(chromium)
command -v node >/dev/null || web_packages+=(nodejs)
command -v npm >/dev/null || web_packages+=(npm)
web_missing=()
for p in "${web_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || web_missing+=("$p"); done
if [ ${#web_missing[@]} -gt 0 ]; then
    section "installing ${web_missing[*]}"
    [ "$(id -u)" -eq 0 ] || { echo "tests/run.sh: need root to install ${web_missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${web_missing[@]}"
fi
if [ ! -f tests/novnc/node_modules/@novnc/novnc/core/rfb.js ]; then
    section "installing noVNC from npm (tests/novnc)"
    (cd tests/novnc && npm ci --no-audit --no-fund --silent)
fi
# tests/openapi.rs validates /api/openapi.json with openapi-spec-validator.
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    section "installing python openapi-spec-validator"
    python3 -m pip install --quiet openapi-spec-validator
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

# The router build (default features, no libvirt): the VM routes answer 503, /swagger is the
# small listing page.
section "cargo test --test vm_off --test openapi (default features: the router build)"
cargo test --locked --test vm_off --test openapi

section "cargo test --lib --features mock-time wg:: (data-plane timer tests)"
cargo test --locked --lib --features mock-time wg::

# --- fuzzing smoke run ------------------------------------------------------------------
# Bounded: proves the targets build and survive 30 s of libFuzzer each; longer runs are manual
# (`cargo +nightly fuzz run at_codec`, `... wg_ingress`, `... token`, `... cookie`). pipefail makes a crash fail the run.
rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in at_codec wg_ingress token cookie; do
    section "cargo +nightly fuzz run $target (30 s)"
    cargo +nightly fuzz run "$target" -- -max_total_time=30 2>&1 | tail -n 3
done
