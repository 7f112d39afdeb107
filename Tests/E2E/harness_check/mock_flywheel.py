#!/usr/bin/env python3
# mock_flywheel.py - a THROWAWAY Python stand-in for the flywheel binary, used only to check that the
# E2E harness itself works (fixtures, port parsing, YAML config, CLI parsing, polling) before the Swift
# daemon exists:   FLYWHEEL_BIN=Tests/E2E/harness_check/mock_flywheel.py python3 -m pytest Tests/E2E
# It is NOT a reference implementation: needs PyYAML, is slow, and knowingly fails two tests
# (request_timeout is per-recv, not per-request; requests cut at the shutdown deadline are not logged).
import sys, os, json, time, uuid, re, signal, sqlite3, threading, socket, hmac, hashlib, fnmatch, argparse, http.client, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime, timezone

def uuid7():
    ms = int(time.time()*1000); r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | ((r >> 66) & 0xfff) << 64 | (0b10 << 62) | (r & ((1<<62)-1))
    h = f"{v:032x}"; return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

def db_connect(path):
    con = sqlite3.connect(path, timeout=10, check_same_thread=False)
    con.execute("create table if not exists requests(id text primary key, seq integer, data text)")
    con.execute("create table if not exists feedback(id integer primary key autoincrement, request_id text, idem text, data text)")
    con.commit(); return con

def now(): return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")

