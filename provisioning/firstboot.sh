#!/bin/sh
# ikebox first boot, run once by ikebox-firstboot.service (a stamp file marks it done):
# grow the root partition and filesystem to the card, give the box its own machine-id
# and SSH host keys, and apply ikebox-seed.toml from the firmware partition.
# Each step logs and the next one still runs: a box that failed to grow still boots.
set -u
SEED=/boot/firmware/ikebox-seed.toml
STAMP=/var/lib/ikebox/firstboot.done
log() { echo "ikebox-firstboot: $*"; }

grow_root() {
    # Work from the device number: `findmnt` may say /dev/root without an initramfs.
    majmin=$(mountpoint -d /) || return 1
    part=$(basename "$(readlink -f "/sys/dev/block/$majmin")")
    [ -f "/sys/class/block/$part/partition" ] || { log "root $part is no partition"; return 1; }
    nr=$(cat "/sys/class/block/$part/partition")
    disk=/dev/$(basename "$(dirname "$(readlink -f "/sys/class/block/$part")")")
    before=$(cat "/sys/class/block/$part/size")
    # ", +" = same start, as large as the disk allows. --force: the disk is in use.
    echo ", +" | sfdisk --quiet --force --no-reread --no-tell-kernel -N "$nr" "$disk" \
        || return 1
    partx --update --nr "$nr" "$disk" || return 1
    resize2fs "/dev/$part" || return 1
    log "root partition $part grew from $before to $(cat "/sys/class/block/$part/size") sectors"
}

machine_id() {
    if ! grep -qE '^[0-9a-f]{32}$' /etc/machine-id 2>/dev/null; then
        rm -f /etc/machine-id
        systemd-machine-id-setup
    fi
    # systemd may run on a transient id bind-mounted over the empty file: keep it.
    if mountpoint -q /etc/machine-id; then
        systemd-machine-id-setup --commit
    fi
    log "machine-id set"
}

ssh_keys() {
    [ -x /usr/sbin/sshd ] || return 0
    # The image ships without host keys: every box makes its own.
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -A && log "new SSH host keys"
}

seed() {
    [ -f "$SEED" ] || { log "no seed on the firmware partition"; return 0; }
    # provisioning.seed logs what it applied (never a secret) and deletes the file,
    # or renames it .invalid with the reason and applies nothing.
    /opt/ikebox/venv/bin/python -m provisioning.seed apply "$SEED"
    rc=$?
    sync
    return $rc
}

status=0
for step in grow_root machine_id ssh_keys seed; do
    $step || { log "step $step failed"; status=1; }
done
mkdir -p -m 0700 /var/lib/ikebox
touch "$STAMP"
exit $status
