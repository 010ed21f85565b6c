#!/usr/bin/env bash
# The kernel lab's host-side driver (see lab/README.md). This machine's
# kernel has no IPVS, so the kernel-facing tests run in a qemu VM booting
# a stock Debian kernel whose root is the host's own root, shared read-only
# over 9p. Every host binary (the freshly built agent, ipvsadm, ip, nft)
# therefore runs inside the VM unchanged.
#
# Usage: lab/run.sh [flags for the in-VM test binary, e.g. -test.v -test.run Smoke]
#        lab/run.sh --exec SCRIPT [ARGS]   run a script of the repo in the VM instead
#
# Environment:
#   LAB_TIMEOUT     wall-clock limit for the VM (default 25m; seconds, or with s, m or h).
#                   The in-VM tests get one minute less, so a hung test panics
#                   with its name and stacks instead of being cut off silently.
#   LAB_KERNEL_PKG  kernel package to use instead of what linux-image-amd64 names
#   LAB_MEM, LAB_SMP  VM memory (MiB) and CPUs (default 1024 and 2)
#
# Everything it makes lives in .lab/ at the top of the repository (gitignored).
# A tmpfs covers /tmp inside the VM; lab/init keeps a checkout under /tmp visible.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"
LAB="$REPO/.lab"
KDIR="$LAB/kernel"  # dpkg -x of the kernel package, depmod'ed; reused across runs
OUT="$LAB/out"      # fresh per run; the VM's writable share, mounted at /run/labout
export DEBIAN_FRONTEND=noninteractive

say() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# Go is often only under /usr/local/go (as on CI) without being on PATH.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || die "go is not installed (or not on PATH)"

for a in "$@"; do
	[[ "$a" != *$'\n'* ]] || die "test arguments must not contain newlines"
done
LAB_TIMEOUT="${LAB_TIMEOUT:-25m}"
[[ "$LAB_TIMEOUT" =~ ^([0-9]+)([smh]?)$ ]] ||
	die "LAB_TIMEOUT=$LAB_TIMEOUT: want a whole number of seconds, or of minutes (m) or hours (h)"
case "${BASH_REMATCH[2]}" in
h) timeout_s=$((BASH_REMATCH[1] * 3600)) ;;
m) timeout_s=$((BASH_REMATCH[1] * 60)) ;;
*) timeout_s=$((BASH_REMATCH[1])) ;;
esac
((timeout_s >= 120)) || die "LAB_TIMEOUT=$LAB_TIMEOUT: the lab needs at least 2m"
# The repo path reaches the VM unquoted, in qemu's comma-separated -virtfs
# option and in the shell variables lab/init sources: keep it plain.
[[ "$REPO" =~ ^[A-Za-z0-9/._+-]+$ ]] || die "unsupported characters in repo path: $REPO"

# One run at a time per checkout: a second would wipe the first's .lab/out.
mkdir -p "$LAB"
exec 9>"$LAB/lock"
flock -n 9 || die "another lab/run.sh is using $LAB"

# --- (a) host packages -------------------------------------------------------
apt_updated=0
apt_update() {
	if ((apt_updated == 0)); then
		say "apt-get update"
		apt-get update -qq
		apt_updated=1
	fi
}
need=(qemu-system-x86 busybox-static cpio ipvsadm kmod iproute2 nftables resource-agents keepalived)
missing=()
for p in "${need[@]}"; do
	dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	((EUID == 0)) || die "missing packages (${missing[*]}) and not root to install them"
	apt_update
	say "installing ${missing[*]}"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
((EUID == 0)) || die "run as root: the VM's tests need root inside, and 9p passes host permissions through"

