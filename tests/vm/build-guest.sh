#!/usr/bin/env bash
# Builds the qemu guest that carries the ESP data path this host kernel lacks:
# Debian's stock amd64 kernel, a small initramfs that only finds the root disk, and an
# ext4 root made by mmdebstrap with python3, strongSwan, iproute2, nftables and ping.
# Output goes to build/vm/<hash>/ where the hash covers every input, so a second run
# with the same inputs is a no-op. Prints the guest directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/vm

# The kernel is pinned through the metapackage's current dependency; the hash below
# includes that version, so a new Debian kernel gives a new guest.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
  | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
[ -n "$kpkg" ] || { echo "build-guest: no linux-image-amd64 in apt's lists" >&2; exit 1; }
kver=${kpkg#linux-image-}
kdeb_ver=$(apt-cache policy "$kpkg" | sed -n 's/^ *Candidate: //p')

packages="python3 strongswan-charon strongswan-swanctl strongswan-pki
libstrongswan-standard-plugins libcharon-extra-plugins libcharon-extauth-plugins
iproute2 nftables iputils-ping procps kmod netbase mount util-linux"
inputs_hash=$( { echo "$kpkg $kdeb_ver"; echo "$packages"; cat requirements.txt \
  "$here/build-guest.sh" "$here/guest-init.sh" "$here/initramfs-init.sh"; } \
  | sha256sum | cut -c1-16)
out=build/vm/$inputs_hash
if [ -f "$out/ready" ]; then
  echo "$out"
  exit 0
fi
log() { echo "build-guest: $*" >&2; }
start=$(date +%s)
# Older guests are dead weight (2 GB each, sparse): keep only the one being built.
rm -rf build/vm && mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/ikbxk-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "kernel $kpkg $kdeb_ver"
(cd "$work" && apt-get download -q "$kpkg=$kdeb_ver" >/dev/null)
mkdir "$work/k"
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/k"
# Debian ships no modules.dep; the guest's modprobe needs it.
depmod -b "$work/k" "$kver"
# Under TCG the decompressor costs ~3.5 s per boot: unpack the ELF vmlinux once here
# (Debian's x86 kernels are xz-compressed and carry a PVH entry note, which is what
# lets qemu's -kernel start the ELF directly).
python3 - "$work/k/boot/vmlinuz-$kver" "$work/vmlinux.xz" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("build-guest: the kernel is not xz-compressed; teach this step its format")
open(sys.argv[2], "wb").write(data[start:])
PY
# The xz stream is followed by the rest of the bzImage: xz reports trailing garbage.
xz -dc --single-stream "$work/vmlinux.xz" > "$out/vmlinux"

log "initramfs"
ird=$work/initrd
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp /usr/bin/busybox "$ird/bin/busybox"
for a in sh mount umount switch_root insmod sleep cat echo mkdir poweroff; do
  ln -s busybox "$ird/bin/$a"
done
# Only what finding the root disk needs; everything else the root's modprobe loads.
for m in virtio_pci virtio_blk crc32c_generic ext4; do
  modprobe -d "$work/k" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++' > "$work/mods"
while read -r m; do
  cp "$m" "$ird/lib/modules/"
  echo "/lib/modules/$(basename "$m")" >> "$ird/modules.order"
done < "$work/mods"
cp "$here/initramfs-init.sh" "$ird/init"
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out/initrd.gz"

log "rootfs (mmdebstrap)"
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
root=$work/root
mmdebstrap --quiet --mode=root --variant=apt --include="$(echo $packages | tr ' ' ,)" \
  bookworm "$root" "$sources" >&2
mkdir -p "$root/lib/modules"
cp -a "$work/k/lib/modules/$kver" "$root/lib/modules/"
# Modules the guest never needs: keep the image small.
rm -rf "$root/lib/modules/$kver/kernel/drivers/"{gpu,media,infiniband,net/wireless,staging,\
scsi,usb,bluetooth,hid,input,iio,sound,mmc,mtd,isdn,video} "$root/lib/modules/$kver/kernel/sound"
depmod -b "$root" "$kver"
log "python packages (requirements.txt + pytest) into /opt/ikebox/site"
.venv/bin/pip install -q --disable-pip-version-check --target "$root/opt/ikebox/site" \
  -r requirements.txt 'pytest>=8,<10' >&2
# Found without PYTHONPATH too: the test harness starts the daemon with PYTHONPATH set
# to the project alone.
echo /opt/ikebox/site > "$root/usr/lib/python3/dist-packages/ikebox-site.pth"
cp "$here/guest-init.sh" "$root/sbin/ikebox-guest-init"
chmod +x "$root/sbin/ikebox-guest-init"
mkdir -p "$root/project" "$root/out"
echo ikbxk-guest > "$root/etc/hostname"
: > "$root/etc/resolv.conf"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
mke2fs -q -t ext4 -L ikebox-root -d "$root" "$out/root.img" 2G >&2
touch "$out/ready"
log "built $out in $(( $(date +%s) - start )) s"
echo "$out"
