#!/usr/bin/env bash
# The x86_64 server build with VMs (`--features vm`): a glibc binary that links libvirt.so.0
# dynamically (Debian has no static libvirt), and its packages edgeward-vm .deb (depends on
# libvirt0 and qemu-utils) and .rpm (libvirt-libs, qemu-img), beside the static router packages.
#
#   packaging/build-vm-packages.sh [--install-test]
#
# Installs libvirt-dev and pkg-config (build) and cargo-deb/cargo-generate-rpm if missing.
# Checks the binary (x86-64, dynamically linked, NEEDED libvirt.so.0, runs `--version`), the
# packages' dependencies and file lists. With --install-test (root, Debian amd64) it installs
# the .deb with apt (pulling its dependencies), checks the user (in group libvirt, created for
# the test when libvirt-daemon-system is absent), the storage directory, `check-config` and the
# unit with its drop-in, then purges it.
set -euo pipefail
cd "$(dirname "$0")/.."

install_test=no
for a in "$@"; do
    case "$a" in
        --install-test) install_test=yes ;;
        *) echo "usage: $0 [--install-test]" >&2; exit 2 ;;
    esac
done
fail() { echo "build-vm-packages: $*" >&2; exit 1; }

missing=()
for p in libvirt-dev pkg-config file; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || fail "need root to install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked

triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}
rustup target add "$triple" >/dev/null 2>&1 || true
cargo build --release --locked --features vm --target "$triple"
bin="$target_dir/$triple/release/edgeward"
mkdir -p dist
cp "$bin" "dist/edgeward-vm-$triple"
desc=$(file -b "$bin")
case "$desc" in *x86-64*) ;; *) fail "$bin is not x86-64: $desc" ;; esac
case "$desc" in *"dynamically linked"*) ;; *) fail "$bin should link libvirt dynamically: $desc" ;; esac
needed=$(readelf -d "$bin" | grep NEEDED || true)
grep -q 'libvirt.so.0' <<<"$needed" || fail "$bin does not link libvirt.so.0: $needed"
"$bin" --version >/dev/null || fail "$bin does not run"

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="edgeward"))')
rm -f dist/edgeward-vm_*_amd64.deb dist/edgeward-vm-*.x86_64.rpm
deb=$(cargo deb --variant vm --no-build --no-strip --target "$triple" -o dist/ | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not say where the package is"
cargo generate-rpm --variant vm --target "$triple" --target-dir "$target_dir" -o dist/ >/dev/null
rpm=$(ls -t dist/edgeward-vm-*.x86_64.rpm | head -n 1)

deb_info=$(dpkg-deb -I "$deb")
deb_files=$(dpkg-deb -c "$deb")
grep -qx " Package: edgeward-vm" <<<"$deb_info" || fail "$deb is not edgeward-vm"
grep -qx " Architecture: amd64" <<<"$deb_info" || fail "$deb is not amd64"
depends=$(grep '^ Depends:' <<<"$deb_info" || true)
for d in libvirt0 qemu-utils; do grep -q "$d" <<<"$depends" || fail "$deb does not depend on $d: $depends"; done
grep -q '^ Conflicts: edgeward' <<<"$deb_info" || fail "$deb does not conflict with the router package"
for f in usr/bin/edgeward etc/edgeward/edgeward.toml usr/lib/systemd/system/edgeward.service \
    usr/lib/systemd/system/edgeward.service.d/vm.conf; do
    grep -q "\./$f\$" <<<"$deb_files" || fail "$deb lacks /$f"
done
if command -v rpm >/dev/null; then
    rpm_req=$(rpm -qp --requires "$rpm" 2>/dev/null)
    grep -q libvirt-libs <<<"$rpm_req" || fail "$rpm does not require libvirt-libs"
    # Captured first: `rpm -qlp | grep -q` under pipefail fails whenever grep quits early.
    rpm_files=$(rpm -qlp "$rpm" 2>/dev/null)
    grep -qx /usr/lib/systemd/system/edgeward.service.d/vm.conf <<<"$rpm_files" ||
        fail "$rpm lacks the drop-in"
fi
printf 'vm: %s (%d bytes), %s (%d bytes)\n' "$deb" "$(stat -c %s "$deb")" "$rpm" "$(stat -c %s "$rpm")"

if [ "$install_test" = yes ]; then
    made_group=no
    if ! getent group libvirt >/dev/null; then groupadd -r libvirt; made_group=yes; fi
    cleanup() {
        dpkg --purge edgeward-vm >/dev/null 2>&1 || true
        [ "$made_group" = yes ] && groupdel libvirt 2>/dev/null || true
    }
    trap cleanup EXIT
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "./$deb" >/dev/null
    groups_of_edgeward=$(id -nG edgeward | tr ' ' '\n')
    grep -qx libvirt <<<"$groups_of_edgeward" || fail "user edgeward is not in group libvirt"
    [ "$(stat -c '%a %U' /var/lib/edgeward)" = "700 edgeward" ] || fail "bad /var/lib/edgeward"
    [ "$(stat -c '%a %U' /var/lib/libvirt/images/edgeward)" = "711 edgeward" ] || fail "bad VM storage dir"
    /usr/bin/edgeward check-config >/dev/null
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify /usr/lib/systemd/system/edgeward.service
        echo "systemd-analyze verify edgeward.service (with vm.conf): ok"
    fi
    dpkg --purge edgeward-vm >/dev/null
    cleanup
    trap - EXIT
    echo "edgeward-vm install/purge test: ok"
fi
