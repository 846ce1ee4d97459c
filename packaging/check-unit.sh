#!/usr/bin/env bash
# The systemd unit's sandbox, measured: `systemd-analyze security --offline=yes` of
# packaging/systemd/edgeward.service, its exposure score printed, and a failure if the score
# is worse than MAX_EXPOSURE (what the unit scores today; lower is better, 0-10). A change
# that loosens the sandbox must raise the threshold here, in the open.
#
#   packaging/check-unit.sh
#
# Installs the `systemd` package if systemd-analyze is missing (root, Debian). `--offline`
# needs systemd 250 or later (Debian 12 has 252).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=1.8
unit=packaging/systemd/edgeward.service

if ! command -v systemd-analyze >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { echo "need root to install systemd (for systemd-analyze)" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd
fi

# Exit status 0 unless the unit cannot be read; the score is the verdict.
report=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1) || {
    echo "$report" >&2
    echo "systemd-analyze security could not analyse $unit" >&2
    exit 1
}
# What is still open, then the score line.
grep -E '^✗' <<<"$report" || true
line=$(grep -E 'Overall exposure level' <<<"$report") || { echo "$report" >&2; echo "no exposure score in the report" >&2; exit 1; }
echo "$line"
score=$(sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/' <<<"$line")
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    echo "exposure $score is worse than the threshold $MAX_EXPOSURE: the unit's sandbox was loosened" >&2
    exit 1
fi
echo "exposure $score <= $MAX_EXPOSURE: ok"
