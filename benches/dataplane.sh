#!/usr/bin/env bash
# Data-plane throughput, side by side in one run (needs root):
#   client (wireguard-go) -> SERVER -> internet namespace (iperf3 -s)
# where SERVER is first edgeward (release build, TUN + nftables masquerade), then wireguard-go
# configured the same way (same namespaces, veths, addresses, NAT). Prints Mbit/s for each.
#
#   benches/dataplane.sh [seconds]        (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
[ "$(id -u)" -eq 0 ] || { echo "benches/dataplane.sh needs root (namespaces, TUN)" >&2; exit 1; }
for t in ip wg wireguard-go iperf3 nft curl jq; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
cargo build --release --quiet
BIN=$PWD/target/release/edgeward
TAG=ewb$$
C=${TAG}c B=${TAG}b I=${TAG}i
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for n in $C $B $I; do ip netns del $n 2>/dev/null || true; done
    rm -f /var/run/wireguard/${TAG}*.sock
    rm -rf "$WORK"
}
trap cleanup EXIT

for n in $C $B $I; do ip netns add $n; ip -n $n link set lo up; done
ip link add ${TAG}c0 netns $C type veth peer name ${TAG}bc netns $B
ip link add ${TAG}bi netns $B type veth peer name ${TAG}i0 netns $I
ip -n $C addr add 198.51.100.2/24 dev ${TAG}c0; ip -n $C link set ${TAG}c0 up
ip -n $B addr add 198.51.100.1/24 dev ${TAG}bc; ip -n $B link set ${TAG}bc up
ip -n $B addr add 203.0.113.1/24 dev ${TAG}bi; ip -n $B link set ${TAG}bi up
ip -n $I addr add 203.0.113.2/24 dev ${TAG}i0; ip -n $I link set ${TAG}i0 up
ip -n $B route add default via 203.0.113.2
ip netns exec $I iperf3 -s -B 203.0.113.2 -D --logfile "$WORK/iperf.log" -I "$WORK/iperf.pid"
sleep 0.3
PIDS+=("$(cat "$WORK/iperf.pid")")

client_up() { # $1 = config file (no Address/DNS), $2 = client address
    ip netns exec $C env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go ${TAG}w >/dev/null 2>&1
    ip netns exec $C wg setconf ${TAG}w "$1"
    ip -n $C addr add "$2/24" dev ${TAG}w
    ip -n $C link set ${TAG}w up
    ip -n $C route replace 203.0.113.0/24 dev ${TAG}w
}
client_down() { ip -n $C link del ${TAG}w 2>/dev/null || true; rm -f /var/run/wireguard/${TAG}w.sock; }
measure() { # prints receiver Mbit/s
    ip netns exec $C iperf3 -c 203.0.113.2 -t "$SECS" -J | jq '.end.sum_received.bits_per_second / 1e6 | floor'
}

# --- edgeward as the server ---
cat > "$WORK/edgeward.toml" <<EOF
[api]
listen = ["127.0.0.1:8080"]
[store]
path = "$WORK/store.redb"
[wireguard]
listen_port = 51820
endpoint_host = "198.51.100.1"
tun = "ew0"
dns = []
[[vpn.pool]]
subnet = "10.8.0.0/24"
keys = 4
EOF
ip netns exec $B env EDGEWARD_LOG=warn "$BIN" serve --config "$WORK/edgeward.toml" &
EW=$!; PIDS+=($EW)
for _ in $(seq 50); do ip netns exec $B curl -s -o /dev/null http://127.0.0.1:8080/api/health && break; sleep 0.1; done
LEASE=$(ip netns exec $B curl -s http://127.0.0.1:8080/vpn_api/allocate)
echo "$LEASE" | jq -r .config | grep -vE '^(Address|DNS) = ' > "$WORK/c.conf"
client_up "$WORK/c.conf" "$(echo "$LEASE" | jq -r .internal_ip)"
EDGEWARD_MBPS=$(measure)
EW_RSS=$(awk '/VmHWM/{print $2}' /proc/$EW/status)
client_down
kill -TERM $EW; wait $EW 2>/dev/null || true

# --- wireguard-go as the server, same addresses and NAT ---
SK=$(wg genkey); SPK=$(echo "$SK" | wg pubkey); CK=$(wg genkey); CPK=$(echo "$CK" | wg pubkey)
ip netns exec $B env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go ${TAG}s >/dev/null 2>&1
printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.8.0.2/32\n' "$SK" "$CPK" > "$WORK/s.conf"
ip netns exec $B wg setconf ${TAG}s "$WORK/s.conf"
ip -n $B addr add 10.8.0.1/24 dev ${TAG}s; ip -n $B link set ${TAG}s up
ip netns exec $B sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
printf 'table inet wgbench {\n chain postrouting { type nat hook postrouting priority srcnat; ip saddr 10.8.0.0/24 oifname != "%s" masquerade; }\n}\n' "${TAG}s" | ip netns exec $B nft -f -
printf '[Interface]\nPrivateKey = %s\n\n[Peer]\nPublicKey = %s\nEndpoint = 198.51.100.1:51820\nAllowedIPs = 0.0.0.0/0\n' "$CK" "$SPK" > "$WORK/c2.conf"
client_up "$WORK/c2.conf" 10.8.0.2
WGGO_MBPS=$(measure)
WGGO_PID=$(pgrep -f "wireguard-go ${TAG}s" | head -n1 || true)
WGGO_RSS=$( [ -n "$WGGO_PID" ] && awk '/VmHWM/{print $2}' /proc/$WGGO_PID/status || echo "?")
[ -n "$WGGO_PID" ] && PIDS+=($WGGO_PID)
client_down

echo "data plane, bulk TCP client -> internet namespace, ${SECS}s iperf3, same namespaces/veths/NAT:"
echo "  through edgeward (boringtun, one loop):  ${EDGEWARD_MBPS} Mbit/s  (peak RSS ${EW_RSS} kB)"
echo "  through wireguard-go as the server:      ${WGGO_MBPS} Mbit/s  (peak RSS ${WGGO_RSS} kB)"