# --- (b) the kernel: fetched, extracted and depmod'ed once -------------------
# The -cloud-amd64 flavour lacks 9p, so this must be the generic flavour.
kernel_pkg() {
	if [[ -n "${LAB_KERNEL_PKG:-}" ]]; then
		echo "$LAB_KERNEL_PKG"
		return
	fi
	local pkg
	pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')"
	if [[ -z "$pkg" ]]; then
		# A fresh machine has no package lists yet.
		apt_update
		pkg="$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')"
	fi
	[[ -n "$pkg" ]] || die "cannot resolve the kernel package from linux-image-amd64"
	echo "$pkg"
}
if [[ ! -s "$KDIR/.ready" ]]; then
	pkg="$(kernel_pkg)"
	say "fetching kernel $pkg (once; cached in .lab/kernel)"
	rm -rf "$LAB/kernel.tmp" && mkdir -p "$LAB/kernel.tmp/deb"
	# apt-get download writes to the current directory; _apt cannot write
	# here, and apt says so on stderr before falling back to root: quiet it.
	(cd "$LAB/kernel.tmp/deb" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2 || true)
	deb="$(find "$LAB/kernel.tmp/deb" -name '*.deb' | head -n1)"
	[[ -n "$deb" ]] || die "apt-get download $pkg produced no .deb"
	dpkg -x "$deb" "$LAB/kernel.tmp/root"
	kver="$(ls "$LAB/kernel.tmp/root/lib/modules")"
	[[ -n "$kver" && -f "$LAB/kernel.tmp/root/boot/vmlinuz-$kver" ]] || die "$deb holds no kernel image"
	depmod -b "$LAB/kernel.tmp/root" "$kver"
	echo "$kver" >"$LAB/kernel.tmp/root/.ready"
	# Swap in whole so an interrupted fetch never looks like a cache.
	rm -rf "$KDIR"
	mv "$LAB/kernel.tmp/root" "$KDIR"
	rm -rf "$LAB/kernel.tmp"
fi
KVER="$(cat "$KDIR/.ready")"
VMLINUZ="$KDIR/boot/vmlinuz-$KVER"
MODDIR="$KDIR/lib/modules/$KVER"
[[ -f "$VMLINUZ" && -f "$MODDIR/modules.dep" ]] || die "broken kernel cache; remove .lab/kernel and re-run"

# --- (c) the initramfs ------------------------------------------------------
# Rebuilt every run (well under a second) so edits to lab/init take effect.
# It holds busybox, just enough modules to reach the host's root over 9p,
# lab/init, and lab.env telling init where the repo and the kernel are.
INITRD="$LAB/initrd.gz"
stage="$LAB/initrd.d"
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,host,mods}
cp /bin/busybox "$stage/bin/busybox"
cp lab/init "$stage/init"
chmod 0755 "$stage/init"
# Order matters: insmod does not resolve dependencies.
boot_mods=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p)
for m in "${boot_mods[@]}"; do
	ko="$(find "$MODDIR/kernel" -name "$m.ko" -print -quit)"
	if [[ -n "$ko" ]]; then
		cp "$ko" "$stage/mods/"
		echo "$m" >>"$stage/mods/order"
	elif ! grep -q "/$m.ko\$" "$MODDIR/modules.builtin"; then
		die "kernel $KVER has no module $m (neither loadable nor built in)"
	fi
done
cat >"$stage/lab.env" <<EOF
LAB_REPO=$REPO
LAB_KDIR=$KDIR
EOF
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >"$INITRD.tmp"
mv "$INITRD.tmp" "$INITRD"

# --- (d) binaries -------------------------------------------------------------
say "building bin/raftlb, bin/raftlb-lab, bin/dataplane.test, .lab/lab.test"
go build -o bin/raftlb ./cmd/raftlb
go build -o bin/raftlb-lab ./lab/cmd/raftlb-lab
go test -c -tags lab -o "$LAB/lab.test" ./lab
# The VIP lease's kernel tests (dataplane/lease_linux_test.go), run on the
# lab's kernel by TestNFTLeaseOnTheLabKernel.
go test -c -o bin/dataplane.test ./dataplane

