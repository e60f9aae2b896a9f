#!/usr/bin/env bash
# Prepare this machine for the eBPF collector (collectors/ebpf/) and its tests.
#
# Installs Debian's BCC (python3-bpfcc; PyPI's "bcc" is an unrelated package),
# kernel headers and curl, links /lib/modules/$(uname -r)/{build,source} to the
# installed headers when the running kernel has none of its own, mounts tracefs,
# and makes the `bcc` package (only that one) importable from the project venv.
#
# Usage: scripts/setup_ebpf.sh [VENV]     (default: .venv)
# Idempotent and quiet when everything is in place. Never fails the build: on a
# machine where it cannot act (not root, no apt) it says why and exits 0.
set -u

VENV="${1:-.venv}"
say() { echo "setup_ebpf: $*" >&2; }

if [ "$(uname -s)" != "Linux" ]; then
    say "not Linux; eBPF collector unavailable, skipping."
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    say "not root; skipping (run as root to install python3-bpfcc, kernel headers and mount tracefs)."
    exit 0
fi

# 1. Debian packages.
need=()
for pkg in python3-bpfcc linux-headers-amd64 curl openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get not found; install ${need[*]} by hand. Skipping."
        exit 0
    fi
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq "${need[@]}"; } >/tmp/setup_ebpf_apt.log 2>&1; then
        say "apt-get install ${need[*]} failed (see /tmp/setup_ebpf_apt.log); skipping."
        exit 0
    fi
fi

# 2. Kernel headers where BCC looks for them.
kver="$(uname -r)"
mod="/lib/modules/$kver"
if [ ! -e "$mod/build/include" ]; then
    hdr="$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1)"
    if [ -n "$hdr" ]; then
        mkdir -p "$mod"
        ln -sfn "$hdr" "$mod/build"
        common="${hdr%-amd64}-common"
        [ -d "$common" ] && ln -sfn "$common" "$mod/source"
        say "linked $mod/build -> $hdr"
    else
        say "no /usr/src/linux-headers-*-amd64 found; BCC cannot compile programs."
    fi
fi
if [ ! -e "$mod/source" ] && [ -L "$mod/build" ]; then
    common="$(readlink "$mod/build")"
    common="${common%-amd64}-common"
    [ -d "$common" ] && ln -sfn "$common" "$mod/source"
fi

# 3. tracefs.
if [ ! -e /sys/kernel/tracing/events ]; then
    mkdir -p /sys/kernel/tracing 2>/dev/null
    if mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; then
        say "mounted tracefs at /sys/kernel/tracing"
    else
        say "could not mount tracefs at /sys/kernel/tracing."
    fi
fi

# 4. Only the bcc package of Debian's dist-packages, visible from the venv.
if [ -d "$VENV" ]; then
    py="$VENV/bin/python"
    if [ -x "$py" ]; then
        site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)"
        src=/usr/lib/python3/dist-packages/bcc
        if [ -n "$site" ] && [ -d "$src" ]; then
            if [ "$(readlink "$site/bcc" 2>/dev/null)" != "$src" ]; then
                rm -rf "${site:?}/bcc"
                ln -s "$src" "$site/bcc"
                say "linked $site/bcc -> $src"
            fi
        fi
    fi
else
    say "venv $VENV not found; bcc not linked into it."
fi
exit 0
