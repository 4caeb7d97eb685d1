#!/usr/bin/env python3
"""A test Salesforce: the OAuth token endpoint, REST query/queryAll with paging, and Bulk
API 2.0 query jobs, with the documented response and error shapes and fault injection.

Python standard library only, so it runs wherever the tests run. It serves Opportunity
records from a JSON Lines file (Salesforce API field names, e.g. what closedloop-gen
writes) and lets a test change them and inject faults over a small control API that
real Salesforce does not have (/__fake/...):

  POST /__fake/upsert   {"records": [...]}     add or replace records (by Id); with
                        "restamp": true, SystemModstamp becomes the time of the call
  POST /__fake/faults   {...}                  set faults (see FAULTS below)
  GET  /__fake/stats                           calls, tokens issued (access_tokens: every
                                               access token handed out, so a test can grep
                                               logs for them), auth flows seen
  POST /__fake/reset                           clear faults and counters

What it checks like Salesforce does: JWT bearer assertions are verified (RS256 with the
public key given by --jwt-public-key, iss = client id, aud = --audience, exp in the
future and at most 3 minutes ahead); client credentials and refresh tokens are compared
with --client-secret / --refresh-token; every API call needs a current Bearer token;
query strings are decoded form-style, so a '+' sent unencoded in a datetime literal
arrives as a space and the query fails with MALFORMED_QUERY, as it does in Salesforce.

With --tls-cert/--tls-key it serves https (the handshake runs in the request's thread,
so a client that rejects the certificate cannot stall the server) and hands out an
https instance_url.

Run: salesforce.py --data opps.jsonl --port 0 --port-file PATH [--jwt-public-key pub.pem]
                   [--tls-cert cert.pem --tls-key key.pem]
"""
import argparse
import base64
import hashlib
import json
import re
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIELDS = ["Id", "AccountId", "OwnerId", "StageName", "IsClosed", "IsWon", "IsDeleted",
          "CloseDate", "Amount", "CreatedDate", "SystemModstamp", "LastModifiedDate",
          "Type", "LeadSource", "CurrencyIsoCode"]
DATETIME_FIELDS = {"CreatedDate", "SystemModstamp", "LastModifiedDate"}

# Fault knobs (POST /__fake/faults). Counts are decremented as faults fire.
FAULTS = {
    "fail_503": 0,                   # next N API calls answer 503 SERVER_UNAVAILABLE
    "fail_429": 0,                   # next N API calls answer 429
    "expire_session_after_pages": -1,  # after N more query pages, every token is invalid
    "invalid_locator_after_pages": -1, # after N more pages, cursors vanish (INVALID_QUERY_LOCATOR)
    "malformed_json": 0,             # next N query responses are cut off mid-JSON
    "malformed_json_after_pages": -1,  # after N more good pages, one is cut off mid-JSON
    "limit_exceeded": False,         # every API call: 403 REQUEST_LIMIT_EXCEEDED
    "slow_ms": 0,                    # delay before each API response
    "api_used": None,                # set the daily usage counter
    "api_max": 15000,                # daily API request limit
    "bulk_fail": False,              # new bulk jobs end in state Failed
    "modify_after_first_page": [],   # records upserted right after the next first page
}


def parse_dt(s):
    """Salesforce datetime ("2013-05-20T20:49:32.000+0000", "...Z", "YYYY-MM-DD") -> ms."""
    s = s.strip()
    if len(s) == 10:
        return int(datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() * 1000)
    s = s.replace("Z", "+0000")
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d):?(\d\d)$", s)
    if not m:
        raise ValueError("bad datetime %r" % s)
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    frac = int(round(float(m.group(2) or "0") * 1000))
    sign = 1 if m.group(3)[0] == "+" else -1
    off = sign * (abs(int(m.group(3))) * 60 + int(m.group(4)))
    return int(base.timestamp() * 1000) + frac - off * 60000


