#!/usr/bin/env bash
# vdid's web portal over HTTPS with a real HTTP client (curl) and real PAM (pam_wrapper +
# pam_matrix, nss_wrapper for groups), desktops from the stand-in VMM (tests/tools/vdid_fakevmm):
# security headers, static files (types, ETag, 304), login (cookie flags, wrong password, brute-force
# limit), CSRF and Origin checks, the user's desktops, connect (a one-time console token),
# disconnect, logout, admin calls refused for ordinary users and answered for admins, oversized and
# malformed requests, the WebSocket entry's refusals, and a raw WebSocket console (python3's ssl
# module as the client) that burns its token and reaches the desktop's RFB display. Also: console
# tokens die with their session (logout, the per-user cap), one account minting sessions and
# tokens in a loop does not lock others out, a 200-byte user name finds its own desktop again, and
# a restart of vdid keeps lockouts and web sessions (cookie and CSRF token).
# timeout: 300
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock

command -v curl >/dev/null || t_need "curl is missing (deploy/deps)"
t_require_pam_wrapper nss
kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; [ -n "${KEEP:-}" ] && cp -r "$T" "$KEEP"; t_cleanup' EXIT

mkdir -p "$T/pam"
: >"$T/pam/passdb"; : >"$T/pam/passwd"
printf 'vdi:x:2000:root2\n' >"$T/pam/group"
add_user() { # name uid
    echo "$1:pw-$1:vdi" >>"$T/pam/passdb"
    echo "$1:x:$2:$2:$1:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "$1:x:$2:" >>"$T/pam/group"
}
add_user alice 3001; add_user bob 3002; add_user root2 3003; add_user eve 3004
add_user carol 3005; add_user frank 3006; add_user mallory 3007
LONG=$(printf 'l%.0s' $(seq 1 200)) # a 200-byte user name, in group labusers
add_user "$LONG" 3008
echo "labusers:x:2100:$LONG" >>"$T/pam/group"
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"

# The pool's image: a catalogue entry (the stand-in VMM boots nothing).
t_import_fake_image

cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = 127.0.0.1:0
vmm = $FAKE
memory_budget = 4G
web_max_sessions = 8
web_user_tokens = 4

[auth]
user_lockout_failures = 6
addr_free_failures = 100
addr_lockout_failures = 1000

[pool lab]
image = testdesk
memory = 64M
max_desktops = 6
framebuffer = 320x240
users = alice, bob, mallory
groups = labusers
disconnect_timeout = 30
CONF

# (The DEEPBIND switches and the ASan option matter only in sanitizer builds.)
LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_wait_for 15 grep -q 'web portal listening' "$T/vdid.log" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
port=$(sed -n 's/.*web portal listening on .* port \([0-9]*\).*/\1/p' "$T/vdid.log" | tail -n1)
ca=$T/state/tls/cert.pem
B=https://localhost:$port
O="Origin: $B"
# curl with our CA; -s, status code on the last line
c() { curl -sS --cacert "$ca" --connect-to "localhost:$port:127.0.0.1:$port" --max-time 20 "$@"; }
code() { c -o /dev/null -w '%{http_code}' "$@"; }
jar() { echo "$T/jar-$1"; }
login() { # login USER [PASSWORD] -> status; cookie in jar, CSRF token in $T/csrf-USER
    local u=$1 pw=${2:-pw-$1}
    c -c "$(jar "$u")" -o "$T/login-$u.json" -w '%{http_code}' -H "$O" -H 'Content-Type: application/json' \
        --data "{\"username\":\"$u\",\"password\":\"$pw\"}" "$B/api/login"
    sed -n 's/.*"csrf":"\([^"]*\)".*/\1/p' "$T/login-$u.json" >"$T/csrf-$u"
}
csrf() { cat "$T/csrf-$1"; }
post() { # post USER PATH [JSON] -> body, status in $T/status
    c -b "$(jar "$1")" -H "$O" -H 'Content-Type: application/json' -H "X-CSRF-Token: $(csrf "$1")" \
        -w '\n%{http_code}' --data "${3:-{\}}" "$B$2"
}
get() { c -b "$(jar "$1")" -w '\n%{http_code}' "$B$2"; }
status_of() { tail -n1 <<<"$1"; }

# A slow client (slowloris): half a request, then nothing. Checked at the end.
slow_start=$(date +%s)
{ (printf 'GET / HTTP/1.1\r\nHost: x\r\n'; sleep 17) |
    { timeout 60 openssl s_client -quiet -connect "127.0.0.1:$port" >/dev/null 2>&1; date +%s >"$T/slow.end"; }; } \
    >/dev/null 2>&1 &

