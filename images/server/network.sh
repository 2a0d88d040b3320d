# Networking for the server image (busybox sh; its applets run without PATH).
# Loopback always; the hostname from /etc/hostname; and the address QEMU's
# user-mode network hands out (10.0.2.15/24 via 10.0.2.2) on eth0 if there
# is one: no DHCP client in the image.
set -e
ip link set lo up
name=keel-server
[ -s /etc/hostname ] && name=$(cat /etc/hostname)
hostname "$name"
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
    echo "network: lo up, eth0 10.0.2.15/24, hostname $name"
else
    echo "network: lo up (no eth0), hostname $name"
fi
