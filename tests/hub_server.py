#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub on 127.0.0.1, for tests/test_pull.sh.

    hub_server.py PORTFILE LOGFILE ORG/NAME=DIR[:MODE] ...

serves each folder DIR as the repository ORG/NAME, with the two routes
`sense pull` uses:

    GET /api/models/ORG/NAME/revision/REV?blobs=true
        {"id", "sha", "siblings": [{"rfilename", "size",
         "lfs": {"sha256", "size", "pointerSize"}}]}   (lfs: *.safetensors)
    GET /ORG/NAME/resolve/REV/PATH
        the file; *.safetensors are redirected (302) to /cdn/ORG/NAME/PATH,
        as the hub sends large files to its CDN; Range: bytes=N- is honoured
        (206, or 416 past the end).

Every listing also names files sense must not fetch (pytorch_model.bin,
onnx/model.onnx, tf_model.h5, README.md): asking for one is logged as
"UNWANTED" and answered 404.

MODE, per repository:
    good     as above
    drop     the first full download of each .safetensors sends half the
             bytes and closes the connection
    stall    the first full download of each .safetensors sends half the
             bytes, then nothing for 60 s
    badsha   lists a wrong lfs.sha256 for model.safetensors
    private  401 unless "Authorization: Bearer sekrit"
A repository not named is 404. Each request is logged as one line:
"METHOD PATH range=RANGE auth=yes|no". The port is written to PORTFILE once
the socket listens. Python 3 standard library only.
"""
import hashlib
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

REPOS = {}         # "org/name" -> (dir, mode)
SEEN = set()       # (repo, path) already served once in full
LOCK = threading.Lock()
LOG = None
UNWANTED = ["pytorch_model.bin", "onnx/model.onnx", "tf_model.h5",
            "README.md"]


def log(line):
    with LOCK:
        LOG.write(line + "\n")
        LOG.flush()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def listing(repo):
    folder, mode = REPOS[repo]
    sibs = []
    for root, _, names in os.walk(folder):
        for n in sorted(names):
            full = os.path.join(root, n)
            rel = os.path.relpath(full, folder)
            size = os.path.getsize(full)
            s = {"rfilename": rel, "size": size}
            if rel.endswith(".safetensors"):
                sha = sha256_of(full)
                if mode == "badsha" and rel == "model.safetensors":
                    sha = "0" * 64
                s["lfs"] = {"sha256": sha, "size": size, "pointerSize": 134}
            sibs.append(s)
    for n in UNWANTED:
        sibs.append({"rfilename": n, "size": 10})
    sibs.sort(key=lambda s: s["rfilename"])
    commit = hashlib.sha1(repo.encode()).hexdigest()
    return {"id": repo, "modelId": repo, "sha": commit, "siblings": sibs}


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, msg):
        self.reply(status, json.dumps({"error": msg}).encode(),
                   extra=[("X-Error-Message", msg)])

    def authorized(self, repo):
        if REPOS[repo][1] != "private":
            return True
        return self.headers.get("Authorization") == "Bearer sekrit"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        log("GET %s range=%s auth=%s" % (
            path, self.headers.get("Range", "-"),
            "yes" if self.headers.get("Authorization") else "no"))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 \
                and parts[4] == "revision":
            repo = "/".join(parts[2:4])
            if repo not in REPOS:
                return self.error(404, "Repository not found")
            if not self.authorized(repo):
                return self.error(401, "Invalid credentials in Authorization "
                                       "header")
            return self.reply(200, json.dumps(listing(repo)).encode())
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = "/".join(parts[:2])
            rel = "/".join(parts[4:])
            if repo not in REPOS:
                return self.error(404, "Repository not found")
            if not self.authorized(repo):
                return self.error(401, "Invalid credentials")
            if rel in UNWANTED:
                log("UNWANTED %s" % rel)
                return self.error(404, "Entry not found")
            if rel.endswith(".safetensors"):
                loc = "/cdn/%s/%s" % (repo, urllib.parse.quote(rel))
                return self.reply(302, b"", extra=[("Location", loc)])
            return self.send_file(repo, rel)
        if parts[0] == "cdn" and len(parts) >= 4:
            return self.send_file("/".join(parts[1:3]), "/".join(parts[3:]))
        return self.error(404, "Not found")

    def send_file(self, repo, rel):
        if repo not in REPOS:
            return self.error(404, "Repository not found")
        folder, mode = REPOS[repo]
        full = os.path.join(folder, rel)
        if ".." in rel.split("/") or not os.path.isfile(full):
            return self.error(404, "Entry not found")
        with open(full, "rb") as f:
            data = f.read()
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                return self.reply(416, b"", extra=[
                    ("Content-Range", "bytes */%d" % len(data))])
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (
                start, len(data) - 1, len(data)))
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(data[start:])
            return
        first = False
        with LOCK:
            if (repo, rel) not in SEEN:
                SEEN.add((repo, rel))
                first = True
        if first and mode in ("drop", "stall") and rel.endswith(".safetensors"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            if mode == "stall":
                time.sleep(60)
            self.close_connection = True
            return
        self.reply(200, data, "application/octet-stream")


def main():
    global LOG
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    portfile, logfile = sys.argv[1], sys.argv[2]
    for arg in sys.argv[3:]:
        repo, spec = arg.split("=", 1)
        folder, _, mode = spec.partition(":")
        REPOS[repo] = (folder, mode or "good")
    LOG = open(logfile, "a")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    srv.daemon_threads = True
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
