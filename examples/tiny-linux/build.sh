#!/bin/sh
# Builds the tiny Linux test guest (SPEC section 6) from Debian packages only:
#   OUT/vmlinuz     the kernel that linux-image-amd64 depends on
#   OUT/initrd.img  a gzip'd cpio (newc) initramfs: busybox-static, a few of that kernel's
#                   modules and an /init that prints BLIXARD-GUEST-READY on the serial console
#
# Usage: examples/tiny-linux/build.sh [OUT]      (default: examples/tiny-linux/out)
#
# Needs: apt-get and apt-cache (with package lists: `apt-get update` once), dpkg-deb, cpio,
# gzip, and xz/zstd only if the kernel ships compressed modules. No root: `apt-get download`
# and `dpkg-deb -x` work as any user, and cpio writes every file as owned by root (-R 0:0).
# Cached: when both outputs exist and were built from the same package versions by this same
# script, it prints "up to date" and does nothing; downloaded .debs are kept in OUT/.cache.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/out"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache="$out/.cache"

die() { echo "build.sh: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg-deb cpio gzip sha256sum flock; do
  command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' (Debian packages: apt, dpkg, cpio, gzip, coreutils, util-linux)"
done

# One build at a time per output folder (test files running in parallel may all ask for it).
exec 9>"$out/.lock"
flock 9

# The kernel: whatever linux-image-amd64 currently depends on (e.g. linux-image-6.1.0-56-amd64).
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
[ -n "$kpkg" ] || die "apt-cache knows no dependency of linux-image-amd64; run 'apt-get update' first"
# Candidate versions of both packages, in one apt-cache call (each call loads the whole cache).
versions=$(apt-cache show --no-all-versions "$kpkg" busybox-static 2>/dev/null | awk '/^Package:/ { p = $2 } /^Version:/ { print p, $2 }')
kver=$(echo "$versions" | awk -v p="$kpkg" '$1 == p { print $2; exit }')
bbver=$(echo "$versions" | awk '$1 == "busybox-static" { print $2; exit }')
[ -n "$kver" ] || die "apt-cache has no version of $kpkg"
[ -n "$bbver" ] || die "apt-cache has no version of busybox-static"

inputs="kernel=$kpkg $kver
busybox-static=$bbver
build.sh=$(sha256sum "$here/build.sh" | cut -d' ' -f1)"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/inputs.txt" ] \
   && [ "$(cat "$out/inputs.txt")" = "$inputs" ]; then
  echo "tiny-linux: up to date in $out ($kpkg $kver, busybox $bbver)"
  exit 0
fi

# Download into the cache (apt-get download writes into the current directory). As root, apt
# would try to drop to its _apt user, who may not be able to write here: tell it not to.
mkdir -p "$cache"
deb_of() { # the cached .deb of package $1 at version $2, downloading it if needed
  f=$(ls "$cache/$1"_*.deb 2>/dev/null | head -n1 || true)
  if [ -n "$f" ] && [ "$(dpkg-deb -f "$f" Version)" = "$2" ]; then echo "$f"; return; fi
  rm -f "$cache/$1"_*.deb
  (cd "$cache" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "$1=$2" >&2) \
    || die "apt-get download $1=$2 failed (is the Debian mirror reachable?)"
  ls "$cache/$1"_*.deb
}
kdeb=$(deb_of "$kpkg" "$kver")
bbdeb=$(deb_of busybox-static "$bbver")

work=$(mktemp -d "${TMPDIR:-/tmp}/tiny-linux.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bbdeb" "$work/busybox"

vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -n1)
[ -f "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-*"
moddir=$(ls -d "$work"/kernel/lib/modules/* "$work"/kernel/usr/lib/modules/* 2>/dev/null | head -n1)
[ -d "$moddir" ] || die "$kpkg has no lib/modules/<version>"

root="$work/root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/lib/modules" \
  "$root/etc/acpi/PWRF/00000080" "$root/www" "$root/var/run"
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"

# Modules, with what they depend on (read from each module's .modinfo), in load order.
# evdev then button are what ACPI power-button events need (button reports the event through an
# input device; busybox acpid reads it from /dev/input/event*); the virtio ones give the guest a
# NIC for hostfwd tests. Debian may compress modules (.ko.xz, .ko.zst): they are stored plain.
module_file() { find "$moddir/kernel" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -n1; }
plain_module() { # writes module $1, decompressed, to $root/lib/modules/$1.ko
  f=$(module_file "$1")
  [ -n "$f" ] || die "$kpkg has no module $1"
  case "$f" in
    *.ko.xz) xz -dc "$f" >"$root/lib/modules/$1.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$root/lib/modules/$1.ko" ;;
    *) cp "$f" "$root/lib/modules/$1.ko" ;;
  esac
}
order=""
add_module() { # depth first, so that dependencies come first in $order
  case " $order " in *" $1 "*) return ;; esac
  plain_module "$1"
  deps=$(tr '\0' '\n' <"$root/lib/modules/$1.ko" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' ')
  for d in $deps; do add_module "$(echo "$d" | tr '-' '_')"; done
  order="$order $1"
}
for m in evdev button virtio_pci virtio_net; do add_module "$m"; done
echo "$order" | tr ' ' '\n' | sed '/^$/d' >"$root/etc/modules"

# ACPI: QEMU's system_powerdown presses the power button; acpid runs everything in this directory.
cat >"$root/etc/acpi/PWRF/00000080/poweroff" <<'EOF'
#!/bin/sh
echo "tiny-linux: power button pressed, powering off"
poweroff -f
EOF
chmod 0755 "$root/etc/acpi/PWRF/00000080/poweroff"

echo "blixard tiny-linux" >"$root/www/index.html"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
export PATH=/bin

for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m.ko" || echo "tiny-linux: insmod $m failed"
done
acpid -d -c /etc/acpi &

hostname tiny-linux
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  # QEMU user-mode networking: the guest is 10.0.2.15, the gateway 10.0.2.2.
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  httpd -p 80 -h /www
fi

echo "BLIXARD-GUEST-READY $(uname -r)"
# PID 1 must never exit (the kernel would panic); it sleeps, and reaps what acpid leaves.
while :; do sleep 3600 & wait; done
EOF
chmod 0755 "$root/init"

# Fixed timestamps and sorted names: the same inputs give the same initrd.img, byte for byte.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
  | gzip -9n >"$work/initrd.img"
cp "$vmlinuz" "$work/vmlinuz"

# Replace the outputs only once both are complete, then record what they were built from.
mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
printf '%s\n' "$inputs" >"$out/inputs.txt"
echo "tiny-linux: built $out/vmlinuz and $out/initrd.img ($kpkg $kver, busybox $bbver, modules:$order)"
