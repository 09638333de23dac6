#!/bin/sh
# One libvirtd as one "host" of a test (test/helpers/libvirt-lab.ts runs it inside the host's network
# namespace: `ip netns exec NS unshare --uts sh libvirtd-host.sh DIR HOSTNAME`). `ip netns exec` already
# gives this process a private mount namespace (a slave of the root one), so the bind mounts below are
# seen by this libvirtd and the QEMUs it starts, and by nothing else. The mount points are libvirt's
# compiled-in paths; DIR holds this host's own copy of each.
set -eu
dir=$1
hostname "$2"
for d in etc run lib log/qemu cache; do mkdir -p "$dir/$d"; done
mount --bind "$dir/etc" /etc/libvirt
mount --bind "$dir/run" /run/libvirt
mount --bind "$dir/lib" /var/lib/libvirt
mount --bind "$dir/log" /var/log/libvirt
mount --bind "$dir/cache" /var/cache/libvirt
# Its own pid file: the default /run/libvirtd.pid is shared, and its lock would stop the second daemon.
exec libvirtd --listen --pid-file "$dir/libvirtd.pid" --config /etc/libvirt/libvirtd.conf
