#!/usr/bin/env bash
# .deb and .rpm for amd64 and arm64 from the static musl binaries (build them first with
# packaging/build-release.sh x86_64 aarch64, or run packaging/release.sh, which does all).
#
#   packaging/build-packages.sh [--install-test] [x86_64|aarch64 ...]   (default: both)
#
# Installs cargo-deb, cargo-generate-rpm and rpm if missing, packages each prebuilt binary
# (`cargo deb --target <triple> --no-build`, `cargo generate-rpm --target <triple>`) into
# dist/, and inspects every package: architecture (`dpkg-deb -I`, `rpm -qp`), file list
# (`dpkg-deb -c`, `rpm -qlp`) and the machine of the packaged binary. With --install-test
# (root, Debian, amd64 host) it installs the amd64 .deb, checks the user, state directory,
# config permissions, `edgeward check-config` and `systemd-analyze verify` of the installed
# unit, then purges it again.
set -euo pipefail
cd "$(dirname "$0")/.."

install_test=no
arches=()
for a in "$@"; do
    case "$a" in
        --install-test) install_test=yes ;;
        x86_64|aarch64) arches+=("$a") ;;
        *) echo "usage: $0 [--install-test] [x86_64|aarch64 ...]" >&2; exit 2 ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
target_dir=${CARGO_TARGET_DIR:-target}

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked
for tool in rpm file; do
    command -v "$tool" >/dev/null && continue
    [ "$(id -u)" -eq 0 ] || { echo "need root to install $tool" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool"
done

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="edgeward"))')
mkdir -p dist
expect=(usr/bin/edgeward etc/edgeward/edgeward.toml usr/lib/systemd/system/edgeward.service usr/share/doc/edgeward/README.md usr/lib/udev/rules.d/60-edgeward-usb.rules)

fail() { echo "build-packages: $*" >&2; exit 1; }

for arch in "${arches[@]}"; do
    case "$arch" in
        x86_64) triple=x86_64-unknown-linux-musl deb_arch=amd64 rpm_arch=x86_64 machine="x86-64" ;;
        aarch64) triple=aarch64-unknown-linux-musl deb_arch=arm64 rpm_arch=aarch64 machine="ARM aarch64" ;;
    esac
    bin="$target_dir/$triple/release/edgeward"
    [ -x "$bin" ] || fail "no $bin: run packaging/build-release.sh $arch first"
    rm -f dist/edgeward_*_"$deb_arch".deb dist/edgeward-*."$rpm_arch".rpm

    deb=$(cargo deb --no-build --no-strip --target "$triple" -o dist/ | tail -n 1)
    cargo generate-rpm --target "$triple" --target-dir "$target_dir" -o dist/ >/dev/null
    rpm=$(ls -t dist/edgeward-*."$rpm_arch".rpm | head -n 1)
    [ -f "$deb" ] || fail "cargo deb did not say where the $deb_arch package is"

    # Listings are captured first: `lister | grep -q` under pipefail fails whenever grep quits
    # early and the lister dies of SIGPIPE.
    deb_info=$(dpkg-deb -I "$deb")
    deb_files=$(dpkg-deb -c "$deb")
    rpm_files=$(rpm -qlp "$rpm" 2>/dev/null)
    rpm_arch_seen=$(rpm -qp --qf '%{ARCH}' "$rpm" 2>/dev/null)
    grep -qx " Architecture: $deb_arch" <<<"$deb_info" || fail "$deb is not Architecture: $deb_arch"
    grep -qE "^ Version: ${version//./\\.}(-[0-9]+)?$" <<<"$deb_info" || fail "$deb is not Version: $version"
    [ "$rpm_arch_seen" = "$rpm_arch" ] || fail "$rpm is $rpm_arch_seen, not $rpm_arch"
    for f in "${expect[@]}"; do
        grep -q "\./$f\$" <<<"$deb_files" || fail "$deb lacks /$f"
        grep -qx "/$f" <<<"$rpm_files" || fail "$rpm lacks /$f"
    done
    # The packaged binary is the static one for this machine, not a host build.
    unpacked=$(mktemp -d)
    dpkg-deb -x "$deb" "$unpacked"
    desc=$(file -b "$unpacked/usr/bin/edgeward")
    rm -rf "$unpacked"
    case "$desc" in
        *"$machine"*) ;;
        *) fail "$deb carries a binary for the wrong machine: $desc" ;;
    esac
    case "$desc" in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) fail "$deb carries a binary that is not static: $desc" ;;
    esac
    printf '%s: %s (%d bytes), %s (%d bytes)\n' "$deb_arch" "$deb" "$(stat -c %s "$deb")" "$rpm" "$(stat -c %s "$rpm")"
    if [ "$arch" = aarch64 ]; then
        printf '\n-- dpkg-deb -I %s\n%s\n-- dpkg-deb -c %s\n%s\n\n' "$deb" "$deb_info" "$deb" "$deb_files"
    fi
done

if [ "$install_test" = yes ]; then
    deb=$(ls dist/edgeward_"$version"*_amd64.deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || fail "--install-test needs the amd64 .deb"
    dpkg -i "$deb" >/dev/null
    trap 'dpkg --purge edgeward >/dev/null 2>&1 || true' EXIT
    id edgeward | grep dialout >/dev/null || fail "user edgeward missing or not in dialout"
    [ "$(stat -c '%a %U' /var/lib/edgeward)" = "700 edgeward" ] || fail "bad /var/lib/edgeward"
    [ "$(stat -c '%a %U:%G' /etc/edgeward/edgeward.toml)" = "640 root:edgeward" ] || fail "bad config permissions"
    /usr/bin/edgeward check-config >/dev/null
    # The installed unit parses, names only known settings and finds its binary.
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify /usr/lib/systemd/system/edgeward.service
        echo "systemd-analyze verify edgeward.service: ok"
    fi
    dpkg --purge edgeward >/dev/null
    trap - EXIT
    if id edgeward >/dev/null 2>&1 || [ -e /var/lib/edgeward ]; then
        fail "purge left the user or /var/lib/edgeward behind"
    fi
    echo "deb install/purge test: ok"
fi
