#!/usr/bin/env bash
# courier.sh - finds Courier's POP3 daemon (courierpop3d), or fetches the
# Debian packages (apt-get download, no installation: nothing under /etc or
# /usr is changed) and unpacks them into a cache directory.
#
# Prints COURIERPOP3D=<path> and LD_LIBRARY_PATH=<dirs> on success; exits 3
# with a hint when neither is possible.
#
# Env: COURIER_DIR [${TMPDIR:-/tmp}/pop3-peers-courier]
set -euo pipefail

installed=/usr/lib/courier/courier/courierpop3d
if [ -x "$installed" ]; then
  echo "COURIERPOP3D=$installed"
  echo "LD_LIBRARY_PATH="
  exit 0
fi

dir=${COURIER_DIR:-${TMPDIR:-/tmp}/pop3-peers-courier}
root=$dir/root
bin=$root/usr/lib/courier/courier/courierpop3d
if [ ! -x "$bin" ]; then
  mkdir -p "$dir/debs"
  if ! (cd "$dir/debs" && apt-get download courier-pop courier-base courier-authlib \
        libcourier-unicode4 >"$dir/download.log" 2>&1); then
    echo "cannot fetch Courier: apt-get download courier-pop courier-base courier-authlib libcourier-unicode4 failed (see $dir/download.log); or install courier-pop" >&2
    exit 3
  fi
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
fi
if [ ! -x "$bin" ]; then
  echo "no courierpop3d in the Courier packages" >&2
  exit 3
fi
echo "COURIERPOP3D=$bin"
echo "LD_LIBRARY_PATH=$(find "$root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)"
