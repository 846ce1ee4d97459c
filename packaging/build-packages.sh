#!/usr/bin/env bash
# .deb and .rpm from the static x86_64 binary (run packaging/build-release.sh x86_64 first).
#
#   packaging/build-packages.sh [--install-test]
#
# Installs cargo-deb and cargo-generate-rpm if missing, builds both packages into dist/, checks
# their file lists, and with --install-test (root, Debian) installs the .deb, checks the user,
# state directory, config permissions and `edgeward check-config`, then purges it again.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-musl
[ -x "target/$triple/release/edgeward" ] || { echo "build the static binary first: packaging/build-release.sh x86_64" >&2; exit 1; }

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked
command -v rpm >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm; }

mkdir -p dist
deb=$(cargo deb --no-build --no-strip --target "$triple" -o dist/ | tail -n 1)
cargo generate-rpm --target "$triple" -o dist/
rpm=$(ls -t dist/edgeward-*.x86_64.rpm | head -n 1)

# Listings are captured first: `lister | grep -q` under pipefail fails whenever grep quits
# early and the lister dies of SIGPIPE.
deb_files=$(dpkg-deb -c "$deb")
rpm_files=$(rpm -qlp "$rpm" 2>/dev/null)
expect=(usr/bin/edgeward etc/edgeward/edgeward.toml usr/lib/systemd/system/edgeward.service)
for f in "${expect[@]}"; do
    grep -q "\./$f\$" <<<"$deb_files" || { echo "$deb lacks /$f" >&2; exit 1; }
    grep -qx "/$f" <<<"$rpm_files" || { echo "$rpm lacks /$f" >&2; exit 1; }
done
echo "packages: $deb ($(stat -c %s "$deb") bytes), $rpm ($(stat -c %s "$rpm") bytes)"

if [ "${1:-}" = "--install-test" ]; then
    dpkg -i "$deb" >/dev/null
    trap 'dpkg --purge edgeward >/dev/null 2>&1 || true' EXIT
    id edgeward | grep dialout >/dev/null || { echo "user edgeward missing or not in dialout" >&2; exit 1; }
    [ "$(stat -c '%a %U' /var/lib/edgeward)" = "700 edgeward" ] || { echo "bad /var/lib/edgeward" >&2; exit 1; }
    [ "$(stat -c '%a %U:%G' /etc/edgeward/edgeward.toml)" = "640 root:edgeward" ] || { echo "bad config permissions" >&2; exit 1; }
    /usr/bin/edgeward check-config >/dev/null
    dpkg --purge edgeward >/dev/null
    trap - EXIT
    if id edgeward >/dev/null 2>&1 || [ -e /var/lib/edgeward ]; then
        echo "purge left the user or /var/lib/edgeward behind" >&2; exit 1
    fi
    echo "deb install/purge test: ok"
fi
