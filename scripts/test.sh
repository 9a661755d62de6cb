#!/usr/bin/env bash
# Run every test of the workspace: unit tests and the integration tests that
# start the real gateway and drive it with real peers (swaks, Exim 4.96).
# On a fresh Debian machine (as root) the peers are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
[ -x /usr/sbin/exim4 ] || missing+=(exim4-daemon-heavy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/sbin/nsd ] || missing+=(nsd)
command -v ldns-signzone >/dev/null 2>&1 || missing+=(ldnsutils)
[ -x /usr/sbin/unbound ] || missing+=(unbound)
perl -MMail::SRS -e1 >/dev/null 2>&1 || missing+=(libmail-srs-perl)
# dkimpy signs and verifies against mailgate (Debian's python, not pyenv's);
# its ARC signer needs authres.
/usr/bin/python3 -c 'import dkim, nacl, authres' >/dev/null 2>&1 || missing+=(python3-dkim python3-nacl python3-authres)
# SpamAssassin's spamd scans for the BMI-style verdict plugin.
[ -x /usr/sbin/spamd ] || missing+=(spamd)
# Dovecot answers SMTP AUTH delegated to it, and doveadm makes the hashes.
command -v doveadm >/dev/null 2>&1 || missing+=(dovecot-core)
# promtool (Debian's prometheus) lints the /metrics exposition.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Redis is the shared store of a pool of gateways (redis-cli is in
# redis-tools).
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# xmllint validates DMARC reports against RFC 7489's schema.
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
# The C example plugin: clang for wasm32 with wasi-libc.
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v wasm-ld >/dev/null 2>&1 || missing+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || missing+=(libclang-rt-14-dev-wasm32)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing test peers: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" openssl libnet-ssleay-perl libio-socket-ssl-perl >/dev/null
    else
        echo "missing test peers: ${missing[*]} (install them with apt-get, as root)" >&2
        exit 1
    fi
fi

# The toolchain file names the wasm32-wasip2 target; make sure it is there.
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi

# Plugins are wasm32-wasip2 components in their own workspace; the tests
# load the built .wasm files.
cargo build --release --locked --target wasm32-wasip2 --manifest-path plugins/Cargo.toml --target-dir plugins/target
# The example plugins in C, Python and JavaScript, into plugins/target.
plugins/c/reject-list/build.sh
# The C example as it was on contract 0.1: a fixture for the adapter.
plugins/c/reject-list-0.1/build.sh
venv="$PWD/plugins/target/venv"
if [ ! -x "$venv/bin/componentize-py" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check componentize-py==0.25.1
fi
COMPONENTIZE_PY="$venv/bin/componentize-py" plugins/python/reject-list/build.sh
(cd plugins/js/reject-list && npm install --silent --no-audit --no-fund && node build.mjs)
# parsedmarc (PyPI) reads the TLS reports the tests send.
pdm="$PWD/target/parsedmarc"
if ! "$pdm/bin/python" -c 'import parsedmarc' >/dev/null 2>&1; then
    python3 -m venv "$pdm"
    "$pdm/bin/pip" install --quiet --disable-pip-version-check parsedmarc==11.1.0
fi
export MAILGATE_PARSEDMARC_PYTHON="$pdm/bin/python"
# The plugins' own unit tests (their pure logic) run natively.
cargo test --locked --manifest-path plugins/Cargo.toml --target-dir plugins/target -p srs -p dmarc -p arc -p queuefile -p dcc -p bmi -p greylist -p mailgate-plugin-sdk --lib

cargo test --workspace --locked "$@"
