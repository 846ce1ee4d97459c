if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now edgeward.service >/dev/null 2>&1 || :
fi
