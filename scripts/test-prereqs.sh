#!/usr/bin/env bash
# The host packages the Go tests use, installed when missing (make test
# runs this first): Debian's fence-agents (fence_dummy, for the fence
# runner's conformance test), resource-agents (OCF Dummy and Filesystem,
# for the resource runner), python3-aiosmtpd (a real SMTP server for the
# mail alerts), chromium (the status page's browser test) and systemd
# (systemd-analyze verifies the unit and its drop-in). The kernel lab
# installs its own.
set -euo pipefail
need=(fence-agents resource-agents python3-aiosmtpd chromium systemd)
missing=()
for p in "${need[@]}"; do
	dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
((EUID == 0)) || { echo "test-prereqs: missing packages (${missing[*]}) and not root to install them" >&2; exit 1; }
echo "test-prereqs: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
