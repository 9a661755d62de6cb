#!/usr/bin/env bash
# Build mailgate and its bundled plugins and install them under a prefix:
#
#   scripts/install.sh [--prefix /usr/local] [--sysconfdir DIR] [--destdir DIR]
#                      [--profile release|debug] [--no-build]
#
# Installs PREFIX/bin/mailgate, the bundled plugins (SRS, reject-list, ARC,
# DMARC, queuefile, BMI, DCC) in PREFIX/lib/mailgate/plugins/, the systemd
# unit in PREFIX/lib/systemd/system/, the README and docs in
# PREFIX/share/doc/mailgate/, a logrotate file in SYSCONFDIR/logrotate.d/,
# and, unless one is there, a starting config SYSCONFDIR/mailgate/mailgate.toml:
# the embedded default with data in /var/lib/mailgate, the log in
# /var/log/mailgate and the plugin paths pointing at the installed ones
# (an existing config is never overwritten: the new one is written beside
# it as mailgate.toml.new). SYSCONFDIR is /etc for the prefix /usr, else
# PREFIX/etc. --destdir stages everything under another root (packaging).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
sysconfdir=
destdir=
profile=release
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --sysconfdir) sysconfdir=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
    esac
done
case "$profile" in release | debug) ;; *) echo "install.sh: --profile is release or debug" >&2; exit 2 ;; esac
if [ -z "$sysconfdir" ]; then
    if [ "$prefix" = /usr ]; then sysconfdir=/etc; else sysconfdir=$prefix/etc; fi
fi
bundled="srs reject_list arc dmarc queuefile bmi dcc greylist"

if [ "$build" = 1 ]; then
    rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    if [ "$profile" = release ]; then
        cargo build --release --locked -p mailgate
    else
        cargo build --locked -p mailgate
    fi
    cargo build --release --locked --target wasm32-wasip2 --manifest-path plugins/Cargo.toml --target-dir plugins/target
fi
bin="target/$profile/mailgate"
wasm=plugins/target/wasm32-wasip2/release
[ -x "$bin" ] || { echo "install.sh: $bin is missing (run without --no-build)" >&2; exit 1; }
for p in $bundled; do
    [ -f "$wasm/$p.wasm" ] || { echo "install.sh: $wasm/$p.wasm is missing (run without --no-build)" >&2; exit 1; }
done

root="$destdir"
plugdir="$prefix/lib/mailgate/plugins"
docdir="$prefix/share/doc/mailgate"
install -d -m 0755 "$root$prefix/bin" "$root$plugdir" "$root$prefix/lib/systemd/system" \
    "$root$docdir" "$root$sysconfdir/logrotate.d"
install -d -m 0750 "$root$sysconfdir/mailgate"
install -m 0755 "$bin" "$root$prefix/bin/mailgate"
for p in $bundled; do
    install -m 0644 "$wasm/$p.wasm" "$root$plugdir/$p.wasm"
done
sed -e "s|@BINDIR@|$prefix/bin|g" -e "s|@SYSCONFDIR@|$sysconfdir|g" -e "s|@DOCDIR@|$docdir|g" \
    dist/mailgate.service >"$root$prefix/lib/systemd/system/mailgate.service"
chmod 0644 "$root$prefix/lib/systemd/system/mailgate.service"
install -m 0644 dist/mailgate.logrotate "$root$sysconfdir/logrotate.d/mailgate"
install -m 0644 README.md "$root$docdir/README.md"
cp -r docs "$root$docdir/"

conf="$root$sysconfdir/mailgate/mailgate.toml"
target="$conf"
[ -e "$conf" ] && target="$conf.new"
"$bin" config default |
    sed -e 's|^data_dir = "data"$|data_dir = "/var/lib/mailgate"|' \
        -e 's|^mainlog = "{data_dir}/log/mainlog"$|mainlog = "/var/log/mailgate/mainlog"|' \
        -e "s|plugins/target/wasm32-wasip2/release/|$plugdir/|g" >"$target"
chmod 0640 "$target"
echo "installed mailgate under ${root:-}$prefix (config: $target)"
[ "$target" = "$conf" ] || echo "kept the existing $conf; the new default is beside it"
