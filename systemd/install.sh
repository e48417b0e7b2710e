#!/usr/bin/env bash
# Install splitfit's systemd units on a board (role "device", optionally "power-log") or a
# server (role "server"): create the `splitfit` system user and the groups the units name,
# put example configs into /etc/splitfit (never overwriting one that exists), install the
# units with the venv path filled in, install the udev rules for the device nodes, enable.
#
# Idempotent: a second run changes nothing and says so. --dry-run prints every step and
# changes nothing. --root DIR installs into a staging tree (for images and tests): all paths
# are prefixed with DIR, units are enabled with `systemctl --root`, and the steps that act on
# the running system (useradd/groupadd, chown, udevadm, daemon-reload, start) are skipped
# with a "skip (--root)" line.
set -euo pipefail

PROG=install.sh
SRC_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
EXAMPLES="$SRC_DIR/../examples"
PREFIX=/opt/splitfit
VENV=""
ROOT=""
DRY=0
ENABLE=1
START=0
JETSON=0
ROLES=()
SVC_USER=splitfit
CONF_DIR=/etc/splitfit
UNIT_DIR=/etc/systemd/system
UDEV_DIR=/etc/udev/rules.d
STATE_DIR=/var/lib/splitfit

usage() {
    cat <<USAGE
usage: $PROG [--role device|server|power-log]... [--prefix DIR] [--venv DIR]
             [--root DIR] [--examples DIR] [--jetson] [--dry-run] [--now] [--no-enable]

  --role R      what to install; repeat or comma-separate (default: device)
  --prefix DIR  where splitfit lives (default: /opt/splitfit)
  --venv DIR    its virtualenv (default: PREFIX/venv); ExecStart= points into VENV/bin
  --root DIR    install into the staging tree DIR instead of / (no useradd/systemctl calls
                on this system; units are enabled with systemctl --root)
  --examples D  where device.toml / server.toml examples are (default: the repo's examples/)
  --jetson      add the Jetson drop-in (nvarguscamerasrc device nodes) to splitfit-device
  --dry-run     print what would be done, change nothing
  --now         also (re)start the units (not with --root)
  --no-enable   install the units but do not enable them
USAGE
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 2
}

say() { printf '%s\n' "$*"; }

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --role) need_arg "$@"; IFS=, read -r -a more <<<"$2"; ROLES+=("${more[@]}"); shift 2 ;;
    --role=*) IFS=, read -r -a more <<<"${1#*=}"; ROLES+=("${more[@]}"); shift ;;
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --venv) need_arg "$@"; VENV=$2; shift 2 ;;
    --venv=*) VENV=${1#*=}; shift ;;
    --root) need_arg "$@"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --examples) need_arg "$@"; EXAMPLES=$2; shift 2 ;;
    --examples=*) EXAMPLES=${1#*=}; shift ;;
    --dry-run | -n) DRY=1; shift ;;
    --now) START=1; shift ;;
    --jetson) JETSON=1; shift ;;
    --no-enable) ENABLE=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ ${#ROLES[@]} -gt 0 ]] || ROLES=(device)
for role in "${ROLES[@]}"; do
    case $role in
    device | server | power-log) ;;
    *) die "unknown role '$role' (expected device, server or power-log)" ;;
    esac
