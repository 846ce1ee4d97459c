getent group edgeward >/dev/null || groupadd -r edgeward
getent passwd edgeward >/dev/null || useradd -r -g edgeward -G dialout -d /var/lib/edgeward -s /sbin/nologin edgeward
getent group libvirt >/dev/null && usermod -a -G libvirt edgeward || :
install -d -m 0700 -o edgeward -g edgeward /var/lib/edgeward
install -d -m 0711 -o edgeward -g edgeward /var/lib/libvirt/images/edgeward
chown root:edgeward /etc/edgeward/edgeward.toml && chmod 0640 /etc/edgeward/edgeward.toml
systemctl daemon-reload >/dev/null 2>&1 || :
