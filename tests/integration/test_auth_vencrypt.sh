#!/usr/bin/env bash
# VeNCrypt logins end to end: vdi's login (auth_rfb_login_accept) in tests/tools/auth_testserver
# on a loopback port, checked with a real PAM stack (pam_wrapper + pam_matrix, no system users)
# against libvncclient (tests/tools/auth_vncclient, GnuTLS), scripted hostile clients
# (tests/tools/auth_rawclient, OpenSSL) and `openssl s_client`. Each refusal must reach the
# client and the server log, and the server must keep serving afterwards.
# timeout: 180
. "$VDI_SRC/tests/lib.sh"

TOOLS=$VDI_BUILD/tests/tools
t_require_pam_wrapper
command -v openssl >/dev/null || t_need "the openssl command is not installed"
for t in auth_testserver auth_vncclient auth_rawclient; do
    [ -x "$TOOLS/$t" ] || t_fail "$TOOLS/$t is not built"
done
SEC=$libdir/security
t_tmpdir

# ---- A PAM world of our own -----------------------------------------------------------------
mkdir -p "$T/pam"
cat >"$T/passdb" <<EOF
alice:secret:vdi
bob:hunter2:vdi
olduser:oldpw:vdi
EOF
echo olduser >"$T/expired.list"
cat >"$T/pam/vdi" <<EOF
auth required $libdir/pam_wrapper/pam_matrix.so passdb=$T/passdb
account [success=ok default=1] $SEC/pam_listfile.so item=user sense=allow file=$T/expired.list onerr=fail
account requisite $SEC/pam_debug.so acct=acct_expired
account required $libdir/pam_wrapper/pam_matrix.so passdb=$T/passdb
EOF
printf 'auth required %s\naccount required %s\n' "$SEC/pam_deny.so" "$SEC/pam_deny.so" >"$T/pam/other"

# ---- A CA and a server certificate for 127.0.0.1 --------------------------------------------
(
    cd "$T" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 2 -subj /CN=vdi-test-ca &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
            -out srv.csr -subj /CN=localhost &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext &&
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem \
            -days 2 -extfile ext
) >"$T/openssl.log" 2>&1 || t_fail "making test certificates: $(cat "$T/openssl.log")"

# start_server NAME ARGS...: run auth_testserver under pam_wrapper; sets PORT and HPORT.
start_server() {
    local name=$1
    shift
    mkdir -p "$T/state-$name"
    # (The DEEPBIND switch and the ASan option matter only in sanitizer builds; see test_pam.c.)
    t_bg env LD_PRELOAD="$libdir/libpam_wrapper.so" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$T/pam" \
        UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        "$TOOLS/auth_testserver" --state "$T/state-$name" --port 0 --https-port 0 "$@" \
        >"$T/$name.out" 2>"$T/$name.err"
    SERVER_PID=$!
    t_wait_for 10 grep -q '^listening' "$T/$name.out" || {
        cat "$T/$name.err"
        t_fail "server $name did not start"
    }
    PORT=$(sed -n 's/^listening port=\([0-9]*\).*/\1/p' "$T/$name.out")
    HPORT=$(sed -n 's/^listening .*https=\([0-9]*\).*/\1/p' "$T/$name.out")
}
# (In sanitizer builds, libvncclient's and GnuTLS's own leaks at exit are not ours to report.)
vnc() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
        timeout 30 "$TOOLS/auth_vncclient" 127.0.0.1 "$PORT" "$@" >"$T/client.log" 2>&1
}
raw() { timeout 40 "$TOOLS/auth_rawclient" "$PORT" "$@" >"$T/client.log" 2>&1; }
client_says() { grep -q -- "$1" "$T/client.log" || { cat "$T/client.log"; return 1; }; }
server_says() { t_wait_for 5 grep -q -- "$2" "$T/$1.err" "$T/$1.out" || {
    tail -n 20 "$T/$1.err" "$T/$1.out"
    return 1
}; }
count() { cat "$T/$1.err" "$T/$1.out" | grep -c -- "$2"; }

# ---- Server A: configured certificate, short handshake timeout --------------------------------
start_server a --cert "$T/srv.pem" --key "$T/srv.key" --timeout-ms 1500
A_PID=$SERVER_PID

t_check "right password: libvncclient logs in over X509Plain and gets the picture" vnc alice secret "$T/ca.pem"
t_check "  the client saw the frame" client_says "frame ok"
t_check "  the server handed over the session" server_says a "login ok user=alice .*subtype=262"
t_check "  audit: login-ok" server_says a "audit login-ok service=rfb user=alice"

t_expect_exit 1 "wrong password refused" vnc alice wrong "$T/ca.pem"
t_check "  the client was told why (SecurityResult reason)" client_says "authentication failed"
t_check "  audit: login-failed" server_says a "audit login-failed service=rfb user=alice"
t_expect_exit 1 "unknown user refused" vnc mallory secret "$T/ca.pem"
t_check "  with the same reason as a wrong password" client_says "authentication failed"
t_expect_exit 1 "expired account refused" vnc olduser oldpw "$T/ca.pem"
t_check "  the client was told the account expired" client_says "account expired"
t_expect_exit 1 "a client that does not trust the certificate gives up" vnc alice secret
t_check "  the server logged the failed TLS handshake" server_says a \
    'tls peer=127.0.0.1 \(handshake failed\|closed the connection during the handshake\)'