done
# The paths end up in unit files: absolute, and nothing systemd or sed would reinterpret.
for var in PREFIX VENV; do
    val=${!var}
    [[ -z $val && $var == VENV ]] && continue
    [[ $val =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "--${var,,} must be an absolute path without spaces or special characters, got '$val'"
done
VENV=${VENV:-$PREFIX/venv}
VENV=${VENV%/}
if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || die "--root $ROOT is not a directory"
    ROOT=$(cd -- "$ROOT" && pwd)
    [[ $ROOT != / ]] || ROOT=""
fi
[[ -d $EXAMPLES ]] && EXAMPLES=$(cd -- "$EXAMPLES" && pwd)
if [[ $DRY -eq 0 && -z $ROOT && $EUID -ne 0 ]]; then
    die "must run as root to create the '$SVC_USER' user and install units (sudo $0 ...); --dry-run shows what it would do, --root DIR installs into a staging tree"
fi
if [[ $START -eq 1 && -n $ROOT ]]; then
    die "--now cannot start units inside --root $ROOT"
fi
if [[ $START -eq 1 && ! -d /run/systemd/system ]]; then
    die "--now needs a running systemd, and this system was not booted with it"
fi

WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT

# --- helpers: every change goes through these, so --dry-run and --root hold everywhere -----

# run DESCRIPTION CMD...: a change to the running system (skipped under --root).
run() {
    local what=$1
    shift
    if [[ -n $ROOT ]]; then
        say "skip (--root): $what"
    elif [[ $DRY -eq 1 ]]; then
        say "would $what"
    else
        say "$what"
        "$@"
    fi
}

ensure_group() {
    if [[ -n $ROOT ]]; then
        say "skip (--root): ensure system group $1 exists (groupadd --system $1)"
    elif getent group "$1" >/dev/null 2>&1; then
        say "group $1 exists"
    else
        run "create system group $1" groupadd --system "$1"
    fi
}

ensure_user() {
    if [[ -n $ROOT ]]; then
        say "skip (--root): ensure system user $SVC_USER exists (useradd --system)"
        return
    elif getent passwd "$SVC_USER" >/dev/null 2>&1; then
        say "user $SVC_USER exists"
        return
    fi
    run "create system user $SVC_USER (home $STATE_DIR, no login)" \
        useradd --system --gid "$SVC_USER" --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "splitfit daemon" "$SVC_USER"
}

# ensure_dir PATH MODE OWNER:GROUP
ensure_dir() {
    local path=$1 mode=$2 owner=$3 full=$ROOT$1
    if [[ -d $full ]]; then
        say "directory $path exists"
    elif [[ $DRY -eq 1 ]]; then
        say "would create directory $path (mode $mode)"
    else
        mkdir -p -- "$full"
        chmod "$mode" -- "$full"
        say "create directory $path (mode $mode)"
    fi
    set_owner "$path" "$owner"
}

set_owner() {
    local path=$1 owner=$2
    [[ -n $owner ]] || return 0
    if [[ -n $ROOT ]]; then
        return 0 # the staging tree keeps the caller's ownership; see the header comment
    fi
    if [[ $DRY -eq 1 ]]; then
        [[ -e $path ]] && [[ $(stat -c %U:%G -- "$path") == "$owner" ]] || say "would chown $owner $path"
        return 0
    fi
    if [[ $(stat -c %U:%G -- "$path") != "$owner" ]]; then
        chown "$owner" -- "$path"
        say "chown $owner $path"
    fi
}

# check_readable PATH: a kept config the service user cannot read fails the unit at start.
check_readable() {
    local path=$1 owner group mode
    owner=$(stat -c %U -- "$path")
    group=$(stat -c %G -- "$path")
    mode=$(stat -c %a -- "$path")
    if (( 8#$mode & 8#004 )) ||
        [[ $group == "$SVC_USER" && $(( 8#$mode & 8#040 )) -ne 0 ]] ||
        [[ $owner == "$SVC_USER" && $(( 8#$mode & 8#400 )) -ne 0 ]]; then
        return 0
    fi
    say "warning: $path is $(stat -c %U:%G -- "$path") mode $mode: the $SVC_USER user cannot read it (chown root:$SVC_USER $path; chmod 0640 $path)"
}

# install_file SRC DEST MODE OWNER [keep]: atomic (temp file + rename); "keep" never
# overwrites an existing DEST (configs belong to the admin once installed).
install_file() {
    local src=$1 dest=$2 mode=$3 owner=$4 keep=${5:-} full=$ROOT$2 verb
    if [[ -e $full || -L $full ]]; then
        if [[ $keep == keep ]]; then
            say "keep $dest (exists, not overwritten)"
            [[ -n $ROOT ]] || check_readable "$dest"
            return
        fi
        if cmp -s -- "$src" "$full"; then
            say "unchanged $dest"
            set_owner "$dest" "$owner"
            return
        fi
        verb=update
    else
        verb=install
    fi
    if [[ $DRY -eq 1 ]]; then
        say "would $verb $dest (mode $mode)"
        [[ -n $ROOT || -z $owner ]] || say "would chown $owner $dest"
        return
    fi
    local dir tmp
    dir=$(dirname -- "$full")
    mkdir -p -- "$dir"
    tmp=$(mktemp -- "$dir/.splitfit-install.XXXXXX")
    cat -- "$src" >"$tmp"
    chmod "$mode" -- "$tmp"
    [[ -n $ROOT || -z $owner ]] || chown "$owner" -- "$tmp"
    mv -f -- "$tmp" "$full"
    say "$verb $dest (mode $mode)"
}

# render_unit NAME: the unit file with the venv path filled in.
render_unit() {
    local src=$SRC_DIR/$1
    [[ -f $src ]] || die "unit template $src not found"
    sed -e "s#/opt/splitfit/venv#$VENV#g" -- "$src" >"$WORK/$1"
    printf '%s\n' "$WORK/$1"
}

enable_unit() {
    local unit=$1
    if [[ $ENABLE -eq 0 ]]; then
        say "not enabling $unit (--no-enable)"
        return
    fi
    if [[ -n $ROOT ]]; then
        if systemctl --root="$ROOT" is-enabled --quiet "$unit" 2>/dev/null; then
            say "$unit already enabled (in $ROOT)"
        elif [[ $DRY -eq 1 ]]; then
            say "would enable $unit (systemctl --root)"
        else
            systemctl --root="$ROOT" enable --quiet "$unit" 2>/dev/null
            say "enable $unit (systemctl --root)"
        fi
        return
    fi
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        say "$unit already enabled"
    else
        run "enable $unit" systemctl enable --quiet "$unit"
    fi
}

# --- what each role needs --------------------------------------------------------------------

role_unit() { printf 'splitfit-%s.service\n' "$1"; }

role_groups() {
    case $1 in
    device) printf '%s\n' i2c video gpio ;;
    power-log) printf '%s\n' i2c ;;
    server) ;;
    esac
}

# role_config ROLE -> "SRC DEST" of the example config, or nothing.
role_config() {
    case $1 in
    device) printf '%s %s\n' "$EXAMPLES/device.toml" "$CONF_DIR/device.toml" ;;
    server) printf '%s %s\n' "$EXAMPLES/server.toml" "$CONF_DIR/server.toml" ;;
    power-log) printf '%s %s\n' "$SRC_DIR/power-log.env" "$CONF_DIR/power-log.env" ;;
    esac
}

role_binary() {
    case $1 in
    device) printf '%s\n' splitfit-device ;;
    server) printf '%s\n' splitfit-server ;;
    power-log) printf '%s\n' power-log ;;
    esac
}

# --- main ----------------------------------------------------------------------------------

[[ $DRY -eq 1 ]] && say "dry run: nothing will be changed"
[[ -n $ROOT ]] && say "staging root: $ROOT (user, ownership, udev and systemctl calls on this system are skipped)"
say "roles: ${ROLES[*]}; venv: $VENV"

if ! command -v systemctl >/dev/null 2>&1 && [[ $DRY -eq 0 ]]; then
    die "systemctl not found: this script installs systemd units"
fi

ensure_group "$SVC_USER"
ensure_user
declare -A seen_group=()
for role in "${ROLES[@]}"; do
    while read -r g; do
        [[ -n $g && -z ${seen_group[$g]:-} ]] || continue
        seen_group[$g]=1
        ensure_group "$g"
    done < <(role_groups "$role")
done

ensure_dir "$CONF_DIR" 0750 "root:$SVC_USER"

if [[ -z $ROOT && ( -e $VENV/bin/python || -L $VENV/bin/python ) ]]; then
    python_real=$(readlink -m -- "$VENV/bin/python")
    case $python_real in
    /root/* | /home/*)
        say "warning: $VENV/bin/python is $python_real, which ProtectHome=yes hides from the service; make the venv with /usr/bin/python3"
        ;;
    esac
fi

udev=0
units=()
for role in "${ROLES[@]}"; do
    read -r src dest < <(role_config "$role")
    if [[ -f $src ]]; then
        install_file "$src" "$dest" 0640 "root:$SVC_USER" keep
    elif [[ -e $ROOT$dest ]]; then
        say "keep $dest (exists, not overwritten)"
    else
        say "warning: no example config $src; write $dest before starting $(role_unit "$role")"
    fi
    unit=$(role_unit "$role")
    install_file "$(render_unit "$unit")" "$UNIT_DIR/$unit" 0644 ""
    units+=("$unit")
    if [[ $role == device && $JETSON -eq 1 ]]; then
        install_file "$SRC_DIR/jetson.conf" "$UNIT_DIR/$unit.d/jetson.conf" 0644 ""
    fi
    [[ $role == server ]] || udev=1
    bin=$VENV/bin/$(role_binary "$role")
    if [[ ! -x $ROOT$bin ]]; then
        say "warning: $bin does not exist yet; create it: python3 -m venv $VENV && $VENV/bin/pip install 'splitfit[$([[ $role == server ]] && echo server || echo device)]'"
    fi
done

if [[ $udev -eq 1 ]]; then
    rules=60-splitfit-devices.rules
    before=$( [[ -f $ROOT$UDEV_DIR/$rules ]] && cmp -s "$SRC_DIR/$rules" "$ROOT$UDEV_DIR/$rules" && echo same || echo differs)
    install_file "$SRC_DIR/$rules" "$UDEV_DIR/$rules" 0644 ""
    if [[ $before == same ]]; then
        :
    elif [[ -n $ROOT ]] || command -v udevadm >/dev/null 2>&1; then
        run "reload udev rules and re-trigger i2c-dev/gpio/video devices" \
            sh -c 'udevadm control --reload && udevadm trigger --subsystem-match=i2c-dev --subsystem-match=gpio --subsystem-match=video4linux --subsystem-match=media --subsystem-match=dma_heap'
    else
        say "note: udevadm not found; the udev rules take effect at the next boot"
    fi
fi

# sd_booted(): without a running systemd (container, chroot, image build) the unit files and
# the enable symlinks are all there is to do; they take effect at the next boot.
if [[ -n $ROOT || -d /run/systemd/system ]]; then
    run "reload systemd (daemon-reload)" systemctl daemon-reload
else
    say "skip (systemd is not running here): daemon-reload; the units load at the next boot"
fi
for unit in "${units[@]}"; do
    enable_unit "$unit"
    if [[ $START -eq 1 ]]; then
        run "restart $unit" systemctl restart "$unit"
    fi
done

if [[ $DRY -eq 1 ]]; then
    say "dry run done: nothing was changed"
else
    say "done. Edit $CONF_DIR/*.toml, then: systemctl start ${units[*]}; journalctl -fu ${units[0]}"
fi
