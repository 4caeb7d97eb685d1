#!/usr/bin/env python3
"""A small Confluent-compatible schema registry for tests (Python stdlib only).

Speaks the part of the REST API closedloop uses, with the registry's real response
shapes and error codes:

  POST /subjects/<subject>/versions   {"schema": "<text>"[, "schemaType": "AVRO"]} -> {"id": N}
                                       (same text under any subject -> same id; 422 42201
                                       when the text is not JSON)
  GET  /schemas/ids/<id>              -> {"schema": "<text>"} | 404 {"error_code": 40403}
  GET  /subjects                      -> ["s1", ...]
  GET  /subjects/<subject>/versions   -> [1, 2, ...] | 404 40401
  GET  /subjects/<subject>/versions/latest|<n> -> {"subject","version","id","schema"}

Test controls (never authenticated, not part of the real API):

  POST /_control/fail     {"status": 503, "count": 2}  next `count` API requests get `status`
  POST /_control/delay    {"ms": 500, "count": 1}      next `count` API requests sleep first
  GET  /_control/requests -> {"count": N, "paths": [...]}  API requests seen so far
  POST /_control/reset    forget schemas, faults and counters

Authentication: --basic-auth user:password and/or --bearer-token TOKEN make every API
request require the matching Authorization header (401 40101 otherwise).

TLS: --tls-cert cert.pem --tls-key key.pem serve https instead of http (the handshake
runs in the request's thread, so a client that rejects the certificate fails alone).

Usage: schema_registry.py [--port 0] [--basic-auth U:P] [--bearer-token T]
                          [--tls-cert C --tls-key K]
Prints "PORT <n>" on stdout once listening, then serves until killed.
"""
import argparse
import base64
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.schemas = {}      # id -> text
        self.ids_by_text = {}  # text -> id
        self.subjects = {}     # subject -> [id per version]
        self.fail = []         # statuses to return, in order
        self.delay = []        # delays (ms), in order
        self.requests = []     # paths of API requests