# ---- static files and headers
c -D "$T/h-index" -o "$T/index.html" "$B/"
t_check "the portal page is served" grep -q 'id="login-form"' "$T/index.html"
t_check "as HTML" grep -qi '^content-type: text/html; charset=utf-8' "$T/h-index"
t_check "with HSTS" grep -qi '^strict-transport-security: max-age=' "$T/h-index"
t_check "with a CSP that forbids framing" grep -qi "^content-security-policy: .*frame-ancestors 'none'" "$T/h-index"
t_check "and X-Frame-Options" grep -qi '^x-frame-options: DENY' "$T/h-index"
t_check "and nosniff" grep -qi '^x-content-type-options: nosniff' "$T/h-index"
etag=$(sed -n 's/^[Ee][Tt][Aa][Gg]: \(.*\)\r$/\1/p' "$T/h-index")
t_check "pages carry an ETag" test -n "$etag"
t_check "a matching If-None-Match gets 304" test "$(code -H "If-None-Match: $etag" "$B/")" = 304
c -D "$T/h-js" -o /dev/null "$B/app.js"
t_check "scripts are text/javascript" grep -qi '^content-type: text/javascript' "$T/h-js"
t_check "scripts are cached" grep -qi '^cache-control: public, max-age=' "$T/h-js"
c -D "$T/h-novnc" -o "$T/rfb.js" "$B/novnc/core/rfb.js"
t_check "noVNC is served from vdid" grep -q 'export default class RFB' "$T/rfb.js"
t_check "noVNC modules are text/javascript" grep -qi '^content-type: text/javascript' "$T/h-novnc"
t_check "an unknown file is 404" test "$(code "$B/nope.html")" = 404
t_check "no path escapes the web root" test "$(code --path-as-is "$B/../../etc/passwd")" = 404
t_check "POST to a page is 405" test "$(code -X POST "$B/index.html")" = 405
t_check "HEAD works" test "$(code -I "$B/style.css")" = 200
t_check "keep-alive: two requests on one connection" \
    bash -c 'curl -sS --cacert "$1" --connect-to "localhost:$2:127.0.0.1:$2" -o /dev/null -o /dev/null "$3/" "$3/style.css" -w "%{num_connects}\n" | tr -d "\n" | grep -qx 10' _ "$ca" "$port" "$B"

# ---- API without a session
r=$(get nobody /api/me)
t_check "the API wants a session" test "$(status_of "$r")" = 401
c -D "$T/h-api" -o /dev/null "$B/api/me"
t_check "API answers are not cached" grep -qi '^cache-control: no-store' "$T/h-api"
t_check "an unknown API call is 404 (with a session) or 401" test "$(code "$B/api/nothing")" = 401

# ---- login
t_check "a wrong password is refused with 401" test "$(login alice wrong)" = 401
t_check "with a message" grep -q '"error"' "$T/login-alice.json"
t_check "and audited" bash -c '"$1" audit tail -n 20 | grep -q "auth.failed .*user=alice.*service=web"' _ "$VDICTL"
t_check "alice logs in" test "$(login alice)" = 200
t_check "the answer names her and carries a CSRF token" grep -q '"user":"alice","admin":false,"csrf":"' "$T/login-alice.json"
t_check "the cookie is HttpOnly" grep -q '^#HttpOnly_localhost' "$(jar alice)"
c -D "$T/h-login" -o /dev/null -H "$O" -H 'Content-Type: application/json' --data '{"username":"bob","password":"pw-bob"}' "$B/api/login"
t_check "the cookie is Secure, HttpOnly, SameSite=Strict" grep -qi '^set-cookie: vdi_session=.*; HttpOnly; Secure; SameSite=Strict' "$T/h-login"
t_check "login from another origin is refused" \
    test "$(code -H 'Origin: https://evil.example' -H 'Content-Type: application/json' --data '{"username":"alice","password":"pw-alice"}' "$B/api/login")" = 403
t_check "login as a form post is refused" \
    test "$(code -H "$O" --data 'username=alice&password=pw-alice' "$B/api/login")" = 415
t_check "login without a password is 400" \
    test "$(code -H "$O" -H 'Content-Type: application/json' --data '{"username":"alice"}' "$B/api/login")" = 400
r=$(get alice /api/me)
t_check "/api/me with the cookie" grep -q '"user":"alice"' <<<"$r"