# --- (e) the results share ----------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT"
# One argument per line; lab/init reads them back verbatim. The path is the
# same inside the VM because the VM's root is the host's root.
if [[ "${1:-}" == --exec ]]; then
	shift
	[[ $# -gt 0 && -x "$1" ]] || die "--exec needs an executable script of the repo, e.g. lab/demo.sh"
	printf '%s\n' "$@" >"$OUT/cmd"
else
	printf '%s\n' "$LAB/lab.test" "-test.timeout=$((timeout_s - 60))s" "$@" >"$OUT/cmd"
fi

# --- (f) boot -----------------------------------------------------------------
# Plain TCG: /dev/kvm exists on these machines but qemu fails setting MSRs.
# -nodefaults: no NIC, no VGA; the only devices are the serial console and
# the two 9p shares. stdin is /dev/null so qemu leaves the terminal alone.
say "booting kernel $KVER (TCG; console also in .lab/out/console.log)"
start=$SECONDS
set +e
timeout --foreground -k 10s "${timeout_s}s" \
	qemu-system-x86_64 -accel tcg -nodefaults -display none -no-reboot \
	-m "${LAB_MEM:-1024}" -smp "${LAB_SMP:-2}" \
	-serial stdio \
	-kernel "$VMLINUZ" -initrd "$INITRD" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-virtfs "local,path=$OUT,mount_tag=labout,security_model=none" \
	-append "console=ttyS0 quiet panic=-1" \
	</dev/null | tee "$OUT/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
say "VM ran for $((SECONDS - start)) s"

# --- (g) result ---------------------------------------------------------------
# failures prints, last (a CI log may show only its tail), which tests
# failed with their own lines and, for a test that hung, where it waited.
failures() {
	local log="$OUT/console.clean.log"
	tr -d '\r' <"$OUT/console.log" >"$log"
	grep -q -E '^(--- FAIL|panic: )' "$log" || return 0
	echo "--- failures (whole console in .lab/out/console.log, per-test logs in .lab/out/Test*/)"
	# A failed test's report: the lines it logged (with -test.v they come
	# before its --- FAIL line; without, after it), at most 30 per test.
	awk '/^=== (RUN|CONT) / { t = $3; n[t] = 0; next }
		/^    / && t != "" { b[t, n[t]++ % 30] = $0; next }
		/^--- FAIL: / { f = $3; k = n[f] < 30 ? 0 : n[f] - 30
			for (i = k; i < n[f]; i++) print b[f, i % 30]
			print; t = ""; on = 1; next }
		on && /^    / { print; next }
		{ on = 0 }' "$log" | head -n 120
	# A test that hit -test.timeout: the panic names it; the test's own
	# goroutine shows which wait in which scenario never returned.
	if grep -q '^panic: test timed out' "$log"; then
		awk '/^panic: test timed out/ { on = 1 } on && /^$/ { exit } on' "$log"
		awk '/^goroutine [0-9]+ / { g = $0; keep = 0; buf = ""; next }
			/^$/ { if (keep) print g "\n" buf; keep = 0; buf = ""; next }
			{ buf = buf $0 "\n"; if ($0 ~ /lab\/[a-z_]+_test\.go:/) keep = 1 }
			END { if (keep) print g "\n" buf }' "$log" | head -n 60
	fi
}
# Figures may come with the serial console's \r; strip it.
tr -d '\r' <"$OUT/console.log" | grep '^figure: ' >"$OUT/figures.txt" || true
if [[ -s "$OUT/figures.txt" ]]; then
	echo "--- figures"
	cat "$OUT/figures.txt"
fi
if ((qemu_rc == 124 || qemu_rc == 137)); then
	failures
	die "the VM did not finish within ${LAB_TIMEOUT}; see .lab/out/console.log"
fi
if [[ ! -s "$OUT/exit" ]]; then
	die "the VM did not report a result (qemu exit $qemu_rc); see .lab/out/console.log"
fi
rc="$(cat "$OUT/exit")"
[[ "$rc" =~ ^[0-9]+$ ]] || die "the VM reported a malformed result '$rc'; see .lab/out/console.log"
if ((rc != 0)); then
	failures
	say "in-VM run FAILED (exit $rc); logs in .lab/out/"
else
	say "in-VM run passed; logs in .lab/out/"
fi
exit "$rc"
