#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make check-systemd: what "make install" puts in place (kekd, kekctl, the
# units, sysusers.d, tmpfiles.d) under a real systemd, booted as PID 1 of a
# PID namespace on a Debian rootfs. Checks socket activation, the PIN
# credential, a client in kek-users and one outside, the metrics directory,
# reload, the watchdog on a frozen (SIGSTOPped) kekd, a start failure that
# must end in "failed", and the journal fields kekd writes. Prints TAP and
# exits non-zero when a check fails.
#
# Usage: check-systemd.sh SRCDIR BUILDDIR SYSCONFDIR SBINDIR BINDIR [MAKE]
# Needs root, unshare/nsenter/setpriv (util-linux) and mmdebstrap
# (scripts/install-deps-systemd.sh). The rootfs is built once per package
# list and kept in $KEKD_SYSTEMD_CACHE (default /var/cache/kekd-check-systemd);
# each run mounts an overlay over it, so the cache is never written. The
# project is installed into the overlay with make install DESTDIR=.
#
# Everything started here is remembered by PID (the launcher and the
# namespace's init: killing init ends every process in the namespace); the
# overlay and the cgroups made here are removed on every exit (trap). Every
# wait is bounded.
set -u

SRCDIR=$1
BUILDDIR=$2
SYSCONFDIR=$3
SBINDIR=$4
BINDIR=$5
MAKE=${6:-make}

