"""Shared by the scripts that run shoal nodes on loopback (bench-cluster, faults): a tiny DNS
server answering the headless Service's pod names, starting a node and waiting for it. Stdlib only.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

SERVICE = "shoal-headless.default.svc.cluster.local"


def dns_server(records):
    """A-records for `records` {name: ip}; NOERROR/no answer for other types; NXDOMAIN otherwise."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                msg, addr = sock.recvfrom(512)
            except OSError:
                return
            if len(msg) < 12:
                continue
            qid, flags = struct.unpack(">HH", msg[:4])
            i, labels = 12, []
            while i < len(msg) and msg[i] != 0:
                n = msg[i]
                labels.append(msg[i + 1:i + 1 + n].decode("ascii", "replace"))
                i += n + 1
            qend = i + 5
            if qend > len(msg):
                continue
            qtype = struct.unpack(">H", msg[i + 1:i + 3])[0]
            name = ".".join(labels).lower()
            ip = records.get(name)
            rcode = 0 if ip else 3
            answers = b""
            if ip and qtype == 1:
                answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
            hdr = struct.pack(">HHHHHH", qid, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, 1 if answers else 0, 0, 0)
            sock.sendto(hdr + msg[12:qend] + answers, addr)

    threading.Thread(target=serve, daemon=True).start()
    return sock


def wait_ready(url, proc, log, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"shoal exited early ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} not ready; see {log}")


def start(shoal, args, data_dir, fresh=True, log=None):
    """Starts `shoal --data-dir data_dir args...` (clearing the dir first when `fresh`), logging
    to `log` (default `<data_dir>.log`); returns the process and the log's path."""
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir, exist_ok=True)
    log = log or data_dir.rstrip("/") + ".log"
    p = subprocess.Popen([shoal, "--data-dir", data_dir, *args], stdout=subprocess.DEVNULL, stderr=open(log, "a"))
    return p, log


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
