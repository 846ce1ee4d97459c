#!/usr/bin/env bash
# The whole release set from one command: static x86_64 and aarch64 musl binaries, .deb and
# .rpm for amd64 and arm64, the x86_64 server build with VMs (`--features vm`, glibc) and its
# edgeward-vm .deb/.rpm, and dist/SHA256SUMS over all nine files.
#
#   packaging/release.sh [--install-test]
#
# Runs on a fresh Debian machine as root (it installs the cross compiler, qemu, the Rust
# targets and the packaging tools it needs); --install-test is passed to build-packages.sh.
# Prints the size of every artefact at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/build-release.sh x86_64 aarch64
bash packaging/build-packages.sh "$@" x86_64 aarch64
# The x86_64 server build with VMs (glibc, libvirt linked dynamically) and its packages.
bash packaging/build-vm-packages.sh "$@"

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="edgeward"))')
cd dist
files=(
    edgeward-x86_64-unknown-linux-musl
    edgeward-aarch64-unknown-linux-musl
    "edgeward_${version}-1_amd64.deb"
    "edgeward_${version}-1_arm64.deb"
    "edgeward-${version}-1.x86_64.rpm"
    "edgeward-${version}-1.aarch64.rpm"
    edgeward-vm-x86_64-unknown-linux-gnu
    "edgeward-vm_${version}-1_amd64.deb"
    "edgeward-vm-${version}-1.x86_64.rpm"
)
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "release: dist/$f is missing" >&2; exit 1; }
done
sha256sum "${files[@]}" >SHA256SUMS
sha256sum --quiet -c SHA256SUMS
printf '\n== release set (dist/, SHA256SUMS checked)\n'
for f in "${files[@]}"; do
    size=$(stat -c %s "$f")
    printf '%-42s %9d bytes  %6.2f MB\n' "$f" "$size" "$(awk "BEGIN{print $size/1000000}")"
done