def serve(a):
    cfg = {}
    if a.config:
        import yaml; cfg = yaml.safe_load(open(a.config))
    srv = cfg.get("server", {})
    listen = a.listen or srv.get("listen", "127.0.0.1:8080")
    dbp = a.db or cfg.get("log", {}).get("path", "flywheel.db")
    ups = {u["name"]: u for u in cfg.get("upstreams", [])}
    routes = cfg.get("routes")
    if a.upstream_url:
        ups = {"default": {"name": "default", "base_url": a.upstream_url}}; routes = None
    keys = {k.get("key") or os.environ.get(k.get("key_env", ""), ""): k["id"] for k in cfg.get("auth", {}).get("keys", [])}
    fbc = cfg.get("feedback", {})
    secret = fbc.get("webhook_secret") or (os.environ.get(fbc["webhook_secret_env"]) if fbc.get("webhook_secret_env") else None)
    prices = cfg.get("prices", {})
    maxbody = srv.get("max_body_bytes", 16777216); maxhdr = srv.get("max_header_bytes", 16384)
    rtimeout = srv.get("request_timeout", 30); grace = srv.get("shutdown_grace", 30)
    con = db_connect(dbp); lock = threading.Lock(); seq = [0]; inflight = [0]; cond = threading.Condition()
    counts = {}
    def log(row):
        with lock:
            seq[0] += 1; con.execute("insert or replace into requests values(?,?,?)", (row["id"], seq[0], json.dumps(row))); con.commit()
            k = (row["endpoint"], row["model_requested"] or "", row["route"] or "", str(row["status"])); counts[k] = counts.get(k, 0) + 1
    def route_for(model):
        if routes is None: return "default", ["default"], None
        for r in routes:
            if fnmatch.fnmatchcase(model, r["model"]): return r["model"], r["upstreams"], r.get("upstream_model")
        return None
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *x): pass
        def setup(self):
            super().setup(); self.connection.settimeout(rtimeout)
        def handle_one_request(self):
            try:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline: self.close_connection = True; return
                if not self.parse_request(): return
                total = sum(len(k)+len(v) for k, v in self.headers.items())
                self.rid = self.headers.get("x-request-id") if re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", self.headers.get("x-request-id") or "") else uuid7()
                if total > maxhdr: return self.err(431, "headers too large", "invalid_request_error")
                getattr(self, "do_" + self.command, self.do_OTHER)()
                self.wfile.flush()
            except (socket.timeout, TimeoutError):
                self.close_connection = True
        def send_error(self, code, message=None, explain=None):
            self.request_version = "HTTP/1.1"; self.rid = uuid7(); self.close_connection = True; self.err(code, message or "bad request", "invalid_request_error")
        def reply(self, status, body, ctype="application/json", extra=()):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status); self.send_header("Content-Type", ctype); self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", self.rid)
            for k, v in extra: self.send_header(k, v)
            self.end_headers(); self.wfile.write(data)
        def err(self, status, msg, etype, code=None):
            self.reply(status, {"error": {"message": msg, "type": etype, "param": None, "code": code}})
        def do_OTHER(self): self.err(405, "method not allowed", "invalid_request_error")
        def do_GET(self):
            p = self.path.split("?")[0]
            if p == "/healthz": return self.reply(200, {"status": "ok"})
            if p == "/metrics":
                lines = [f'flywheel_requests_total{{endpoint="{k[0]}",model="{k[1]}",route="{k[2]}",status="{k[3]}"}} {v}' for k, v in counts.items()]
                lines += ["flywheel_request_duration_seconds_bucket{le=\"+Inf\"} 1", "flywheel_request_duration_seconds_sum 0", "flywheel_request_duration_seconds_count 1",
                          "flywheel_gateway_overhead_seconds_bucket{le=\"+Inf\"} 1", "flywheel_gateway_overhead_seconds_sum 0", "flywheel_gateway_overhead_seconds_count 1",
                          "flywheel_upstream_errors_total 0", "flywheel_log_queue_depth 0", "flywheel_log_dropped_total 0"]
                return self.reply(200, ("\n".join(lines)+"\n").encode(), "text/plain; version=0.0.4")
            if p == "/v1/models":
                if routes is None:
                    return self.proxy_simple("GET", "/models")
                return self.reply(200, {"object": "list", "data": [{"id": r["model"], "object": "model", "created": 0, "owned_by": "flywheel"} for r in routes if "*" not in r["model"]]})
            if p in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/feedback"): return self.do_OTHER()
            self.err(404, "not found", "invalid_request_error")
        do_DELETE = do_PUT = do_OTHER
        def proxy_simple(self, method, sub):
            u = urllib.parse.urlparse(ups["default"]["base_url"]); c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            c.request(method, u.path + sub, headers={"Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "")}); r = c.getresponse()
            self.reply(r.status, r.read())
        def read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n > maxbody: self.close_connection = True; self.err(413, "body too large", "invalid_request_error"); return None
            return self.rfile.read(n)
        def do_POST(self):
            p = self.path.split("?")[0]
            if p == "/v1/feedback": return self.feedback()
            if p not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"): return self.err(404, "not found", "invalid_request_error")
            with cond: inflight[0] += 1
            try: self.gateway(p)
            finally:
                with cond: inflight[0] -= 1; cond.notify_all()
        def gateway(self, p):
            t0 = time.monotonic(); raw = self.read_body()
            if raw is None: return
            row = {"type": "request", "id": self.rid, "created_at": now(), "method": "POST", "endpoint": p, "model_requested": None, "model_served": None,
                   "route": None, "upstream": None, "stream": False, "status": None, "error": None, "latency_ms": 0, "ttft_ms": None, "upstream_ms": None,
                   "usage": None, "cost_usd": None, "tags": [t for t in (self.headers.get("x-flywheel-tags") or "").split(",") if t], "user": None, "metadata": None,
                   "client_key_id": None, "attempts": 0, "request": None, "response": None, "feedback": []}
            def fail(status, msg, etype, code=None):
                row.update(status=status, error={"type": etype, "message": msg}, latency_ms=(time.monotonic()-t0)*1000); log(row); self.err(status, msg, etype, code)
            if keys:
                auth = self.headers.get("Authorization") or ""
                kid = keys.get(auth[7:]) if auth.startswith("Bearer ") else None
                if not kid: return fail(401, "bad key", "invalid_request_error", "invalid_api_key")
                row["client_key_id"] = kid
            try: body = json.loads(raw)
            except ValueError: return fail(400, "bad json", "invalid_request_error")
            if not isinstance(body, dict): return fail(400, "not an object", "invalid_request_error")
            row.update(request=body, user=body.get("user"), metadata=body.get("metadata"), stream=bool(body.get("stream")))
            if "model" not in body or (p.endswith("chat/completions") and "messages" not in body): return fail(400, "missing field", "invalid_request_error")
            row["model_requested"] = body["model"]
            rt = route_for(body["model"])
            if rt is None: return fail(404, "model not found", "invalid_request_error", "model_not_found")
            row["route"], names, umodel = rt
            if umodel: body = dict(body, model=umodel)
            data = json.dumps(body).encode(); last = None
            for name in names:
                up = ups[name]; u = urllib.parse.urlparse(up["base_url"]); retries = up.get("retries", {}).get("max", 2)
                tmo = up.get("timeouts", {})
                for attempt in range(retries + 1):
                    row["attempts"] += 1
                    try:
                        c = http.client.HTTPConnection(u.hostname, u.port, timeout=tmo.get("first_byte", 10))
                        c.request("POST", u.path + p[3:], body=data, headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "")})
                        r = c.getresponse()
                    except OSError as e:
                        last = ("conn", str(e)); time.sleep(0.01); continue
                    if r.status == 429 or r.status >= 500:
                        last = ("status", r.status, r.read()); time.sleep(0.01); continue
                    row["upstream"] = name; row["model_served"] = body["model"]
                    return self.relay(r, row, t0)
            if last and last[0] == "status":
                row.update(status=last[1], error={"type": "upstream", "message": last[2].decode()[:200]}, latency_ms=(time.monotonic()-t0)*1000); log(row)
                return self.reply(last[1], last[2])
            return fail(502, "upstream unavailable", "upstream_error")
        def relay(self, r, row, t0):
            row["upstream_ms"] = (time.monotonic()-t0)*1000
            if r.status != 200 or not row["stream"]:
                data = r.read(); obj = json.loads(data)
                row.update(status=r.status, response=obj, latency_ms=(time.monotonic()-t0)*1000)
                if r.status >= 400: row["error"] = {"type": obj["error"]["type"], "message": obj["error"]["message"]}
                else: self.finish_usage(row, obj.get("usage"))
                log(row); return self.reply(r.status, data)
            self.send_response(200); self.send_header("Content-Type", "text/event-stream"); self.send_header("Transfer-Encoding", "chunked"); self.send_header("x-request-id", self.rid); self.end_headers()
            content = []; finish = None; usage = None; first = None
            try:
                while True:
                    line = r.readline()
                    if not line: break
                    if line.startswith(b"data: "):
                        if first is None: first = (time.monotonic()-t0)*1000
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line)+1, line + b"\n")); self.wfile.flush()
                        payload = line[6:].strip()
                        if payload == b"[DONE]": break
                        ev = json.loads(payload)
                        if ev.get("usage"): usage = ev["usage"]
                        for ch in ev.get("choices", []):
                            content.append(ch.get("delta", {}).get("content") or ch.get("text") or "")
                            finish = ch.get("finish_reason") or finish
                self.wfile.write(b"0\r\n\r\n")
            except OSError: pass
            resp = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(content)}, "finish_reason": finish}]}
            if usage: resp["usage"] = usage
            row.update(status=200, response=resp, ttft_ms=first, latency_ms=(time.monotonic()-t0)*1000); self.finish_usage(row, usage); log(row)
        def finish_usage(self, row, usage):
            if not usage: return
            row["usage"] = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
            pr = prices.get(row["model_requested"])
            if pr: row["cost_usd"] = (usage.get("prompt_tokens", 0)*pr["input"] + usage.get("completion_tokens", 0)*pr["output"]) / 1e6
        def feedback(self):
            raw = self.read_body()
            if raw is None: return
            if secret:
                sig = self.headers.get("x-flywheel-signature") or ""
                good = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(sig, good): return self.err(401, "bad signature", "invalid_request_error", "invalid_signature")
            try: b = json.loads(raw)
            except ValueError: return self.err(400, "bad json", "invalid_request_error")
            if not isinstance(b, dict) or not isinstance(b.get("request_id"), str) or b.get("signal") not in ("accepted", "rejected", "edited", "score", "comment"): return self.err(400, "bad feedback", "invalid_request_error")
            if b["signal"] == "score" and (not isinstance(b.get("value"), (int, float)) or isinstance(b.get("value"), bool)): return self.err(400, "score needs value", "invalid_request_error")
            with lock:
                if not con.execute("select 1 from requests where id=?", (b["request_id"],)).fetchone(): return self.err(404, "unknown request", "invalid_request_error", "request_not_found")
                idem = self.headers.get("Idempotency-Key")
                if idem:
                    old = con.execute("select id from feedback where idem=?", (idem,)).fetchone()
                    if old: return self.reply(200, {"id": old[0], "object": "feedback", "request_id": b["request_id"], "duplicate": True})
                fb = {"type": "feedback", "request_id": b["request_id"], "created_at": now(), **{k: b.get(k) for k in ("signal", "value", "correction", "comment", "source", "weight")}}
                cur = con.execute("insert into feedback(request_id, idem, data) values(?,?,?)", (b["request_id"], idem, json.dumps(fb))); con.commit()
                return self.reply(200, {"id": cur.lastrowid, "object": "feedback", "request_id": b["request_id"], "duplicate": False})
    host, port = listen.rsplit(":", 1)
    class S(ThreadingHTTPServer): daemon_threads = True; request_queue_size = 128
    s = S((host, int(port)), H)
    print(f"flywheel: listening on http://127.0.0.1:{s.server_address[1]}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: stop.set()); signal.signal(signal.SIGINT, lambda *x: stop.set())
    t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True); t.start()
    stop.wait(); s.shutdown(); s.socket.close()
    deadline = time.monotonic() + grace
    with cond:
        while inflight[0] and time.monotonic() < deadline: cond.wait(0.05)
    print("flywheel: stopped", file=sys.stderr, flush=True); os._exit(0)