STATE = State()
AUTH = {"basic": None, "bearer": None}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, code, message):
        self._send(status, {"error_code": code, "message": message})

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 16 << 20:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def _authorized(self):
        if not AUTH["basic"] and not AUTH["bearer"]:
            return True
        header = self.headers.get("Authorization") or ""
        if AUTH["basic"] and header == "Basic " + base64.b64encode(AUTH["basic"].encode()).decode():
            return True
        if AUTH["bearer"] and header == "Bearer " + AUTH["bearer"]:
            return True
        return False

    def _control(self, method):
        if method == "POST" and self.path == "/_control/fail":
            req = json.loads(self._body() or b"{}")
            with STATE.lock:
                STATE.fail.extend([int(req.get("status", 503))] * int(req.get("count", 1)))
            return self._send(200, {})
        if method == "POST" and self.path == "/_control/delay":
            req = json.loads(self._body() or b"{}")
            with STATE.lock:
                STATE.delay.extend([int(req.get("ms", 100))] * int(req.get("count", 1)))
            return self._send(200, {})
        if method == "GET" and self.path == "/_control/requests":
            with STATE.lock:
                return self._send(200, {"count": len(STATE.requests), "paths": list(STATE.requests)})
        if method == "POST" and self.path == "/_control/reset":
            self._body()
            with STATE.lock:
                STATE.reset()
            return self._send(200, {})
        return self._error(404, 404, "unknown control endpoint")

    def _handle(self, method):
        if self.path.startswith("/_control/"):
            return self._control(method)
        with STATE.lock:
            STATE.requests.append(method + " " + self.path)
            fail = STATE.fail.pop(0) if STATE.fail else None
            delay = STATE.delay.pop(0) if STATE.delay else None
        if delay:
            time.sleep(delay / 1000.0)
        body = self._body() if method == "POST" else b""
        if fail:
            return self._error(fail, fail * 100 + 1, "injected failure")
        if not self._authorized():
            return self._error(401, 40101, "Unauthorized")
        parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
        if method == "POST" and len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            return self._register(parts[1], body)
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            try:
                sid = int(parts[2])
            except ValueError:
                return self._error(404, 40403, "Schema not found")
            with STATE.lock:
                text = STATE.schemas.get(sid)
            if text is None:
                return self._error(404, 40403, "Schema %s not found" % parts[2])
            return self._send(200, {"schema": text})
        if method == "GET" and parts == ["subjects"]:
            with STATE.lock:
                return self._send(200, sorted(STATE.subjects))
        if method == "GET" and len(parts) >= 3 and parts[0] == "subjects" and parts[2] == "versions":
            with STATE.lock:
                versions = STATE.subjects.get(parts[1])
                if versions is None:
                    return self._error(404, 40401, "Subject '%s' not found." % parts[1])
                if len(parts) == 3:
                    return self._send(200, list(range(1, len(versions) + 1)))
                v = len(versions) if parts[3] == "latest" else int(parts[3])
                if v < 1 or v > len(versions):
                    return self._error(404, 40402, "Version not found.")
                sid = versions[v - 1]
                return self._send(200, {"subject": parts[1], "version": v, "id": sid,
                                        "schema": STATE.schemas[sid]})
        return self._error(404, 404, "HTTP 404 Not Found")

    def _register(self, subject, body):
        try:
            req = json.loads(body)
            text = req["schema"]
            if req.get("schemaType", "AVRO") != "AVRO":
                return self._error(422, 42202, "only AVRO is supported by this fake")
            json.loads(text)
        except (ValueError, KeyError, TypeError):
            return self._error(422, 42201, "Invalid schema")
        with STATE.lock:
            sid = STATE.ids_by_text.get(text)
            if sid is None:
                sid = len(STATE.schemas) + 1
                STATE.schemas[sid] = text
                STATE.ids_by_text[text] = sid
            versions = STATE.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
        return self._send(200, {"id": sid})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class RegistryProcess:
    """Runs this file as a subprocess on a random loopback port (for pytest). With
    --tls-cert in args the URL is https and the control calls trust that certificate."""

    def __init__(self, *args):
        import subprocess
        self.proc = subprocess.Popen([sys.executable, __file__, "--port", "0", *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError("fake schema registry did not start: %r" % line)
        self.ssl_context = None
        scheme = "http"
        if "--tls-cert" in args:
            scheme = "https"
            self.ssl_context = ssl.create_default_context(
                cafile=args[list(args).index("--tls-cert") + 1])
        self.url = "%s://127.0.0.1:%d" % (scheme, int(line.split()[1]))

    def _call(self, method, path, body=None):
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": CONTENT_TYPE})
        with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as resp:
            return json.loads(resp.read())

    def register(self, subject, text):
        from urllib.parse import quote
        return self._call("POST", "/subjects/%s/versions" % quote(subject, safe=""), {"schema": text})["id"]

    def schema(self, sid):
        return self._call("GET", "/schemas/ids/%d" % sid)["schema"]

    def subjects(self):
        return self._call("GET", "/subjects")

    def requests(self):
        return self._call("GET", "/_control/requests")["paths"]

    def fail(self, status, count):
        self._call("POST", "/_control/fail", {"status": status, "count": count})

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--basic-auth")
    ap.add_argument("--bearer-token")
    ap.add_argument("--tls-cert", help="PEM certificate (chain): serve https")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    AUTH["basic"] = args.basic_auth
    AUTH["bearer"] = args.bearer_token
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        # A client refusing the certificate is what the TLS tests provoke: not a
        # server error worth a traceback.
        handle_error = server.handle_error
        server.handle_error = lambda req, addr: None if isinstance(
            sys.exc_info()[1], (ssl.SSLError, ConnectionError)) else handle_error(req, addr)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
