import Foundation
import Glibc

/// A small HTTP/1.1 server in a python3 child process, shared by all tests. It exits when our stdin closes
/// (i.e. when the test process ends). Routes:
///   /v1/echo                      200 JSON with the method, path, request headers and body it received
///   /v1/sse?n=N&delay=S[&gate=G]  200 text/event-stream, N events `data: i`, S seconds apart, chunked; with a
///                                 gate, event i > 0 waits until /release?key=G was hit i times
///   /v1/flaky?key=K&fail=N&status=C[&retry_after=R]  first N hits per key answer C (JSON error), then 200
///   /v1/status?code=C&key=K       answers C with a JSON body (counts hits per key)
///   /v1/hits?key=K                200 with the hit count of K as the body
///   /v1/early                     a 103 interim block, then 201 JSON with `X-Final: yes`
///   /v1/hang[?key=K]              reads the request (counts a hit of "hang:K") and never answers
///   /v1/release?key=G             counts a hit of "release:G" (opens an SSE gate one event further)
///   /v1/await?key=K&n=N           answers once K was hit N times (or after 10 s): wait for an event, no sleep
///   /v1/reset                     200 head and part of a chunked body, then a TCP reset (SO_LINGER 0)
final class FakeUpstreamServer: @unchecked Sendable {  // immutable after init; Process used only in init
    static let shared: FakeUpstreamServer = {
        do { return try FakeUpstreamServer() } catch { fatalError("fake upstream server: \(error)") }
    }()

    let port: Int
    /// A port on which nothing listens (bound once, then closed).
    let deadPort: Int
    private let process: Process
    private let stdinPipe: Pipe

    var baseURL: String { "http://127.0.0.1:\(port)/v1" }
    var deadURL: String { "http://127.0.0.1:\(deadPort)/v1" }

    private init() throws {
        let script = FileManager.default.temporaryDirectory
            .appendingPathComponent("flywheel-fake-upstream-\(getpid()).py")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", script.path]
        stdinPipe = Pipe()
        let stdoutPipe = Pipe()
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        try process.run()
        var line = Data()
        let handle = stdoutPipe.fileHandleForReading
        while !line.contains(0x0A) {
            let chunk = handle.availableData
            if chunk.isEmpty { throw NSError(domain: "fake server did not start", code: 1) }
            line.append(chunk)
        }
        let words = String(decoding: line, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard words.count >= 3, words[0] == "PORT", let port = Int(words[1]), let dead = Int(words[2]) else {
            throw NSError(domain: "fake server said \(String(decoding: line, as: UTF8.self))", code: 2)
        }
        self.port = port
        self.deadPort = dead
    }

    static let script = #"""
import json, os, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

counts = {}
lock = threading.Lock()
changed = threading.Condition(lock)

def hit(key):
    with lock:
        counts[key] = counts.get(key, 0) + 1
        changed.notify_all()
        return counts[key]

def wait_for(key, n, seconds=10):
    with lock:
        changed.wait_for(lambda: counts.get(key, 0) >= n, timeout=seconds)
        return counts.get(key, 0)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass

    def send_json(self, code, obj, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = url.path
        if route.endswith("/echo"):
            self.send_json(200, {"method": self.command, "path": self.path,
                                 "headers": [[k, v] for k, v in self.headers.items()],
                                 "body": body.decode("utf-8", "replace")})
        elif route.endswith("/sse"):
            n = int(q.get("n", "3")); delay = float(q.get("delay", "0.1")); gate = q.get("gate")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for i in range(n):
                    if gate is not None and i > 0 and wait_for("release:" + gate, i) < i:
                        break
                    ev = ("data: %d\n\n" % i).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                    self.wfile.flush()
                    time.sleep(delay)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
        elif route.endswith("/flaky"):
            k = hit("flaky:" + q["key"])
            if k <= int(q.get("fail", "1")):
                extra = [("Retry-After", q["retry_after"])] if "retry_after" in q else []
                code = int(q.get("status", "503"))
                self.send_json(code, {"error": {"message": "status %d on hit %d" % (code, k)}}, extra)
            else:
                self.send_json(200, {"ok": True, "hit": k})
        elif route.endswith("/status"):
            k = hit("status:" + q.get("key", ""))
            self.send_json(int(q["code"]), {"error": {"message": "code %s" % q["code"]}, "hit": k})
        elif route.endswith("/hits"):
            with lock:
                n = counts.get(q["key"], 0)
            self.send_json(200, {"hits": n})
        elif route.endswith("/early"):
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.05)
            self.send_json(201, {"created": True}, [("X-Final", "yes")])
        elif route.endswith("/hang"):
            hit("hang:" + q.get("key", ""))
            time.sleep(120)
        elif route.endswith("/release"):
            self.send_json(200, {"released": hit("release:" + q["key"])})
        elif route.endswith("/await"):
            self.send_json(200, {"hits": wait_for(q["key"], int(q["n"]))})
        elif route.endswith("/reset"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            ev = b"data: 0\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.wfile.flush()
            time.sleep(0.05)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        else:
            self.send_json(404, {"error": "no route"})

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

def watch_parent():
    sys.stdin.read()
    os._exit(0)

server = Server(("127.0.0.1", 0), Handler)
dead = socket.socket()
dead.bind(("127.0.0.1", 0))
dead_port = dead.getsockname()[1]
dead.close()
threading.Thread(target=watch_parent, daemon=True).start()
print("PORT %d %d" % (server.server_address[1], dead_port), flush=True)
server.serve_forever()
"""#
}
