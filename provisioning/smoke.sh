#!/bin/sh
# Boot self-test, run only with `ikebox.smoke` on the kernel command line (the qemu
# boot test adds it). Reports on the serial console as IKEBOX-SMOKE lines; the host
# reads them, runs its own checks through port forwards, then stops the VM.
out() { echo "IKEBOX-SMOKE $*"; }
py=/opt/ikebox/venv/bin/python
units="ikebox.service ikebox-webui.service ikebox-leds.service"

# Wait (bounded) for the services to settle. A unit waiting to be restarted after a
# failure has settled too: it is reported, with its log, rather than waited for.
start=$(date +%s)
while [ $(($(date +%s) - start)) -lt 180 ]; do
    pending=0
    for u in $units; do
        state=$(systemctl show -P ActiveState "$u")/$(systemctl show -P SubState "$u")
        case $state in */auto-restart) ;; activating/*|reloading/*|inactive/*) pending=1;; esac
    done
    [ $pending = 0 ] && break
    sleep 2
done
out "settled-after $(($(date +%s) - start))"
# The units are "active" as soon as their processes run (Type=simple); the web UI then
# still imports its libraries, which under emulation takes a while. Wait (bounded) for
# its HTTPS listener, and for the daemon's readiness.
while [ $(($(date +%s) - start)) -lt 300 ]; do
    ss -Hltn 'sport = :443' | grep -q . && break
    sleep 2
done
out "webui-listening-after $(($(date +%s) - start))"
for u in $units ikebox-firstboot.service systemd-networkd.service; do
    state=$(systemctl is-active "$u")
    out "unit $u $state"
    if [ "$state" != active ] || [ "$u" = ikebox-firstboot.service ] \
            || [ "$u" = ikebox-webui.service ]; then
        journalctl -b -u "$u" -n 25 --no-pager -o cat | sed "s|^|IKEBOX-LOG $u: |"
    fi
done
# No awk here: mawk is not part of the image (--variant=apt installs no Priority:required set).
failed=$(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' ')
out "failed-units $failed"
out "root-size-kib $(df -k --output=size / | tail -n1 | tr -d ' ')"
out "machine-id $(grep -cE '^[0-9a-f]{32}$' /etc/machine-id)"
out "journal-files-on-card $(find /var/log/journal -type f 2>/dev/null | wc -l)"
out "swap $(($(wc -l < /proc/swaps) - 1))"
out "seed-left $(ls /boot/firmware | grep -c ikebox-seed)"
if [ -f /var/lib/ikebox-webui/admin.json ]; then
    out "admin-json $(stat -c '%U %a' /var/lib/ikebox-webui/admin.json)"
else
    out "admin-json absent"
fi
out "identity $(sed -n 's/^identity = //p' /etc/ikebox/ikebox.toml | head -n1)"
out "users $(/opt/ikebox/venv/bin/ikebox user list --json 2>/dev/null | $py -c \
    'import json,sys; print(" ".join(sorted(u["name"] for u in json.load(sys.stdin))))')"
out "listen-tcp $(ss -Hltn | tr -s ' ' | cut -d' ' -f4 | tr '\n' ' ')"
out "listen-udp $(ss -Hlun | tr -s ' ' | cut -d' ' -f4 | tr '\n' ' ')"
# gpiozero's pin library for the Pi's /dev/gpiochip*: it must import on the image.
out "gpio-lib $($py -c 'import gpiozero.pins.lgpio; print("ok")' 2>&1 | tail -n1)"
out "status $(/opt/ikebox/venv/bin/ikebox show status --json 2>&1 | tr -d '\n')"
# The box's CA certificate (public), so the host's test client can verify the box.
sed 's/^/IKEBOX-CA /' /var/lib/ikebox/pki/ca.pem
out "done"
