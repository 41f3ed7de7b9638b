#!/usr/bin/env bash
# Install what `make` targets need on a fresh Debian machine, and nothing that is already there:
#   - etcd and etcdctl (Debian's etcd-server and etcd-client) when not on PATH and $ETCD_BIN is unset;
#   - nftables and iptables when running as root and missing (network-partition fault tests);
#   - a virtualenv in .venv with this package installed in editable mode with its test/dev extras.
# Idempotent and quick when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

need_apt=()
if [[ -z "${ETCD_BIN:-}" ]] && ! command -v etcd >/dev/null 2>&1; then need_apt+=(etcd-server); fi
if ! command -v etcdctl >/dev/null 2>&1; then need_apt+=(etcd-client); fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then need_apt+=(python3 python3-venv); fi
if ((${#need_apt[@]})); then
    echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
            echo "bootstrap: need root to run 'apt-get install -y ${need_apt[*]}'; run it yourself, or set ETCD_BIN" >&2
            exit 1
        fi
    else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# nftables/iptables for the network-partition fault tests (tests/faults): only as root, since only root can
# use them. Not fatal: without them (or without root) those tests skip with the reason, and nothing else does.
if [[ $(id -u) -eq 0 ]]; then
    need_net=()
    if ! command -v nft >/dev/null 2>&1; then need_net+=(nftables); fi
    if ! command -v iptables >/dev/null 2>&1; then need_net+=(iptables); fi
    if ((${#need_net[@]})); then
        echo "bootstrap: installing ${need_net[*]} with apt-get (network-partition fault tests)" >&2
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_net[@]}" >/dev/null; }; then
            echo "bootstrap: could not install ${need_net[*]}; the network-partition tests will skip" >&2
        fi
    fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: etcdsync needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi

if [[ ! -x $VENV/bin/python ]]; then
    echo "bootstrap: creating $VENV" >&2
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        "$PYTHON" -m venv "$VENV"
    fi
fi

stamp=$VENV/.etcdsync-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    echo "bootstrap: installing etcdsync and its test/dev dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,dev,grpcio]'
    touch "$stamp"
fi