def fmt_dt(ms, zulu=False):
    d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d" % (ms % 1000) + ("Z" if zulu else "+0000")


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# --- RSA public key from PEM (SubjectPublicKeyInfo or PKCS#1), stdlib only -----------
def _der_read(buf, pos):
    tag = buf[pos]
    pos += 1
    length = buf[pos]
    pos += 1
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return tag, buf[pos:pos + length], pos + length


def load_rsa_public_key(path):
    text = open(path).read()
    b64 = "".join(l for l in text.splitlines() if l and not l.startswith("-----"))
    der = base64.b64decode(b64)
    tag, body, _ = _der_read(der, 0)
    assert tag == 0x30
    tag, first, after = _der_read(body, 0)
    if tag == 0x30:  # SubjectPublicKeyInfo: SEQ { algid SEQ, BIT STRING { RSAPublicKey } }
        tag, bits, _ = _der_read(body, after)
        assert tag == 0x03
        _, rsakey, _ = _der_read(bits[1:], 0)
    else:            # PKCS#1 RSAPublicKey: SEQ { INTEGER n, INTEGER e }
        rsakey = body
    tag, n, pos = _der_read(rsakey, 0)
    tag, e, _ = _der_read(rsakey, pos)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rs256_verify(pub, signing_input, sig):
    n, e = pub
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    t = SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return em == expected


# --- SOQL: the subset closedloop sends --------------------------------------------
SOQL_RE = re.compile(
    r"^SELECT (?P<fields>[A-Za-z, ]+) FROM Opportunity"
    r" WHERE (?P<f1>SystemModstamp|LastModifiedDate) >= (?P<lo>\S+)"
    r" AND (?P<f2>SystemModstamp|LastModifiedDate) < (?P<hi>\S+)"
    r"(?: AND \((?P<extra>.*)\))?"
    r"(?: ORDER BY (?P<f3>SystemModstamp|LastModifiedDate) ASC, Id ASC)?$")
DT_LITERAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?(Z|[+-]\d\d:\d\d)$")


class SoqlError(Exception):
    pass


def parse_soql(q):
    m = SOQL_RE.match(q)
    if not m:
        raise SoqlError("unexpected token in query: %s" % q[:120])
    for lit in (m.group("lo"), m.group("hi")):
        if not DT_LITERAL.match(lit):
            raise SoqlError("invalid datetime literal '%s'" % lit)
    fields = [f.strip() for f in m.group("fields").split(",")]
    for f in fields:
        if f not in FIELDS:
            raise SoqlError("No such column '%s' on entity 'Opportunity'" % f)
    if m.group("extra"):
        raise SoqlError("the test server does not evaluate extra conditions")
    return {"fields": fields, "field": m.group("f1"),
            "lo": parse_dt(m.group("lo").replace("Z", "+0000")),
            "hi": parse_dt(m.group("hi").replace("Z", "+0000"))}


