#!/usr/bin/env bash
# Boots the guest (building it first if its inputs changed) and runs one command in it
# from the project root, mounted over 9p. The command's output comes back on the
# second serial port, its exit status through a shared folder; this script exits with
# that status. Usage: tests/vm/run-guest.sh [COMMAND...]  (default: the guest tests)
set -euo pipefail
cd "$(dirname "$0")/../.."
guest=$(tests/vm/build-guest.sh)
run=$(mktemp -d "${TMPDIR:-/tmp}/ikbxk-run.XXXXXX")
trap 'rm -rf "$run"' EXIT
if [ $# -eq 0 ]; then
  set -- python3 -m pytest -q -p no:cacheprovider --color=no --durations=6 tests/vm/guest
fi
echo "export IKEBOX_VM_GUEST=1" > "$run/cmd"
printf '%q ' "$@" >> "$run/cmd"
echo >> "$run/cmd"
start=$(date +%s%N)
# TCG: /dev/kvm on these machines is PVM and qemu's KVM mode fails on it.
timeout "${IKEBOX_VM_TIMEOUT:-900}" qemu-system-x86_64 -machine q35,accel=tcg -cpu max \
  -smp "${IKEBOX_VM_CPUS:-2}" -m 1536 \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$guest/vmlinux" -initrd "$guest/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 mitigations=off" \
  -drive "file=$guest/root.img,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$PWD,mount_tag=project,security_model=none,readonly=on" \
  -virtfs "local,path=$run,mount_tag=out,security_model=none" \
  -serial "file:$run/console.log" -serial stdio </dev/null || true
echo "run-guest: qemu ran $(( ($(date +%s%N) - start) / 1000000 )) ms;" \
  "the guest kernel reached its init after $(cat "$run/boot-s" 2>/dev/null || echo ?) s" >&2
if [ ! -f "$run/status" ]; then
  echo "run-guest: the guest left no exit status; its console:" >&2
  tail -40 "$run/console.log" >&2
  exit 2
fi
exit "$(cat "$run/status")"