t_check "hostile: HTTP instead of RFB" raw version "GET / HTTP/1.1"
t_check "  refused with a reason" client_says "bad protocol version string"
t_check "  logged" server_says a "handshake refused: bad protocol version string"
t_check "hostile: RFB 3.3" raw version "RFB 003.003"
t_check "  refused with a reason" client_says "RFB 3.3 is not supported"
t_check "hostile: security type None (3.8)" raw sectype 1 8
t_check "  refused with a reason" client_says "security type not offered"
t_check "hostile: VNC authentication (3.7)" raw sectype 2 7
t_check "  refused with SecurityResult failed" client_says "refusal 4 bytes: 00 00 00 01"
t_check "  logged" server_says a "security type that was not offered"
t_check "hostile: Plain username length 0" raw plain 0 5
t_check "  refused with a reason" client_says 'reason="empty username"'
t_check "hostile: Plain password length 0" raw plain 5 0
t_check "  refused with a reason" client_says 'reason="empty password"'
t_check "hostile: Plain username length 4 GiB" raw plain 0xffffffff 4
t_check "  refused with a reason" client_says 'reason="username too long"'
t_check "hostile: Plain password length 2 GiB" raw plain 4 0x7fffffff
t_check "  refused with a reason" client_says 'reason="password too long"'
t_check "  logged" server_says a "handshake refused: password too long"
t_check "hostile: stall after the version" raw stall version
t_check "  logged" server_says a "timed out before TLS"
t_check "hostile: stall where TLS should start" raw stall tls
t_check "  logged" server_says a "timed out in the TLS handshake"
t_check "hostile: stall before the credentials" raw stall plain
t_check "  logged" server_says a "timed out before the credentials"
t_check "hostile: credentials in clear before TLS" raw early
t_check "  logged" server_says a "handshake failed: .*wrong version number"
t_check "hostile: a TLS 1.0-only client after VeNCrypt" raw tls10
t_check "  logged" server_says a "handshake failed: .*unsupported protocol"
t_expect_exit 1 "HTTPS listener: openssl s_client -tls1 refused" \
    timeout 10 openssl s_client -connect "127.0.0.1:$HPORT" -tls1 </dev/null >"$T/sclient.log" 2>&1
t_check "  logged" server_says a "https handshake failed"
echo ping | timeout 10 openssl s_client -connect "127.0.0.1:$HPORT" -quiet >"$T/sclient.log" 2>&1
t_check "HTTPS listener: TLS 1.3 by default" grep -q "hello TLSv1.3" "$T/sclient.log"
(echo R; sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$HPORT" -tls1_2 >"$T/sclient.log" 2>&1
t_check "HTTPS listener: a TLS 1.2 client asking to renegotiate is refused" \
    grep -q "no renegotiation" "$T/sclient.log"
stall_https() { timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HPORT; cat <&3 >/dev/null"; }
t_check "HTTPS listener: a client that never starts TLS is dropped at the handshake timeout" stall_https
t_check "  logged" server_says a "tls peer=127.0.0.1 handshake timed out"
t_check "credentials and ClientInit pipelined: ClientInit reaches the session" raw pipelined alice secret
t_check "  ServerInit came back" client_says "ServerInit 64x48"
t_check "the server is still up" kill -0 "$A_PID"
t_check "  and still logs users in" vnc bob hunter2 "$T/ca.pem"
t_check "no password in any log" bash -c "! grep -q -e secret -e hunter2 -e oldpw '$T/a.err' '$T/a.out'"

# ---- Server B: generated self-signed certificate, TLSPlain offered after X509Plain -------------
start_server b --tlsplain
B_PID=$SERVER_PID
cert=$T/state-b/tls/cert.pem
t_check "a self-signed certificate was generated" test -s "$cert"
t_check "  its key is private" test "$(stat -c %a "$T/state-b/tls/key.pem")" = 600
t_check "  EC P-256" bash -c "openssl x509 -in '$cert' -noout -text | grep -q 'NIST CURVE: P-256'"
fp=$(openssl x509 -in "$cert" -noout -fingerprint -sha256 | sed 's/.*=//')
t_check "  its SHA-256 fingerprint is logged" server_says b "sha256=$fp"
t_check "libvncclient pinning that certificate logs in (X509Plain preferred)" vnc alice secret "$cert"
t_check "  X509Plain was used" server_says b "login ok user=alice .*subtype=262"
kill "$B_PID"
t_check "server B stops cleanly on SIGTERM" t_wait_for 10 grep -q '^stopped' "$T/b.out"
start_server b
t_check "the generated certificate is reused at the next start" server_says b "sha256=$fp"

# ---- Server C: TLSPlain only -----------------------------------------------------------------
start_server c --tlsplain-only
t_check "TLSPlain (anonymous TLS 1.2) logs in without any certificate" vnc alice secret
t_check "  TLSPlain was used" server_says c "login ok user=alice .*subtype=259 tls=TLSv1.2"
t_check "  and the server warned that it is enabled" server_says c "TLSPlain (anonymous TLS) is enabled"
t_expect_exit 1 "TLSPlain: wrong password refused" vnc alice nope

# ---- Server D: lockout -----------------------------------------------------------------------
start_server d --cert "$T/srv.pem" --key "$T/srv.key" --free 1 --backoff-ms 200 --lock-after 3 \
    --lock-ms 60000
for i in 1 2 3; do
    t_expect_exit 1 "lockout: wrong password $i" vnc bob wrong "$T/ca.pem"
done
t_check "  the third failure locked bob out (audit)" server_says d "audit lockout service=rfb user=bob"
t_expect_exit 1 "lockout: the right password is refused while locked out" vnc bob hunter2 "$T/ca.pem"
t_check "  the client was told to try later" client_says "too many failed attempts"
t_check "  audit: refused while locked" server_says d "audit locked service=rfb user=bob"
t_check "  PAM was not asked" test "$(count d 'pam service=vdi user=bob')" = 3
t_check "other users are not locked out" vnc alice secret "$T/ca.pem"
t_done