def load(dbp, rid=None):
    con = sqlite3.connect(dbp, timeout=10)
    rows = [json.loads(d) for (d,) in con.execute("select data from requests order by seq")]
    fbs = [dict(json.loads(d), id=i) for i, d in con.execute("select id, data from feedback order by id")]
    for r in rows: r["feedback"] = [f for f in fbs if f["request_id"] == r["id"]]
    return rows, fbs

def text(r): return f'{r["created_at"]} {r["id"]} {r["model_requested"]} {r["route"]} {r["status"]} {r["latency_ms"]:.0f}ms {(r["usage"] or {}).get("total_tokens")} {json.dumps(r["request"])[:40] if r["request"] else ""}'

def tail(a):
    seen = set(); first = True
    while True:
        rows, fbs = load(a.db) if os.path.exists(a.db) else ([], [])
        sel = [r for r in rows if (not a.errors or r["status"] >= 400) and (not a.model or a.model in (r["model_requested"], r["model_served"])) and (not a.route or r["route"] == a.route)]
        if first: sel = sel[-a.n:] if a.n else []; seen |= {r["id"] for r in rows}
        else: sel = [r for r in sel if r["id"] not in seen]; seen |= {r["id"] for r in sel}
        for r in sel:
            print(json.dumps(r) if a.json else text(r), flush=True)
            if a.feedback:
                for f in r["feedback"]: print(json.dumps(f) if a.json else f'  feedback {f["signal"]} {f.get("comment") or ""}', flush=True)
        first = False
        if not a.follow: return 0
        time.sleep(0.2)

def show(a):
    rows, _ = load(a.db)
    for r in rows:
        if r["id"] == a.id:
            print(json.dumps(r) if a.json else text(r) + "\n" + json.dumps(r["response"])); return 0
    print(f"flywheel: no request {a.id}", file=sys.stderr); return 1

ap = argparse.ArgumentParser(); sp = ap.add_subparsers(dest="cmd")
s = sp.add_parser("serve"); s.add_argument("--config"); s.add_argument("--listen"); s.add_argument("--db"); s.add_argument("--upstream-url")
t = sp.add_parser("tail"); t.add_argument("--db"); t.add_argument("-n", type=int, default=10); t.add_argument("-f", "--follow", action="store_true"); t.add_argument("--json", action="store_true")
t.add_argument("--model"); t.add_argument("--route"); t.add_argument("--errors", action="store_true"); t.add_argument("--feedback", action="store_true")
w = sp.add_parser("show"); w.add_argument("id"); w.add_argument("--db"); w.add_argument("--json", action="store_true")
a = ap.parse_args()
signal.signal(signal.SIGTERM, lambda *x: sys.exit(0))
sys.exit(serve(a) if a.cmd == "serve" else tail(a) if a.cmd == "tail" else show(a))
