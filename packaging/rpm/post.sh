getent group edgeward >/dev/null || groupadd -r edgeward
getent passwd edgeward >/dev/null || useradd -r -g edgeward -G dialout -d /var/lib/edgeward -s /sbin/nologin edgeward
install -d -m 0700 -o edgeward -g edgeward /var/lib/edgeward
chown root:edgeward /etc/edgeward/edgeward.toml && chmod 0640 /etc/edgeward/edgeward.toml
systemctl daemon-reload >/dev/null 2>&1 || :
# The USB recovery steps' rights (60-edgeward-usb.rules) for modems already plugged in.
udevadm control --reload-rules >/dev/null 2>&1 || :
udevadm trigger --subsystem-match=usb --action=change >/dev/null 2>&1 || :
