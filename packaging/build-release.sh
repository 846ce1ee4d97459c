#!/usr/bin/env bash
# Static release builds of edgeward (default features: no libvirt, no OpenSSL, no libudev).
#
#   packaging/build-release.sh [x86_64|aarch64|armv7 ...]     (default: x86_64)
#
# Installs what each target needs (rustup target, a C compiler for ring, qemu to run ARM
# binaries; apt packages need root), builds with the size-tuned release profile, checks that
# the result is statically linked and for the right machine, runs it (natively, or under
# qemu-aarch64 for ARM) and prints its size. Binaries land in dist/edgeward-<target>; cargo's
# own output stays in $CARGO_TARGET_DIR (default target/), where build-packages.sh finds it.
# packaging/release.sh runs this for every release target, then the packages.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64)

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p dist
for t in "${targets[@]}"; do
    case "$t" in
        x86_64)
            triple=x86_64-unknown-linux-musl
            apt_install musl-tools file
            export CC_x86_64_unknown_linux_musl=musl-gcc
            run=()
            machine="x86-64"
            ;;
        aarch64)
            triple=aarch64-unknown-linux-musl
            apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user file
            export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
            run=(qemu-aarch64)
            machine="ARM aarch64"
            ;;
        armv7)
            # Older routers. Its standard library is not installable on our build machines
            # today (rustup has no rust-std for it here); the recipe is ready for when it is.
            triple=armv7-unknown-linux-musleabihf
            apt_install gcc-arm-linux-gnueabihf qemu-user file
            export CC_armv7_unknown_linux_musleabihf=arm-linux-gnueabihf-gcc
            export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER=arm-linux-gnueabihf-gcc
            run=(qemu-arm)
            machine="ARM, EABI5"
            ;;
        *) echo "unknown target $t (x86_64, aarch64, armv7)" >&2; exit 2 ;;
    esac
    if ! rustup target add "$triple"; then
        echo "cannot install the Rust standard library for $triple on this machine" >&2
        exit 1
    fi
    cargo build --release --locked --target "$triple"
    out="dist/edgeward-$triple"
    cp "$target_dir/$triple/release/edgeward" "$out"
    desc=$(file -b "$out")
    case "$desc" in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) echo "$out is not statically linked: $desc" >&2; exit 1 ;;
    esac
    case "$desc" in
        *"$machine"*) ;;
        *) echo "$out is not a $machine binary: $desc" >&2; exit 1 ;;
    esac
    version=$("${run[@]}" "$out" --version)
    size=$(stat -c %s "$out")
    printf '%s: %s, %d bytes (%.2f MB), %s\n' "$triple" "$version" "$size" "$(awk "BEGIN{print $size/1000000}")" "${desc%%,*}"
done
