#!/bin/bash
# PID 1 in the guest: mount the project (9p, read-only use) and the output share, run
# the command the host left in /out/cmd with its output on the second serial port,
# store its exit status in /out/status, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns
modprobe -q 9pnet_virtio; modprobe -q 9p
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts" project /project
mount -t 9p -o "$opts" out /out
cut -d' ' -f1 /proc/uptime > /out/boot-s
ip link set lo up
export PYTHONPATH=/opt/ikebox/site:/project PYTHONDONTWRITEBYTECODE=1 HOME=/root
cd /project
bash /out/cmd > /dev/ttyS1 2>&1
echo $? > /out/status
sync
umount /out
echo o > /proc/sysrq-trigger
sleep 10
