#!/usr/bin/env bash
# Unpack Postfix's smtp-source and smtp-sink from Debian's postfix package
# (the package itself conflicts with Exim's, so it is never installed).
# Prints the directory holding the binaries; run the tools with
# LD_LIBRARY_PATH=<dir>/../lib/postfix.
set -euo pipefail
dest="$(cd "$(dirname "$0")" && pwd)/.postfix"
if [ ! -x "$dest/usr/sbin/smtp-sink" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download postfix >/dev/null)
    dpkg -x "$tmp"/postfix_*.deb "$dest"
    rm -rf "$tmp"
fi
echo "$dest/usr/sbin"