# ---- CSRF
r=$(c -b "$(jar alice)" -H "$O" -H 'Content-Type: application/json' -w '\n%{http_code}' --data '{}' "$B/api/connect")
t_check "a POST without the CSRF token is refused" test "$(status_of "$r")" = 403
r=$(c -b "$(jar alice)" -H "$O" -H 'Content-Type: application/json' -H 'X-CSRF-Token: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' -w '\n%{http_code}' --data '{}' "$B/api/connect")
t_check "a POST with a wrong CSRF token is refused" test "$(status_of "$r")" = 403
r=$(c -b "$(jar alice)" -H 'Origin: https://evil.example' -H 'Content-Type: application/json' -H "X-CSRF-Token: $(csrf alice)" -w '\n%{http_code}' --data '{}' "$B/api/connect")
t_check "a POST from another origin is refused" test "$(status_of "$r")" = 403

# ---- desktops, connect
r=$(get alice /api/desktops)
t_check "alice sees her pool" grep -q '"pools":\[{"name":"lab","type":"floating"' <<<"$r"
t_check "and no desktop yet" grep -q '"desktops":\[\]' <<<"$r"
r=$(post alice /api/connect)
t_check "connect answers 200 ($r)" test "$(status_of "$r")" = 200
t_check "with a one-time token and the WebSocket path" grep -q '"ws":"/ws?desktop=[0-9]*&token=[A-Za-z0-9_-]\{43\}"' <<<"$r"
desk=$(sed -n 's/.*"desktop":\([0-9]*\).*/\1/p' <<<"$r" | head -n1)
tok=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$r" | head -n1)
r=$(get alice /api/desktops)
t_check "her desktop is listed in use" grep -q "\"id\":$desk,\"pool\":\"lab\",\"state\":\"in-use\"" <<<"$r"

# ---- the WebSocket entry
ws() { # ws PATH ORIGIN -> the HTTP status line (no TLS-level WebSocket client needed for refusals)
    c -o /dev/null -w '%{http_code}' -H "Origin: $2" -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
        -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' --max-time 3 "$B$1"
}
t_check "a WebSocket from another origin is refused (403)" test "$(ws "/ws?desktop=$desk&token=$tok" https://evil.example)" = 403
t_check "a plain GET of /ws is 426" test "$(code -H "$O" "$B/ws?desktop=$desk&token=$tok")" = 426
t_check "a WebSocket without a token is 400" test "$(ws "/ws?desktop=$desk" "$B")" = 400
python3 "$VDI_SRC/tests/integration/web_wsclient.py" --port "$port" --ca "$ca" --path "/ws?desktop=$desk&token=$tok" >"$T/ws1.out" 2>&1
t_check "the token opens a WebSocket to the desktop's RFB display ($(cat "$T/ws1.out"))" grep -q '^rfb RFB 003.008' "$T/ws1.out"
t_check "which completes the RFB handshake (security None) and gets ServerInit 320x240" grep -q '^serverinit 320x240' "$T/ws1.out"
python3 "$VDI_SRC/tests/integration/web_wsclient.py" --port "$port" --ca "$ca" --path "/ws?desktop=$desk&token=$tok" >"$T/ws2.out" 2>&1
t_check "a reused token is refused with close code 4401 ($(cat "$T/ws2.out"))" grep -q '^close 4401' "$T/ws2.out"
python3 "$VDI_SRC/tests/integration/web_wsclient.py" --port "$port" --ca "$ca" --path "/ws?desktop=$desk&token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" >"$T/ws3.out" 2>&1
t_check "an unknown token is refused with 4401" grep -q '^close 4401' "$T/ws3.out"
t_check "the console's session was recorded" bash -c '"$1" sessions list --all | grep -q "alice"' _ "$VDICTL"

# ---- bob cannot reach alice's desktop, and cannot use admin calls
t_check "bob logs in" test "$(login bob)" = 200
r=$(post bob /api/disconnect "{\"desktop\":$desk}")
t_check "bob's disconnect of alice's desktop touches nothing" grep -q '"disconnected":0' <<<"$r"
r=$(post bob /api/admin/desktops.list)
t_check "admin calls are refused for an ordinary user (403)" test "$(status_of "$r")" = 403
r=$(post bob /api/admin/sessions.disconnect '{"id":1}')
t_check "also state-changing ones" test "$(status_of "$r")" = 403