class Org:
    """The org's data and the server's mutable state, behind one lock."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.records = {}
        self.last_stamp = 0
        self.faults = dict(FAULTS)
        self.tokens = set()
        self.cursors = {}     # locator -> list of rows
        self.jobs = {}
        self.seq = 0
        self.stats = {"api_calls": 0, "token_requests": 0, "flows": [], "pages": 0,
                      "query_requests": [], "bulk_jobs": 0, "errors_sent": {},
                      "access_tokens": []}
        self.public_key = load_rsa_public_key(args.jwt_public_key) if args.jwt_public_key else None
        if args.data:
            with open(args.data) as f:
                for line in f:
                    if line.strip():
                        self.upsert(json.loads(line))

    def upsert(self, rec):
        r = dict(rec)
        for k in DATETIME_FIELDS:
            if r.get(k) is not None:
                r[k] = parse_dt(r[k]) if isinstance(r[k], str) else int(r[k])
        r.setdefault("IsDeleted", False)
        if r.get("LastModifiedDate") is None:
            r["LastModifiedDate"] = r.get("SystemModstamp")
        self.records[r["Id"]] = r

    def next_id(self, prefix):
        self.seq += 1
        return prefix + ("%012d" % self.seq) + "AAA"


def render_json(rec, fields, version):
    out = {"attributes": {"type": "Opportunity",
                          "url": "/services/data/v%s/sobjects/Opportunity/%s" % (version, rec["Id"])}}
    for f in fields:
        v = rec.get(f)
        if f in DATETIME_FIELDS and v is not None:
            v = fmt_dt(v)
        out[f] = v
    return out


def render_csv_value(v, field):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if field in DATETIME_FIELDS:
        return fmt_dt(v, zulu=True)
    s = str(v)
    if any(c in s for c in ',"\n\r'):
        s = '"' + s.replace('"', '""') + '"'
    return s


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    org = None

    def log_message(self, fmt, *a):
        if self.org.args.verbose:
            sys.stderr.write("fake-salesforce: " + (fmt % a) + "\n")

    # --- plumbing ---
    def send(self, status, body, ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def sf_error(self, status, code, message):
        with self.org.lock:
            self.org.stats["errors_sent"][code] = self.org.stats["errors_sent"].get(code, 0) + 1
        self.send(status, [{"message": message, "errorCode": code}], headers=self.limit_header())

    def limit_header(self):
        f = self.org.faults
        return {"Sforce-Limit-Info": "api-usage=%d/%d" % (self.org.stats["api_calls"], f["api_max"])}

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 10 << 20:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    # --- routing ---
    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/__fake/"):
                return self.control(method, path)
            if path == "/services/oauth2/token" and method == "POST":
                return self.token()
            m = re.match(r"^/services/data/v(\d+\.\d)/(.*)$", path)
            if not m:
                return self.send(404, [{"message": "The requested resource does not exist",
                                        "errorCode": "NOT_FOUND"}])
            return self.api(method, m.group(1), m.group(2), url.query)
        except BrokenPipeError:
            pass

    # --- control API (test only) ---
    def control(self, method, path):
        org = self.org
        if path == "/__fake/stats":
            with org.lock:
                return self.send(200, org.stats)
        body = json.loads(self.body() or b"{}")
        with org.lock:
            if path == "/__fake/upsert":
                for r in body.get("records", []):
                    if body.get("restamp"):
                        # A replayed history happens now: the change gets the current
                        # time as its SystemModstamp, as Salesforce would stamp it
                        # (strictly increasing, so versions of one record stay ordered).
                        now = max(int(time.time() * 1000), org.last_stamp + 1)
                        org.last_stamp = now
                        r = dict(r, SystemModstamp=now, LastModifiedDate=now)
                    org.upsert(r)
            elif path == "/__fake/faults":
                for k, v in body.items():
                    if k not in FAULTS:
                        return self.send(400, {"error": "unknown fault " + k})
                    if k == "api_used":
                        org.stats["api_calls"] = int(v)
                    else:
                        org.faults[k] = v
            elif path == "/__fake/reset":
                org.faults = dict(FAULTS)
                org.faults["modify_after_first_page"] = []
            elif path == "/__fake/expire_tokens":
                org.tokens.clear()
            else:
                return self.send(404, {"error": "no such control"})
        return self.send(200, {"ok": True})

    # --- OAuth ---
    def token(self):
        args = self.org.args
        form = urllib.parse.parse_qs(self.body().decode(), keep_blank_values=True)
        g = lambda k: (form.get(k) or [""])[0]
        grant = g("grant_type")
        err = None
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            err = self.check_jwt(g("assertion"))
        elif grant == "client_credentials":
            if g("client_id") != args.client_id or g("client_secret") != args.client_secret:
                err = ("invalid_client", "invalid client credentials")
        elif grant == "refresh_token":
            if g("client_id") != args.client_id:
                err = ("invalid_client_id", "client identifier invalid")
            elif g("refresh_token") != args.refresh_token:
                err = ("invalid_grant", "expired access/refresh token")
        else:
            err = ("unsupported_grant_type", "grant type not supported")
        with self.org.lock:
            self.org.stats["token_requests"] += 1
            self.org.stats["flows"].append(grant if not err else "rejected:" + err[0])
        if err:
            return self.send(400, {"error": err[0], "error_description": err[1]})
        tok = "00D" + hashlib.sha256(("%f%d" % (time.time(), id(self))).encode()).hexdigest()[:20] + \
              "!AQ" + hashlib.sha256(str(time.monotonic_ns()).encode()).hexdigest()
        with self.org.lock:
            self.org.tokens.add(tok)
            self.org.stats["access_tokens"].append(tok)
        host = self.headers.get("Host")
        scheme = "https" if args.tls_cert else "http"
        return self.send(200, {"access_token": tok, "scope": "api",
                               "instance_url": args.instance_url or ("%s://%s" % (scheme, host)),
                               "id": "https://login.salesforce.com/id/00Dxx0000001gEREAY/005xx000001SwiUAAS",
                               "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)),
                               "signature": "fake"})

    def check_jwt(self, assertion):
        args = self.org.args
        parts = assertion.split(".")
        if len(parts) != 3:
            return ("invalid_grant", "invalid assertion")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception:
            return ("invalid_grant", "invalid assertion")
        if header.get("alg") != "RS256":
            return ("invalid_grant", "invalid assertion algorithm")
        if not self.org.public_key or not rs256_verify(self.org.public_key,
                                                       (parts[0] + "." + parts[1]).encode(), sig):
            return ("invalid_grant", "invalid assertion signature")
        now = time.time()
        if claims.get("iss") != args.client_id:
            return ("invalid_client_id", "client identifier invalid")
        if claims.get("aud") != args.audience:
            return ("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp < now or exp > now + 180 + 5:
            return ("invalid_grant", "expired authorization code")
        if args.username and claims.get("sub") != args.username:
            return ("invalid_grant", "user hasn't approved this consumer")
        return None

    # --- API ---
    def api(self, method, version, rest, query):
        org = self.org
        auth = self.headers.get("Authorization", "")
        f = org.faults
        with org.lock:
            if not auth.startswith("Bearer ") or auth[7:] not in org.tokens:
                ok = False
            else:
                ok = True
                org.stats["api_calls"] += 1
        if f["slow_ms"]:
            time.sleep(f["slow_ms"] / 1000.0)
        if not ok:
            return self.sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        with org.lock:
            if f["limit_exceeded"] or org.stats["api_calls"] > f["api_max"]:
                fault = "limit"
            elif f["fail_503"] > 0:
                f["fail_503"] -= 1
                fault = "503"
            elif f["fail_429"] > 0:
                f["fail_429"] -= 1
                fault = "429"
            else:
                fault = None
        if fault == "limit":
            return self.sf_error(403, "REQUEST_LIMIT_EXCEEDED",
                                 "TotalRequests Limit exceeded.")
        if fault == "503":
            return self.sf_error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
        if fault == "429":
            return self.sf_error(429, "REQUEST_LIMIT_EXCEEDED_CONCURRENT", "Too many requests")

        if method == "GET" and rest in ("query", "queryAll"):
            return self.query_first(version, rest == "queryAll", query)
        m = re.match(r"^(query|queryAll)/([A-Za-z0-9]+)-(\d+)$", rest)
        if method == "GET" and m:
            return self.query_more(version, m.group(2) + "-" + m.group(3))
        if rest == "jobs/query" and method == "POST":
            return self.bulk_create(version)
        m = re.match(r"^jobs/query/([A-Za-z0-9]+)(/results)?$", rest)
        if m:
            return self.bulk(method, m.group(1), bool(m.group(2)), query)
        return self.sf_error(404, "NOT_FOUND", "The requested resource does not exist")

    def batch_size(self):
        opts = self.headers.get("Sforce-Query-Options", "")
        m = re.search(r"batchSize=(\d+)", opts)
        n = int(m.group(1)) if m else 2000
        return max(200, min(2000, n))

    def select(self, q, all_rows):
        rows = [r for r in self.org.records.values()
                if r.get(q["field"]) is not None and q["lo"] <= r[q["field"]] < q["hi"]
                and (all_rows or not r.get("IsDeleted"))]
        rows.sort(key=lambda r: (r[q["field"]], r["Id"]))
        return rows

    def query_first(self, version, all_rows, query):
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        soql = (params.get("q") or [""])[0]
        try:
            q = parse_soql(soql)
        except SoqlError as e:
            return self.sf_error(400, "MALFORMED_QUERY", str(e))
        with self.org.lock:
            self.org.stats["query_requests"].append(soql)
            rows = [render_json(r, q["fields"], version) for r in self.select(q, all_rows)]
            modify = self.org.faults["modify_after_first_page"]
            self.org.faults["modify_after_first_page"] = []
        resp = self.page(version, "queryAll" if all_rows else "query", rows, 0)
        with self.org.lock:
            for r in modify:
                self.org.upsert(r)
        return resp

    def page(self, version, kind, rows, offset):
        org = self.org
        n = self.batch_size()
        with org.lock:
            f = org.faults
            if f["expire_session_after_pages"] == 0:
                org.tokens.clear()
                f["expire_session_after_pages"] = -1
                fire_expire = True
            else:
                fire_expire = False
                if f["expire_session_after_pages"] > 0:
                    f["expire_session_after_pages"] -= 1
            malformed = f["malformed_json"] > 0
            if malformed:
                f["malformed_json"] -= 1
            if f["malformed_json_after_pages"] == 0:
                malformed = True
            if f["malformed_json_after_pages"] >= 0:
                f["malformed_json_after_pages"] -= 1
        if fire_expire:
            return self.sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        chunk = rows[offset:offset + n]
        done = offset + n >= len(rows)
        body = {"totalSize": len(rows), "done": done, "records": chunk}
        if not done:
            with org.lock:
                loc = org.next_id("01g")
                org.cursors[loc] = (kind, rows)
            body["nextRecordsUrl"] = "/services/data/v%s/%s/%s-%d" % (version, kind, loc, offset + n)
        with org.lock:
            org.stats["pages"] += 1
        text = json.dumps(body)
        if malformed:
            text = text[:max(1, len(text) // 2)]
        return self.send(200, text, headers=self.limit_header())

    def query_more(self, version, locator):
        org = self.org
        loc, off = locator.rsplit("-", 1)
        with org.lock:
            f = org.faults
            if f["invalid_locator_after_pages"] == 0:
                org.cursors.clear()
                f["invalid_locator_after_pages"] = -1
            elif f["invalid_locator_after_pages"] > 0:
                f["invalid_locator_after_pages"] -= 1
            cur = org.cursors.get(loc)
        if cur is None:
            return self.sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        kind, rows = cur
        return self.page(version, kind, rows, int(off))

    # --- Bulk API 2.0 ---
    def bulk_create(self, version):
        req = json.loads(self.body() or b"{}")
        soql = req.get("query", "")
        op = req.get("operation")
        if op not in ("query", "queryAll"):
            return self.sf_error(400, "INVALIDJOB", "invalid operation")
        try:
            q = parse_soql(soql)
        except SoqlError as e:
            return self.sf_error(400, "MALFORMED_QUERY", str(e))
        org = self.org
        with org.lock:
            rows = self.select(q, op == "queryAll")
            job_id = org.next_id("750")
            org.jobs[job_id] = {"id": job_id, "operation": op, "object": "Opportunity",
                                "state": "UploadComplete", "polls": 0, "fields": q["fields"],
                                "rows": rows, "fail": bool(org.faults["bulk_fail"]),
                                "locators": {}}
            org.stats["bulk_jobs"] += 1
        return self.send(200, {"id": job_id, "operation": op, "object": "Opportunity",
                               "createdById": "005xx000001SwiUAAS", "state": "UploadComplete",
                               "concurrencyMode": "Parallel", "contentType": "CSV",
                               "apiVersion": float(version), "lineEnding": "LF",
                               "columnDelimiter": "COMMA"}, headers=self.limit_header())

    def bulk(self, method, job_id, results, query):
        org = self.org
        with org.lock:
            job = org.jobs.get(job_id)
        if not job:
            return self.sf_error(404, "NOT_FOUND", "job not found")
        if method == "DELETE":
            with org.lock:
                org.jobs.pop(job_id, None)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not results:
            with org.lock:
                job["polls"] += 1
                if job["polls"] >= 2:
                    job["state"] = "Failed" if job["fail"] else "JobComplete"
                else:
                    job["state"] = "InProgress"
                st = job["state"]
            body = {"id": job_id, "operation": job["operation"], "object": "Opportunity",
                    "state": st, "numberRecordsProcessed": len(job["rows"]), "retries": 0}
            if st == "Failed":
                body["errorMessage"] = "InternalServerError: the query job failed"
            return self.send(200, body, headers=self.limit_header())
        if job["state"] != "JobComplete":
            return self.sf_error(400, "INVALIDJOB", "job is not complete")
        params = urllib.parse.parse_qs(query)
        max_records = int((params.get("maxRecords") or ["50000"])[0])
        locator = (params.get("locator") or [""])[0]
        with org.lock:
            start = 0
            if locator:
                if locator not in job["locators"]:
                    return self.sf_error(400, "INVALIDLOCATOR", "invalid locator")
                start = job["locators"][locator]
            end = min(len(job["rows"]), start + max_records)
            if end < len(job["rows"]):
                nxt = base64.b32encode(("%s:%d" % (job_id, end)).encode()).decode().rstrip("=")
                job["locators"][nxt] = end
            else:
                nxt = "null"
        lines = [",".join('"%s"' % f for f in job["fields"])]
        for r in job["rows"][start:end]:
            lines.append(",".join(render_csv_value(r.get(f), f) for f in job["fields"]))
        text = "\n".join(lines) + "\n"
        hdr = self.limit_header()
        hdr.update({"Sforce-Locator": nxt, "Sforce-NumberOfRecords": str(end - start)})
        return self.send(200, text, ctype="text/csv", headers=hdr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="JSON Lines file of Opportunity records")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--instance-url", help="instance_url to hand out (default: this server)")
    ap.add_argument("--client-id", default="3MVG9test.client.id")
    ap.add_argument("--client-secret", default="test-client-secret")
    ap.add_argument("--refresh-token", default="5Aep861test.refresh.token")
    ap.add_argument("--username", default="integration@example.com")
    ap.add_argument("--audience", default="https://login.salesforce.com")
    ap.add_argument("--jwt-public-key", help="PEM public key that verifies JWT assertions")
    ap.add_argument("--tls-cert", help="PEM certificate (chain): serve https")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    Handler.org = Org(args)
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # Handshake on first read, in the handler thread: a client that refuses the
        # certificate then fails its own request only.
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
        # A client refusing the certificate is what the TLS tests provoke: not a
        # server error worth a traceback.
        handle_error = srv.handle_error
        srv.handle_error = lambda req, addr: None if isinstance(
            sys.exc_info()[1], (ssl.SSLError, ConnectionError)) else handle_error(req, addr)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        import os
        os.replace(tmp, args.port_file)
    sys.stderr.write("fake-salesforce listening on %s:%d\n" % (args.host, port))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