CACHE=${KEKD_SYSTEMD_CACHE:-/var/cache/kekd-check-systemd}
MIRROR=${KEKD_SYSTEMD_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What kekd, kekctl and SoftHSM2 need at run time, and systemd (252 in bookworm).
PACKAGES="systemd dbus libp11-kit0 softhsm2 libssl3 libsystemd0 libprotobuf-c1 libinih1 libjson-c5"
PIN="sysd-pin-5c1e"
WATCHDOG_SEC=5

W=""
LAUNCHER_PID=""
INIT_PID=""
CG_DIRS=""

# TAP output (ok, diag), wait_for and dir_remove
. "$SRCDIR/tests/lib/tap.sh"

bail() {
        echo "Bail out! $*"
        exit 1
}

cleanup() {
        # Killing the namespace's init kills every process in it; the launcher then exits.
        if [ -n "$INIT_PID" ]; then
                kill -KILL "$INIT_PID" 2>/dev/null
        fi
        if [ -n "$LAUNCHER_PID" ]; then
                kill -KILL "$LAUNCHER_PID" 2>/dev/null
                wait "$LAUNCHER_PID" 2>/dev/null
        fi
        # The namespace's own mounts went with it; ours is the overlay.
        if [ -n "$W" ] && mountpoint -q "$W/root" 2>/dev/null; then
                umount "$W/root" 2>/dev/null || umount -l "$W/root"
        fi
        # Child cgroups first (systemd made system.slice and friends below payload).
        for d in $CG_DIRS; do
                i=0
                while [ -d "$d" ] && [ $i -lt 50 ]; do
                        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
                        [ -d "$d" ] && sleep 0.2
                        i=$((i + 1))
                done
                [ -d "$d" ] && echo "# cgroup $d left behind" >&2
        done
        if [ -n "$W" ]; then
                dir_remove "$W" 'kekd-check-systemd.*' "${KEEP_TESTDIR:-}"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || bail "check-systemd needs root (namespaces, mounts, cgroups)"
for t in unshare nsenter mountpoint flock mmdebstrap; do
        command -v $t >/dev/null 2>&1 || bail "$t not found: run scripts/install-deps-systemd.sh"
done

# --- The rootfs, cached by package list --------------------------------------
key=$(printf '%s\n' "v1 $SUITE minbase $PACKAGES" | sha256sum | cut -c1-16)
ROOTFS=$CACHE/rootfs-$key
mkdir -p "$CACHE" || bail "cannot create $CACHE"
t0=$(date +%s)
(
        flock -w 900 9 || exit 1
        [ -x "$ROOTFS/lib/systemd/systemd" ] && exit 0
        rm -rf "$ROOTFS.tmp"
        echo "# building the rootfs $ROOTFS (mmdebstrap, a few minutes)" >&2
        # shellcheck disable=SC2086 # the list is split into words on purpose
        mmdebstrap --variant=minbase --include="$(echo $PACKAGES | tr ' ' ,)" \
                "$SUITE" "$ROOTFS.tmp" "$MIRROR" >"$CACHE/mmdebstrap.log" 2>&1 || exit 1
        mv "$ROOTFS.tmp" "$ROOTFS"
) 9>"$CACHE/lock" || { tail -20 "$CACHE/mmdebstrap.log" | sed 's/^/#   | /'; bail "cannot build the rootfs"; }
diag "rootfs $ROOTFS ready in $(($(date +%s) - t0)) s"

W=$(mktemp -d /var/tmp/kekd-check-systemd.XXXXXX) || bail "mktemp"
R=$W/root
mkdir -p "$W/upper" "$W/ovl" "$R"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$W/upper,workdir=$W/ovl" "$R" || bail "cannot mount the overlay"

# --- The project, installed as a package would be ------------------------------
$MAKE -C "$BUILDDIR" install DESTDIR="$R" >"$W/install.log" 2>&1 || { tail -20 "$W/install.log"; bail "make install failed"; }
chroot "$R" ldconfig
# As a package's postinst would: users and groups; test users; the configuration.
chroot "$R" systemd-sysusers >/dev/null 2>&1 || bail "systemd-sysusers failed"
chroot "$R" useradd -u 2001 -G kek-users alice || bail "useradd alice"
chroot "$R" useradd -u 2002 mallory || bail "useradd mallory"
# node_exporter's textfile directory as its package leaves it: root's, 0755.
mkdir -p "$R/var/lib/prometheus/node-exporter"
chmod 0755 "$R/var/lib/prometheus/node-exporter"
ETC=$R$SYSCONFDIR/kekd
mkdir -p "$ETC"
cat >"$ETC/kekd.conf" <<EOF
[hsm]
module = /usr/lib/softhsm/libsofthsm2.so
token = pkcs11:token=kekd-sysd
pin_file = $SYSCONFDIR/kekd/pin

[keys]
refresh_interval = 5
allow_unrecoverable = yes

[access]
admin_group = kek-admins
officer_group = kek-officers

[metrics]
file = /var/lib/prometheus/node-exporter/kekd.prom
interval = 1

[log]
level = info
EOF
sed 's|^directories.tokendir.*|directories.tokendir = /var/lib/kekd/softhsm2/tokens|' \
        "$SRCDIR/contrib/softhsm2-dev.conf" >"$ETC/softhsm2.conf"
printf '%s\n' "$PIN" >"$ETC/pin"
# No consoles: a getty would read the host's terminals.
ln -sf /dev/null "$R/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$R/etc/systemd/system/getty@tty1.service"
# A short watchdog, so a frozen kekd is caught in seconds (the unit says 30 s).
mkdir -p "$R/etc/systemd/system/kekd.service.d"
printf '[Service]\nWatchdogSec=%ss\n' "$WATCHDOG_SEC" >"$R/etc/systemd/system/kekd.service.d/50-check.conf"

# --- cgroups: the launcher and the container's init each in one of their own ----
# In every hierarchy, below the cgroup we are in: launcher/ holds the
# unshare process outside the namespace, payload/ becomes the namespace's
# root cgroup and holds only systemd.
while IFS=: read -r _ ctrl path; do
        if [ -z "$ctrl" ]; then
                m=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
        else
                m=$(awk -v c="$ctrl" '$3 == "cgroup" {
                        n = split(c, want, ","); split($4, opt, ","); hit = 0
                        for (i in want) for (j in opt) if (opt[j] == want[i]) hit++
                        if (hit == n) { print $2; exit } }' /proc/self/mounts)
        fi
        [ -n "$m" ] && [ -d "$m$path" ] || continue
        d=$m${path%/}/kekd-check-systemd.$$
        mkdir -p "$d/launcher" "$d/payload" || bail "cannot create cgroup $d"
        # A v1 cpuset takes no process before it has CPUs and memory nodes.
        if [ -f "$d/cpuset.cpus" ]; then
                for f in cpuset.cpus cpuset.mems; do
                        for c in "$d" "$d/launcher" "$d/payload"; do
                                cat "${c%/*}/$f" >"$c/$f"
                        done
                done
        fi
        CG_DIRS="$CG_DIRS $d"
done </proc/self/cgroup
[ -n "$CG_DIRS" ] || bail "no cgroup hierarchy found"

cat >"$W/init.sh" <<'EOF'
# PID 1 of the new PID namespace, in a private mount namespace: moves into
# payload/, makes the rootfs our root, and execs systemd in a new cgroup
# namespace rooted at payload/.
set -e
R=$1
shift
mount --make-rprivate /
for d in "$@"; do echo $$ >"$d/payload/cgroup.procs"; done
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
mount -t proc proc /proc
umount -l /.oldroot
rmdir /.oldroot
# Without this LoadCredential= leaves an empty directory only root can read.
mount --make-rshared /
exec unshare --cgroup env -i container=kekd-check TERM=dumb /lib/systemd/systemd --system
EOF
# shellcheck disable=SC2086 # CG_DIRS is a list
sh -c 'r=$1; shift; for d in "$@"; do echo $$ >"$d/launcher/cgroup.procs"; done
       exec unshare --pid --fork --mount --uts --ipc sh "$0" "$r" "$@"' "$W/init.sh" "$R" $CG_DIRS \
        >"$W/console.log" 2>&1 &
LAUNCHER_PID=$!
t0=$(date +%s)

init_child() {
        INIT_PID=$(cat "/proc/$LAUNCHER_PID/task/$LAUNCHER_PID/children" 2>/dev/null | awk '{ print $1 }')
        [ -n "$INIT_PID" ] && [ "$(cat "/proc/$INIT_PID/comm" 2>/dev/null)" = systemd ]
}
wait_for 30 init_child || { cat "$W/console.log"; bail "systemd did not start"; }

# cin COMMAND...: runs COMMAND in the container, as root
cin() {
        nsenter -t "$INIT_PID" -m -u -i -p -C -r -w env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
# as USER COMMAND...: runs COMMAND in the container as USER with its groups
as() {
        u=$1
        shift
        cin setpriv --reuid="$u" --regid="$u" --init-groups "$@"
}
booted() {
        s=$(cin systemctl is-system-running 2>/dev/null)
        [ "$s" = running ] || [ "$s" = degraded ]
}
# journal_file: kekd.service's journal (systemd's records too) in $W/unit-journal.txt
journal_file() {
        cin journalctl -u kekd --no-pager -o cat >"$W/unit-journal.txt" 2>&1
        echo "$W/unit-journal.txt"
}
journal_has() {
        grep -qF -- "$1" "$(journal_file)"
}
prop() {
        cin systemctl show -P "$2" "$1" 2>/dev/null
}

wait_for 120 booted || { cin systemctl --failed --no-pager | sed 's/^/#   | /'; bail "systemd did not finish booting"; }
diag "systemd booted in $(($(date +%s) - t0)) s ($(cin systemctl --version | head -1)), state $(cin systemctl is-system-running)"

# --- Socket activation, the credential, the token --------------------------------
ok "tmpfiles.d made the token directory for kekd" \
        cin setpriv --reuid=kekd --regid=kekd --clear-groups test -w /var/lib/kekd/softhsm2/tokens
cin setpriv --reuid=kekd --regid=kekd --clear-groups env SOFTHSM2_CONF="$SYSCONFDIR/kekd/softhsm2.conf" \
        softhsm2-util --init-token --free --label kekd-sysd --pin "$PIN" --so-pin 12345678 >/dev/null ||
        bail "softhsm2-util --init-token failed"
cin systemctl start kekd.socket
ok "kekd.socket listens, kekd.service is not started yet" \
        test "$(prop kekd.socket ActiveState)/$(prop kekd.service ActiveState)" = active/inactive
ok "the socket is root:kek-users 0660" test "$(cin stat -c %U:%G:%a /run/kekd/kekd.sock)" = root:kek-users:660
kekctl_list() {
        cin kekctl list >/dev/null
}
ok "a connection starts kekd (socket activation)" kekctl_list
ok "kekd.service is active, as user kekd" \
        test "$(prop kekd.service ActiveState)/$(cin stat -c %U "/proc/$(prop kekd.service MainPID)")" = active/kekd
# /etc/kekd/pin is root's alone (tmpfiles.d): user kekd can only have it from the credential.
ok "kekd read the PIN from the credential" journal_has "credential 'kekd-pin'"

# --- Clients -----------------------------------------------------------------------
cin kekctl create k1 >/dev/null
cin kekctl grant k1 user:alice --ops wrap,unwrap >/dev/null
head -c 32 /dev/urandom >"$R/tmp/aek"
chmod 0644 "$R/tmp/aek"
ok "alice (in kek-users, granted k1) wraps and unwraps" \
        as alice sh -c 'kekctl wrap k1 --context c </tmp/aek >/tmp/blob.alice && kekctl unwrap --context c </tmp/blob.alice | cmp -s - /tmp/aek'
as mallory kekctl list >"$W/mallory.out" 2>&1
# A wrong context is BLOB_INVALID; SoftHSM2 logs its EVP message (see LOGGING in kekd(8)).
as alice sh -c 'kekctl unwrap --context wrong </tmp/blob.alice' >/dev/null 2>&1
cin journalctl _COMM=kekd -o cat --no-pager | grep EVP_DecryptFinal >"$W/evp.txt"
diag "SoftHSM2's records after one BLOB_INVALID: $(wc -l <"$W/evp.txt"), $(head -c 160 "$W/evp.txt")"
ok "mallory (not in kek-users) cannot connect" grep -q "Permission denied" "$W/mallory.out"

# --- Metrics directory ---------------------------------------------------------------
prom_written() {
        cin test -s /var/lib/prometheus/node-exporter/kekd.prom
}
ok "kekd writes its metrics to node_exporter's directory (tmpfiles.d ACL)" wait_for 20 prom_written
ok "no permission error in kekd's journal" sh -c '! grep -q "Permission denied" "$1"' - "$(journal_file)"

# --- Reload --------------------------------------------------------------------------
pid1=$(prop kekd.service MainPID)
ok "systemctl reload kekd succeeds" cin systemctl reload kekd
reloaded() {
        cin journalctl -u kekd --no-pager -o cat | grep -q "SIGHUP: reloading"
}
ok "kekd reloaded in place (same PID, still active)" \
        test "$(prop kekd.service ActiveState)/$(prop kekd.service MainPID)" = "active/$pid1"
ok "kekd logged the reload" wait_for 10 reloaded

# --- Watchdog on a frozen kekd ---------------------------------------------------------
restarts0=$(prop kekd.service NRestarts)
# MainPID is a PID of the namespace; its host PID is the one to stop.
host_pid=""
for p in $(ps -e -o pid=,comm= | awk '$2 == "kekd" { print $1 }'); do
        if [ "$(awk '/^NSpid:/ { print $3 }' "/proc/$p/status")" = "$pid1" ] &&
                [ "$(readlink "/proc/$p/ns/pid")" = "$(readlink "/proc/$INIT_PID/ns/pid")" ]; then
                host_pid=$p
        fi
done
[ -n "$host_pid" ] && kill -STOP "$host_pid"
restarted() {
        p=$(prop kekd.service MainPID)
        [ "$(prop kekd.service ActiveState)" = active ] && [ "$p" != 0 ] && [ "$p" != "$pid1" ]
}
ok "a frozen kekd (SIGSTOP) is restarted by the watchdog" wait_for 60 restarted
ok "systemd logged the watchdog timeout" journal_has "Watchdog timeout"
ok "the restarted kekd serves alice" \
        as alice sh -c 'kekctl unwrap --context c </tmp/blob.alice | cmp -s - /tmp/aek'
diag "NRestarts $restarts0 -> $(prop kekd.service NRestarts)"

# --- A kekd that cannot start ends in "failed" -------------------------------------------
sed -i 's|^token = .*|token = pkcs11:token=no-such-token-kekd|' "$ETC/kekd.conf"
# reset-failed also clears the start counter: the watchdog's restart must not count here.
cin systemctl reset-failed kekd.service
t0=$(date +%s)
cin systemctl restart kekd >/dev/null 2>&1
failed() {
        [ "$(prop kekd.service ActiveState)" = failed ]
}
ok "kekd.service reaches failed" wait_for 90 failed
diag "failed after $(($(date +%s) - t0)) s, result $(prop kekd.service Result), NRestarts $(prop kekd.service NRestarts)"
ok "systemd stopped it at the start limit" journal_has "Start request repeated too quickly"
diag "kekd.socket: $(prop kekd.socket ActiveState), result $(prop kekd.socket Result)"
ok "a client is refused at once instead of waiting" cin timeout 10 sh -c '! kekctl list >/dev/null 2>&1'

# --- Journal fields --------------------------------------------------------------------
# Every kekd record with an error: MESSAGE= names it (as KEK_ERROR= does), and
# CODE_FILE= is the caller's, never the logger's.
cin journalctl _COMM=kekd -o verbose --no-pager >"$W/journal.txt" 2>&1
awk '
/^[^ ]/ { flush(); msg = ""; err = ""; file = "" }
/^    MESSAGE=/ { msg = substr($0, 13) }
/^    KEK_ERROR=/ { err = substr($0, 15) }
/^    CODE_FILE=/ { file = substr($0, 15) }
END { flush() }
function flush() {
        if (msg == "") return
        records++
        if (file != "") located++
        if (file ~ /(^|\/)daemon\/log\.c$/) logc++
        if (err != "") { errors++; if (index(msg, ": " err) == 0) { bad++; print "#   no reason: " msg " (KEK_ERROR=" err ")" } }
}
END { printf "records=%d located=%d errors=%d noreason=%d logc=%d\n", records, located, errors, bad, logc }
' "$W/journal.txt" >"$W/fields.txt"
sed 's/^#/#  /' "$W/fields.txt" | grep '^#' | head -5
counts=$(tail -1 "$W/fields.txt")
diag "kekd journal records: $counts"
errors=$(echo "$counts" | sed 's/.*errors=\([0-9]*\).*/\1/')
noreason=$(echo "$counts" | sed 's/.*noreason=\([0-9]*\).*/\1/')
logc=$(echo "$counts" | sed 's/.*logc=\([0-9]*\).*/\1/')
located=$(echo "$counts" | sed 's/.*located=\([0-9]*\).*/\1/')
ok "the start failure logged an error record" test "$errors" -gt 0
ok "MESSAGE= of every error record contains the reason" test "$noreason" = 0
ok "CODE_FILE= is the caller's, not daemon/log.c" test "$logc" = 0 -a "$located" -gt 0

exposure=$(cin systemd-analyze security kekd.service 2>/dev/null | sed -n 's/.*Overall exposure level[^:]*: *\([0-9.]*\).*/\1/p')
diag "systemd-analyze security kekd.service: ${exposure:-?}"

echo "1..$tap_n"
[ $tap_failed -eq 0 ] || {
        echo "# $tap_failed of $tap_n checks failed; kekd's journal:"
        cin journalctl -u kekd --no-pager -o short | tail -30 | sed 's/^/#   | /'
        exit 1
}
exit 0