# ---- admin
t_check "root2 (group vdi, the default admin_group) logs in as admin" test "$(login root2)" = 200
t_check "the answer says admin" grep -q '"admin":true' "$T/login-root2.json"
r=$(post root2 /api/connect)
t_check "connect for a user entitled to no pool is 403 with the reason" grep -q 'not entitled to any desktop pool' <<<"$r"
r=$(post root2 /api/admin/desktops.list)
t_check "an admin lists desktops" grep -q "\"owner\":\"alice\"" <<<"$r"
r=$(post root2 /api/admin/status)
t_check "an admin gets the status" grep -q '"ok":true' <<<"$r"
r=$(post root2 /api/admin/images.list)
t_check "an admin lists images with their versions ($r)" grep -q '"result":\[{"name":"testdesk","current":1,"versions":\[1\]}\]' <<<"$r"
r=$(post root2 /api/admin/no.such)
t_check "an unknown admin command is 400 with a message" grep -q "unknown command 'no.such'" <<<"$r"
r=$(post root2 /api/admin/desktops.show '{"id":"x"}')
t_check "a bad admin argument is 400 with a message" grep -q "must be a whole number" <<<"$r"
# The web admin is no user of the vdid host: a patch from the web sends the script's text; a
# path would be read by vdid (root) on their behalf, so it is refused.
r=$(post root2 /api/admin/image.patch '{"image":"testdesk","script":"/etc/shadow"}')
t_check "a patch naming a host path from the web is refused (400)" test "$(status_of "$r")" = 400
t_check "saying to send the script's text" grep -q "a script or bundle path is read on the vdid host" <<<"$r"
r=$(post root2 /api/admin/image.patch '{"image":"nosuch","script_text":"echo from the web\nexit 0\n"}')
t_check "a patch with the script's text is taken from the web ($r)" grep -q '"result":{"id":"p1"}' <<<"$r"
web_patch_failed() {
    local r; r=$(post root2 /api/admin/image.patch-status '{"id":"p1"}')
    grep -q '"state":"failed"' <<<"$r" && grep -q "no such image" <<<"$r"
}
t_check "(and fails: there is no image nosuch)" t_wait_for 10 web_patch_failed

# ---- disconnect, logout
r=$(post alice /api/connect)
desk2=$(sed -n 's/.*"desktop":\([0-9]*\).*/\1/p' <<<"$r" | head -n1)
t_check "alice reconnects to the same desktop" test "$desk2" = "$desk"
r=$(post alice /api/disconnect "{\"desktop\":$desk}")
t_check "alice disconnects her desktop" grep -q '"disconnected":[1-9]' <<<"$r"
state_is() { "$VDICTL" desktops show "$1" --json | grep -q "\"state\": \"$2\""; }
t_check "it is disconnected" t_wait_for 5 state_is "$desk" disconnected
r=$(post alice /api/logout)
t_check "alice logs out" test "$(status_of "$r")" = 200
r=$(get alice /api/me)
t_check "her cookie no longer works" test "$(status_of "$r")" = 401

