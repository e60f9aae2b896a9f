#!/usr/bin/env bash
# System packages the tests need, installed only when running as root (CI, the dev
# machines here). Elsewhere it says what is skipped and exits 0.
set -u
VENV="${1:-.venv}"
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" != 0 ]; then
  echo "setup: not root: the eBPF tests will be skipped (they need root and BCC)."
  exit 0
fi
need=()
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# nginx: the tests load `apiward ratelimits --format nginx` into the real server (on 127.0.0.1).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start services (nginx would listen on port 80 of every interface):
  # policy-rc.d answering 101 tells invoke-rc.d not to, for the length of the install.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || echo "setup: could not install ${need[*]}"
  [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
fi
if [ -f "$here/setup_ebpf.sh" ]; then
  bash "$here/setup_ebpf.sh" "$VENV" || echo "setup: eBPF setup failed; the eBPF tests will say why they skip."
fi
exit 0
