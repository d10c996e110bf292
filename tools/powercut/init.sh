#!/bin/sh
# PID 1 of the virtual van (tools/powercut): mount the state disk as Raspberry Pi OS mounts its
# root, bring up user-mode networking, run the agent. Everything it prints goes to the serial
# console, which the host keeps in a file.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.order); do insmod "$m" 2>/dev/null; done
opts=$(sed -n 's/.*cv\.mount=\([^ ]*\).*/\1/p' /proc/cmdline)
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if ! mount -t ext4 -o "$opts" /dev/vda /state; then
    echo "CV: cannot mount the state disk"
    poweroff -f
fi
echo "CV: state disk mounted ($opts)"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /state/curbside
echo "CV: agent starting"
RUST_LOG=warn /bin/curbside run --config /etc/curbside.toml
echo "CV: agent exited with $?"
while true; do sleep 3600; done
