#!/usr/bin/env bash
# deploy/demo.sh: called by `make demo` after the build (programs in $VDI_BIN, testdesk built).
# Imports the testdesk golden image into a catalogue under ./var, writes a demo configuration
# there, makes a local account `vdi-demo` with a random password (once; the password is kept in
# var/demo-password), then runs vdid in the foreground. Ctrl-C stops vdid; the desktops keep
# running and the next `make demo` re-attaches to them (stop them with `vdictl desktops destroy`).
#
# Environment: VDI_DEMO_LISTEN (default 0.0.0.0:5900), VDI_DEMO_WEB_LISTEN (the web portal,
# default 0.0.0.0:8443), VDI_DEMO_DIR (default ./var).
set -euo pipefail
src=${VDI_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
bin=${VDI_BIN:-$src/build/bin}
var=${VDI_DEMO_DIR:-$src/var}
listen=${VDI_DEMO_LISTEN:-0.0.0.0:5900}
web_listen=${VDI_DEMO_WEB_LISTEN:-0.0.0.0:8443} # the web portal (docs/api.md)
user=vdi-demo
elf=$src/build/testdesk/testdesk.elf
disk=$src/build/testdesk/system.qcow2

die() { echo "make demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the demo creates the local account $user, and vdi-vmm needs /dev/kvm"
[ -c /dev/kvm ] || die "/dev/kvm is missing: desktops are KVM virtual machines"
[ -x "$bin/vdid" ] && [ -x "$bin/vdi-vmm" ] && [ -x "$bin/vdictl" ] || die "programs missing in $bin (make)"
[ -f "$elf" ] && [ -f "$disk" ] || die "testdesk missing (make testdesk)"

mkdir -p "$var"
chmod 0700 "$var"
state=$var/state
run=$var/run
export VDI_ADMIN_SOCKET=$run/vdid.sock

# The golden image: testdesk, imported once (a new version when the build changed).
if ! "$bin/vdictl" image show testdesk --state "$state" >/dev/null 2>&1; then
    echo "make demo: importing the testdesk golden image"
    "$bin/vdictl" image import testdesk "$disk" --kernel "$elf" --state "$state" -q \
        --notes "make demo" >/dev/null
fi

# The account: local, no home, no shell; the password is ours to show.
pwfile=$var/demo-password
if ! id "$user" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin --comment "vdi demo" "$user"
    rm -f "$pwfile"
fi
if [ ! -s "$pwfile" ]; then
    (umask 077; head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 12 >"$pwfile")
    echo "$user:$(cat "$pwfile")" | chpasswd
fi
password=$(cat "$pwfile")

# PAM service "vdi": the system's usual password stack, if the admin has not set one up.
if [ ! -e /etc/pam.d/vdi ]; then
    printf '# vdi (written by make demo): passwords as for login\n@include common-auth\n@include common-account\n' \
        >/etc/pam.d/vdi
fi

cat >"$var/vdid.conf" <<CONF
# Written by make demo. See docs/config.md.
[vdid]
state_dir = $state
run_dir = $run
listen = $listen
web_listen = $web_listen
vmm = $bin/vdi-vmm
pam_service = vdi

[pool demo]
image = testdesk
type = floating
memory = 256M
framebuffer = 1024x768
min_spares = 1
max_desktops = 4
users = $user
disconnect_timeout = 10m
CONF
"$bin/vdid" --check-config -c "$var/vdid.conf" >/dev/null

port=${listen##*:}
host=${listen%:*}
if [ "$host" = 0.0.0.0 ] || [ "$host" = "[::]" ]; then
    host=$(hostname -I 2>/dev/null | awk '{print $1}')
    host=${host:-127.0.0.1}
fi
cat <<EOF

  vdi demo
  --------
  address:   $host port $port (RFB over TLS: VeNCrypt X509Plain)
  user:      $user
  password:  $password
  TLS cert:  $state/tls/cert.pem (self-signed, made at vdid's first start; copy it to the viewer)

  connect with TigerVNC:
    vncviewer -SecurityTypes X509Plain -X509CA $state/tls/cert.pem $host::$port
  or with a browser:
    https://$host:${web_listen##*:}/   (accept the self-signed certificate)

  admin:     VDI_ADMIN_SOCKET=$run/vdid.sock $bin/vdictl status | desktops list | sessions list
  metrics:   http://127.0.0.1:9600/metrics   (Prometheus text format, loopback only)
  stop:      Ctrl-C (desktops keep running; the next make demo re-attaches)

EOF
exec "$bin/vdid" -c "$var/vdid.conf"
