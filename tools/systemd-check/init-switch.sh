#!/bin/sh
# The initramfs of tools/systemd-check/uart.py: load the disk and ext4 drivers, mount the
# installed Debian root from /dev/vda and hand over to systemd.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.order); do insmod "$m" 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
mkdir -p /newroot
mount -t ext4 -o rw,noatime /dev/vda /newroot || { echo "UART: cannot mount the root"; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
