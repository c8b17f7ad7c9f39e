#!/usr/bin/env python3
"""tests/integration/flood_client.py: the misbehaving and the ordinary clients of
test_vdid_floods.sh, all on loopback, bounded in count and time.

  idle HOST PORT N [--src ADDR] [--hold S]
      open N TCP connections from ADDR and send nothing; after a second, print
      "held=H closed=C" (closed: reset or closed by the server), keep the held ones S seconds.
  flood HOST PORT [--src ADDR] [--secs S] [--max N]
      open connections as fast as possible for S seconds (at most N attempts), keeping those the
      server keeps and dropping those it resets; print "attempts=A held=H".
  rfb-login HOST PORT USER-HEX PASSWORD --ca CERT [--src ADDR]
      RFB 3.8 VeNCrypt X509Plain login (the user name given in hex, so that it may be any
      bytes); exit 0 when SecurityResult says OK, 3 when it says failed, 2 on a broken connection.
  tls HOST PORT --ca CERT [--src ADDR] [--count N]
      N TLS handshakes one after the other; print "handshakes=N ms_each=X".
  pipeline HOST PORT USER PASSWORD --ca CERT [--count N] [--conns C]
      C TLS connections one after the other, each carrying N pipelined POST /api/login requests
      sent at once; read each until the server closes; print "responses=R statuses=S1,S2,..."
      per connection.
"""
import argparse
import re
import select
import socket
import ssl
import struct
import sys
import time


def connect(host, port, src, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    return s


def closed_by_server(s):
    """True when the server reset or closed @s (data waiting means it is alive)."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def cmd_idle(a):
    socks, reset = [], 0
    for _ in range(a.n):
        try:
            socks.append(connect(a.host, a.port, a.src))
        except ConnectionResetError:
            reset += 1  # reset so soon that connect() itself saw it
    time.sleep(1.0)
    held = [s for s in socks if not closed_by_server(s)]
    print("held=%d closed=%d" % (len(held), a.n - len(held)), flush=True)
    time.sleep(a.hold)
    for s in socks:
        s.close()


def cmd_flood(a):
    kept, attempts, end = [], 0, time.monotonic() + a.secs
    while time.monotonic() < end and attempts < a.max:
        try:
            s = connect(a.host, a.port, a.src, timeout=1.0)
        except OSError:
            continue
        attempts += 1
        kept.append(s)
        if attempts % 50 == 0:
            alive = []
            for k in kept:
                if closed_by_server(k):
                    k.close()
                else:
                    alive.append(k)
            kept = alive
    # Connections the kernel completed but vdid has not accepted yet look alive from here: give
    # vdid a moment to drain its listen backlog (and reset what is over the cap) before counting.
    time.sleep(1.0)
    held = sum(1 for k in kept if not closed_by_server(k))
    print("attempts=%d held=%d" % (attempts, held), flush=True)
    for k in kept:
        k.close()


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("connection closed")
        b += c
    return b


def cmd_rfb_login(a):
    user = bytes.fromhex(a.user_hex)
    try:
        s = connect(a.host, a.port, a.src, timeout=10.0)
        if recv_exact(s, 12) != b"RFB 003.008\n":
            return 2
        s.sendall(b"RFB 003.008\n")
        n = recv_exact(s, 1)[0]
        types = recv_exact(s, n)
        if 19 not in types:
            return 2
        s.sendall(bytes([19]))
        recv_exact(s, 2)  # VeNCrypt 0.2
        s.sendall(b"\x00\x02")
        if recv_exact(s, 1) != b"\x00":
            return 2
        n = recv_exact(s, 1)[0]
        subs = struct.unpack(">%dI" % n, recv_exact(s, 4 * n))
        if 262 not in subs:
            return 2
        s.sendall(struct.pack(">I", 262))
        if recv_exact(s, 1) != b"\x01":
            return 2
        ctx = ssl.create_default_context(cafile=a.ca)
        ctx.check_hostname = False
        t = ctx.wrap_socket(s, server_hostname="localhost")
        pw = a.password.encode()
        t.sendall(struct.pack(">II", len(user), len(pw)) + user + pw)
        result = struct.unpack(">I", recv_exact(t, 4))[0]
        t.close()
        return 0 if result == 0 else 3
    except (OSError, EOFError, ssl.SSLError) as e:
        print("rfb-login: %s" % e, file=sys.stderr)
        return 2


def cmd_tls(a):
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.check_hostname = False
    start = time.monotonic()
    for _ in range(a.count):
        t = ctx.wrap_socket(connect(a.host, a.port, a.src), server_hostname="localhost")
        t.close()
    ms = (time.monotonic() - start) * 1000 / a.count
    print("handshakes=%d ms_each=%.2f" % (a.count, ms), flush=True)


def cmd_pipeline(a):
    for _ in range(a.conns):
        pipeline_once(a)


def pipeline_once(a):
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.check_hostname = False
    t = ctx.wrap_socket(connect(a.host, a.port, None, timeout=20.0), server_hostname="localhost")
    body = ('{"username":"%s","password":"%s"}' % (a.user, a.password)).encode()
    req = (
        "POST /api/login HTTP/1.1\r\nHost: localhost:%d\r\nOrigin: https://localhost:%d\r\n"
        "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (a.port, a.port, len(body))
    ).encode() + body
    t.sendall(req * a.count)
    data = b""
    try:
        while True:
            c = t.recv(65536)
            if not c:
                break
            data += c
    except (OSError, ssl.SSLError):
        pass
    # Bodies end without a line break: the next status line may follow a body on its line.
    statuses = [m.decode() for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    print("responses=%d statuses=%s" % (len(statuses), ",".join(statuses)), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("idle", "flood", "rfb-login", "tls", "pipeline"):
        q = sub.add_parser(name)
        q.add_argument("host")
        q.add_argument("port", type=int)
        if name == "idle":
            q.add_argument("n", type=int)
            q.add_argument("--hold", type=float, default=0)
        if name == "flood":
            q.add_argument("--secs", type=float, default=3)
            q.add_argument("--max", type=int, default=20000)
        if name in ("rfb-login", "pipeline"):
            q.add_argument("user_hex" if name == "rfb-login" else "user")
            q.add_argument("password")
        if name in ("rfb-login", "tls", "pipeline"):
            q.add_argument("--ca", required=True)
        if name in ("tls", "pipeline"):
            q.add_argument("--count", type=int, default=100)
        if name == "pipeline":
            q.add_argument("--conns", type=int, default=1)
        q.add_argument("--src", default=None)
    a = p.parse_args()
    if a.cmd == "idle":
        cmd_idle(a)
    elif a.cmd == "flood":
        cmd_flood(a)
    elif a.cmd == "rfb-login":
        return cmd_rfb_login(a)
    elif a.cmd == "tls":
        cmd_tls(a)
    else:
        cmd_pipeline(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
