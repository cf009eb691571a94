#!/usr/bin/env bash
# Installs everything mirrorlab needs on a Debian machine, as root. Idempotent: each step
# checks first and does nothing when its work is already done.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/.venv"

debian_packages=(openvswitch-switch mininet tcpdump tshark iperf3 chromium iputils-ping
                 ethtool iproute2 nftables netcat-openbsd python3-venv python3-pip procps
                 gcc python3-dev)  # datrie, for contrail-api-cli, builds from source on 3.11
missing=()
for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# No systemd here: ovs-ctl starts ovsdb-server and ovs-vswitchd; it is a no-op when they run.
if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
    echo "setup: starting Open vSwitch"
    /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
    ovs-vsctl --timeout=10 show >/dev/null
fi

# Mininet is packaged for Debian's python3 only: the venv must be made by it and see its packages.
if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
stamp="$venv/.installed-$(sha1sum "$repo/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing mirrorlab and its Python dependencies into $venv"
    log="$venv/pip-install.log"
    if ! "$venv/bin/pip" install --disable-pip-version-check -e "$repo[test]" >"$log" 2>&1; then
        tail -20 "$log" >&2
        echo "setup: pip install failed; the whole log is in $log" >&2
        exit 1
    fi
    # contrail-api-cli's own pins (gevent<1.3) cannot build on Python 3.11: installed without
    # them; the [test] extra brings what it needs and `python -m mirrorlab.apicli` runs it.
    if ! "$venv/bin/pip" install --disable-pip-version-check --no-deps "contrail-api-cli==0.3.0" \
            >>"$log" 2>&1; then
        tail -20 "$log" >&2
        echo "setup: pip install of contrail-api-cli failed; the whole log is in $log" >&2
        exit 1
    fi
    touch "$stamp"
fi