# ---- console tokens die with their session
wsc() { python3 "$VDI_SRC/tests/integration/web_wsclient.py" --port "$port" --ca "$ca" --path "$1" 2>&1; }
tok_of() { sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$1" | head -n1; }
desk_of() { sed -n 's/.*"desktop":\([0-9]*\).*/\1/p' <<<"$1" | head -n1; }
t_check "alice logs in again" test "$(login alice)" = 200
r=$(post alice /api/connect)
t_check "and gets a console token" test "$(status_of "$r")" = 200
tok=$(tok_of "$r"); desk=$(desk_of "$r")
r=$(post alice /api/logout)
out=$(wsc "/ws?desktop=$desk&token=$tok")
t_check "a token minted before logout is refused after it (4401: $out)" grep -q '^close 4401' <<<"$out"
t_check "alice logs in" test "$(login alice)" = 200
r=$(post alice /api/connect)
tok=$(tok_of "$r"); desk=$(desk_of "$r")
cp "$(jar alice)" "$T/jar-alice-old"
for i in 1 2 3 4; do login alice >/dev/null; done
out=$(wsc "/ws?desktop=$desk&token=$tok")
t_check "a session dropped for the per-user cap (4) takes its console token along ($out)" grep -q '^close 4401' <<<"$out"
t_check "and its cookie no longer works" test "$(c -b "$T/jar-alice-old" -o /dev/null -w '%{http_code}' "$B/api/me")" = 401
t_check "her newest session works" test "$(status_of "$(get alice /api/me)")" = 200

# ---- one account minting sessions and tokens in a loop does not lock the others out
# (web_max_sessions = 8: 16 tokens in all; web_user_tokens = 4 of each kind per user)
for i in $(seq 1 12); do login mallory >/dev/null; done
for i in $(seq 1 12); do post mallory /api/connect >/dev/null; done
t_check "mallory still has a session" test "$(status_of "$(get mallory /api/me)")" = 200
t_check "bob logs in while mallory mints" test "$(login bob)" = 200
r=$(post bob /api/connect)
t_check "and connects ($(status_of "$r"))" test "$(status_of "$r")" = 200
out=$(wsc "/ws?desktop=$(desk_of "$r")&token=$(tok_of "$r")")
t_check "and his token opens his desktop ($out)" grep -q '^serverinit 320x240' <<<"$out"
for i in $(seq 1 6); do login mallory >/dev/null; post mallory /api/connect >/dev/null; done
t_check "carol logs in after more of it" test "$(login carol)" = 200

# ---- a 200-byte user name finds its own desktop again
t_check "a 200-byte user name logs in" test "$(login "$LONG")" = 200
t_check "under its whole name" grep -q "\"user\":\"$LONG\"" "$T/login-$LONG.json"
r=$(post "$LONG" /api/connect)
t_check "and connects ($(status_of "$r"))" test "$(status_of "$r")" = 200
long_desk=$(desk_of "$r")
r=$(post "$LONG" /api/logout)
t_check "logs out, and in again" test "$(login "$LONG")" = 200
r=$(post "$LONG" /api/connect)
t_check "and gets the same desktop ($long_desk, then $(desk_of "$r"))" test "$(desk_of "$r")" = "$long_desk"
r=$(post root2 /api/admin/desktops.list)
t_check "owned under the whole name" grep -q "\"owner\":\"$LONG\"" <<<"$r"

# ---- malformed and oversized requests
big=$(head -c 20000 /dev/zero | tr '\0' a)
t_check "a body over 16 KiB is 413" \
    test "$(code -H "$O" -H 'Content-Type: application/json' --data "{\"username\":\"$big\",\"password\":\"x\"}" "$B/api/login")" = 413
t_check "headers over 8 KiB are 431" test "$(code -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' b)" "$B/")" = 431
t_check "a target over 2 KiB is 414" test "$(code "$B/$(head -c 3000 /dev/zero | tr '\0' c)")" = 414
t_check "bad JSON is 400" test "$(status_of "$(c -b "$(jar bob)" -H "$O" -H 'Content-Type: application/json' -H "X-CSRF-Token: $(csrf bob)" -w '\n%{http_code}' --data '{nope' "$B/api/disconnect")")" = 400
t_check "PUT is 405" test "$(code -X PUT "$B/api/me")" = 405
raw() { # raw BYTES -> the status line of vdid's answer
    printf "$1" | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$port" -servername localhost 2>/dev/null | head -n1 | tr -d '\r'
}
raw_is() { test "$(raw "$1")" = "$2"; }
t_check "a duplicate Host is 400" raw_is "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" "HTTP/1.1 400 Bad Request"
t_check "a duplicate Content-Length is 400" raw_is "POST /api/login HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}" "HTTP/1.1 400 Bad Request"
t_check "garbage instead of HTTP is 400" raw_is "\x01\x02 garbage\r\n\r\n" "HTTP/1.1 400 Bad Request"
t_check "HTTP/2.0 in a request line is refused" raw_is "GET / HTTP/2.0\r\nHost: x\r\n\r\n" "HTTP/1.1 505 HTTP Version Not Supported"
t_check "a control character in a header is 400" raw_is "GET / HTTP/1.1\r\nHost: x\r\nOrigin: a\x01b\r\n\r\n" "HTTP/1.1 400 Bad Request"
chunk=$(head -c 20480 /dev/zero | tr '\0' a)
t_check "a chunked body over the limit is 413" raw_is "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5000\r\n$chunk\r\n0\r\n\r\n" "HTTP/1.1 413 Content Too Large"
t_check "pipelined requests are answered in order" bash -c 'printf "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$1" 2>/dev/null | grep "^HTTP/1.1" | tr -d "\r" | paste -sd, | grep -qx "HTTP/1.1 200 OK,HTTP/1.1 404 Not Found"' _ "$port"
t_check "a request that does not complete in 15 s is dropped" t_wait_for 40 test -s "$T/slow.end"
slow=$(( $(cat "$T/slow.end") - slow_start ))
t_check "after 15 s, not before (${slow} s)" test "$slow" -ge 14 -a "$slow" -le 22

