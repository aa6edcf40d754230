#!/bin/bash
# Runs a command in a brand-new minimal Debian 12 root (debootstrap --variant=minbase: nothing
# installed that the project does not install itself), on a clean clone of this repository's
# HEAD at /src, as root, with ../shared beside it when there is one. Learnt from
# ../shared/tools/fresh-machine.sh.
#
#   bash .ci/fresh-root.sh COMMAND...          (run in /src through bash -c)
#
# The bootstrapped base is cached as a tarball in $PM_CI_CACHE (default /var/cache/pixmill-ci),
# rebuilt when missing or older than 30 days; every run unpacks a clean copy. Downloaded .deb
# files are kept in the cache too (bind-mounted at the root's /var/cache/apt/archives), so a
# run installs every package afresh without fetching what it fetched before.
# Exit status: the command's; 75 when no root could be made at all (no debootstrap, no mirror
# reachable): the caller decides what to do then.
set -u
top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel) || exit 75
cmd=${*:?usage: fresh-root.sh COMMAND...}
cache=${PM_CI_CACHE:-/var/cache/pixmill-ci}
tar=$cache/bookworm-minbase.tar
root=$cache/root
mkdir -p "$cache/archives/partial" || exit 75

unmount_all() {
  for m in var/cache/apt/archives proc sys dev; do umount -l "$root/$m" 2>/dev/null; done
}

if [ -f "$tar" ] && [ -z "$(find "$tar" -mtime +30)" ]; then
  echo "fresh-root: cached base $tar"
else
  command -v debootstrap >/dev/null || { echo "fresh-root: no debootstrap (apt-get install debootstrap)"; exit 75; }
  # this machine's own mirror; $PM_CI_MIRROR overrides it (a dead one shows the fallback)
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  mirror=${mirror:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
  mirror=${PM_CI_MIRROR:-$mirror}
  unmount_all
  rm -rf "$root" "$cache/base"
  echo "fresh-root: debootstrap bookworm from ${mirror:-the default mirror} (a few minutes, once)"
  if ! debootstrap --variant=minbase bookworm "$cache/base" ${mirror:+"$mirror"} >"$cache/debootstrap.log" 2>&1; then
    echo "fresh-root: debootstrap failed (last lines of $cache/debootstrap.log):"
    tail -5 "$cache/debootstrap.log"
    rm -rf "$cache/base"
    exit 75
  fi
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$cache/base/etc/apt/sources.list.d/" &&
      rm -f "$cache/base/etc/apt/sources.list"
  fi
  tar -C "$cache/base" -cf "$tar.new" . && mv "$tar.new" "$tar" || exit 75
  rm -rf "$cache/base"
fi

unmount_all
rm -rf "$root" && mkdir -p "$root" && tar -C "$root" -xf "$tar" || exit 75
git clone -q "$top" "$root/src" || exit 75
[ -d "$top/../shared" ] && cp -r "$top/../shared" "$root/shared"
mount -t proc proc "$root/proc" &&
  mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" &&
  mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" &&
  mount --bind "$cache/archives" "$root/var/cache/apt/archives" || { unmount_all; exit 75; }
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
echo "fresh-root: running '$cmd' in a fresh Debian 12 root on a clone of $(git -C "$top" rev-parse --short HEAD)"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin CI=true \
  bash -c "cd /src && $cmd"
rc=$?
unmount_all
rm -rf "$root"
exit $rc
