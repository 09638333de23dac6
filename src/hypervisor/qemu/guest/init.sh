#!/bin/busybox sh
# /init of an offlink QEMU guest (built into the initramfs by guest-image.ts).
# Kernel command line parameters (all optional):
#   offlink.addr=ADDR/LEN  static address (when the link has no router advertisements)
#   offlink.gw=ADDR        static default gateway (default fe80::1, the guest link's gateway on every host)
#   offlink.mtu=N          link MTU for the static case (router advertisements carry their own)
#   offlink.addr4=ADDR/LEN static IPv4 address (dual-stack guests; IPv4 has no SLAAC)
#   offlink.gw4=ADDR       IPv4 default gateway (the network's, on the bridge of every host)
#   offlink.wait=S         how long to watch for a SLAAC address before saying there is none (default 60)
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
say() { echo "offlink-guest: $*"; }

addr= gw=fe80::1 addr4= gw4= mtu= wait=60
for p in $(cat /proc/cmdline); do
  case "$p" in
    offlink.addr=*) addr="${p#*=}" ;;
    offlink.gw=*) gw="${p#*=}" ;;
    offlink.addr4=*) addr4="${p#*=}" ;;
    offlink.gw4=*) gw4="${p#*=}" ;;
    offlink.mtu=*) mtu="${p#*=}" ;;
    offlink.wait=*) wait="${p#*=}" ;;
  esac
done

# No DAD: the guest's address is its own on the MNP, and DAD would hold the address for a second.
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad
echo 1 > /proc/sys/net/ipv6/conf/default/accept_ra
# virtio fails with "unknown symbol" unless virtio_ring is loaded first (notes/qemu-guest.md).
for m in MODULES; do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
ip link set lo up
i=0
while ! ip link show eth0 >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -gt 100 ] && { say "no eth0"; break; }
  sleep 0.05
done
echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
[ -n "$mtu" ] && ip link set eth0 mtu "$mtu"
ip link set eth0 up
if [ -n "$addr" ]; then
  ip -6 addr add "$addr" dev eth0
  ip -6 route add default via "$gw" dev eth0
fi
# IPv4 (a dual-stack network's prefix, RFC 5555) has no SLAAC: the address and gateway come from here.
if [ -n "$addr4" ]; then
  if ip -4 addr add "$addr4" dev eth0 && { [ -z "$gw4" ] || ip -4 route add default via "$gw4" dev eth0; }; then
    say "ipv4 $addr4 via ${gw4:-none}"
  else
    say "ipv4 $addr4 via ${gw4:-none} failed"
  fi
fi
# SLAAC from the network's router advertisements (the host's radvd, which runs only while the network
# is active there): the kernel configures the address whenever an RA comes; the services do not wait.
(
  i=0
  while [ "$i" -lt $((wait * 4)) ]; do
    global="$(ip -6 addr show dev eth0 scope global | awk '/inet6/ {print $2; exit}')"
    [ -n "$global" ] && { say "address $global"; exit 0; }
    i=$((i + 1))
    sleep 0.25
  done
  say "no global address after ${wait} s (no router advertisement?)"
) &
exec /bin/oflguest
