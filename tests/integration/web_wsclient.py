#!/usr/bin/env python3
"""tests/integration/web_wsclient.py: a minimal WebSocket client (RFC 6455, masked frames) over
TLS for vdid's /ws endpoint, used by test_web_api.sh. It prints what it sees, one line each:
  rfb <ProtocolVersion>       the first message, when it is RFB
  serverinit WxH              after version 3.8, security None and ClientInit
  close <code> <reason>       a close frame from vdid
  http <status line>          when the upgrade was refused
"""
import argparse, base64, os, socket, ssl, struct, sys

ap = argparse.ArgumentParser()
ap.add_argument('--port', type=int, required=True)
ap.add_argument('--ca', required=True)
ap.add_argument('--path', required=True)
ap.add_argument('--origin')
a = ap.parse_args()
host = f'localhost:{a.port}'
ctx = ssl.create_default_context(cafile=a.ca)
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', a.port), timeout=10), server_hostname='localhost')
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f'GET {a.path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {a.origin or "https://" + host}\r\n'
           f'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
           f'Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: binary\r\n\r\n').encode())
buf = b''
while b'\r\n\r\n' not in buf:
    d = s.recv(4096)
    if not d:
        print('eof before the answer'); sys.exit(1)
    buf += d
head, buf = buf.split(b'\r\n\r\n', 1)
status = head.split(b'\r\n')[0].decode()
if ' 101 ' not in status:
    print('http', status); sys.exit(0)

def need(n):
    global buf
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    out, buf = buf[:n], buf[n:]
    return out

def frame():
    b0, b1 = need(2)
    n = b1 & 0x7f
    if n == 126: n = struct.unpack('>H', need(2))[0]
    elif n == 127: n = struct.unpack('>Q', need(8))[0]
    return b0 & 0x0f, need(n)

def send(data, op=2):
    m = os.urandom(4)
    hdr = bytes([0x80 | op])
    n = len(data)
    hdr += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack('>H', n)
    s.sendall(hdr + m + bytes(b ^ m[i % 4] for i, b in enumerate(data)))

rfb = b''
def rfb_need(n):
    global rfb
    while len(rfb) < n:
        op, payload = frame()
        if op == 8:
            code = struct.unpack('>H', payload[:2])[0] if len(payload) >= 2 else 0
            print('close', code, payload[2:].decode(errors='replace')); sys.exit(0)
        if op == 2:
            rfb += payload
    out, rfb = rfb[:n], rfb[n:]
    return out

try:
    v = rfb_need(12)
    print('rfb', v.decode().strip())
    send(b'RFB 003.008\n')
    ntypes = rfb_need(1)[0]
    types = rfb_need(ntypes)
    if 1 not in types:
        print('no security None'); sys.exit(1)
    send(b'\x01')
    if struct.unpack('>I', rfb_need(4))[0] != 0:
        print('security failed'); sys.exit(1)
    send(b'\x01')  # ClientInit: shared
    w, h = struct.unpack('>HH', rfb_need(4))
    print(f'serverinit {w}x{h}')
    send(struct.pack('>H', 1000), op=8)
except EOFError:
    print('eof')