many_pipelined() { # 300 requests in one go, the last one closing: 300 answers, in order
    { for i in $(seq 1 299); do printf 'GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n'; done
      printf 'GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'; } |
        timeout 20 openssl s_client -quiet -connect "127.0.0.1:$port" 2>/dev/null | grep -a '^HTTP/1.1' | tr -d '\r' >"$T/pipelined"
    test "$(grep -c '^HTTP/1.1 200 OK$' "$T/pipelined")" = 299 && test "$(tail -n1 "$T/pipelined")" = "HTTP/1.1 404 Not Found"
}
t_check "300 pipelined requests are all answered, in order" many_pipelined

# ---- connections per address: 64 held open, the 65th is refused, then served again
python3 - "$port" "$ca" >"$T/hoard.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") for _ in range(64)]
print("holding", len(held), flush=True)
time.sleep(4)
PY
hoarder=$!
t_wait_for 20 grep -q '^holding 64' "$T/hoard.out" || t_fail "could not open 64 connections: $(cat "$T/hoard.out")"
sleep 0.3
t_check "a 65th connection from the same address is refused" test "$(code "$B/" 2>/dev/null)" = 000
wait "$hoarder"
served() { test "$(code "$B/")" = 200; }
t_check "once they are closed, the address is served again" t_wait_for 5 served

# ---- brute force: the same limits as the RFB port (3 free failures, then backoff, ...)
for i in 1 2 3 4; do login eve wrong >/dev/null; done
t0=$(date +%s%N)
login eve wrong >/dev/null
held_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t_check "after 3 failures further attempts are held back (5th: ${held_ms} ms)" test "$held_ms" -ge 700
t_check "and refused with 401" grep -q '"error":"authentication failed"' "$T/login-eve.json"
t_check "vdid is still serving" test "$(code "$B/")" = 200

# ---- a restart keeps lockouts and web sessions
for i in 1 2 3 4 5 6; do login frank wrong >/dev/null; done
t_check "frank is locked out (429)" test "$(login frank)" = 429
t_check "carol's session works" test "$(status_of "$(get carol /api/me)")" = 200
kill -TERM "$vdid"; wait "$vdid"
t_check "vdid stopped cleanly" test $? = 0
LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
restarted() { test "$(grep -c 'web portal listening' "$T/vdid.log")" = 2; }
t_wait_for 15 restarted || t_fail "vdid did not restart: $(tail -5 "$T/vdid.log")"
port=$(sed -n 's/.*web portal listening on .* port \([0-9]*\).*/\1/p' "$T/vdid.log" | tail -n1)
B=https://localhost:$port
O="Origin: $B"
t_check "after a restart frank is still locked out" test "$(login frank)" = 429
t_check "and other users still log in" test "$(login bob)" = 200
r=$(get carol /api/me)
t_check "carol's cookie still works" test "$(status_of "$r")" = 200
t_check "with the same CSRF token" grep -q "\"csrf\":\"$(csrf carol)\"" <<<"$r"
r=$(post carol /api/disconnect '{"desktop":999999}')
t_check "which POSTs still carry" test "$(status_of "$r")" = 200
r=$(post carol /api/logout)
t_check "carol logs out after the restart" test "$(status_of "$r")" = 200
t_check "and her cookie then no longer works" test "$(status_of "$(get carol /api/me)")" = 401
kill -TERM "$vdid"; wait "$vdid"
t_check "vdid stopped cleanly" test $? = 0

# ---- without noVNC the portal still serves (the viewer page says what is missing)
sed -i "s|^web_listen = .*|&\nnovnc_dir = $T/no-novnc|" "$T/vdid.conf"
: >"$T/vdid.log"
t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_wait_for 15 grep -q 'web portal listening' "$T/vdid.log" || t_fail "vdid did not start without noVNC: $(tail -5 "$T/vdid.log")"
port=$(sed -n 's/.*web portal listening on .* port \([0-9]*\).*/\1/p' "$T/vdid.log" | tail -n1)
B=https://localhost:$port
t_check "without noVNC vdid warns" grep -q 'noVNC not found' "$T/vdid.log"
t_check "and still serves the portal" test "$(code "$B/")" = 200
t_check "but not noVNC" test "$(code "$B/novnc/core/rfb.js")" = 404
kill -TERM "$vdid"; wait "$vdid"
t_done
