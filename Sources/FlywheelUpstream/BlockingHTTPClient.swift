import CCurl
import Glibc

/// One HTTP request at a time on the calling thread (libcurl's easy interface), for command-line tools that
/// talk to a running gateway (`flywheel eval`). Not for the daemon: its requests run on the event loops. One
/// client per thread; each keeps its connection alive between requests.
public final class BlockingHTTPClient {
    /// What came back: the status, the headers asked for (lowercase names), the body, and the time it took.
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        public var seconds: Double
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    private let easy: CurlEasy
    /// Largest response body kept; a larger one is a failure.
    public var maxBodyBytes = 64 << 20

    public init() throws {
        _ = blockingCurlGlobalInit
        guard let easy = CurlEasy() else { throw Failure(message: "curl_easy_init failed") }
        self.easy = easy
    }

    /// POSTs `body` to `url`, waiting at most `timeout` seconds in all. `keepHeaders` names the response headers
    /// to return (lowercase).
    public func post(_ url: String, body: [UInt8], headers: [(String, String)], timeout: Double,
                     keepHeaders: Set<String> = []) throws(Failure) -> Response {
        let h = easy.handle
        curl_easy_reset(h)
        let transfer = BlockingTransfer(wanted: keepHeaders, limit: maxBodyBytes)
        let box = Unmanaged.passRetained(transfer)
        defer { box.release() }
        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers { list = curl_slist_append(list, "\(name): \(value)") }
        list = curl_slist_append(list, "Expect:")
        defer { curl_slist_free_all(list) }
        _ = fw_easy_setopt_ptr(h, CURLOPT_ERRORBUFFER, easy.errorBuffer)
        _ = fw_easy_setopt_str(h, CURLOPT_URL, url)
        _ = fw_easy_setopt_long(h, CURLOPT_POST, 1)
        _ = fw_easy_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        _ = fw_easy_setopt_long(h, CURLOPT_TIMEOUT_MS, Int(max(1, timeout * 1000)))
        _ = fw_easy_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(max(1, min(timeout, 10) * 1000)))
        _ = fw_easy_setopt_slist(h, CURLOPT_HTTPHEADER, list)
        _ = fw_easy_setopt_ptr(h, CURLOPT_WRITEDATA, box.toOpaque())
        _ = fw_easy_setopt_ptr(h, CURLOPT_HEADERDATA, box.toOpaque())
        _ = fw_easy_setopt_datafn(h, CURLOPT_WRITEFUNCTION, blockingWrite)
        _ = fw_easy_setopt_datafn(h, CURLOPT_HEADERFUNCTION, blockingHeader)
        let started = MonotonicClock.now()
        let code = body.withUnsafeBytes { bytes -> CURLcode in
            _ = fw_easy_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count))
            _ = fw_easy_setopt_ptr(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
            return curl_easy_perform(h)
        }
        let seconds = Double(MonotonicClock.now() &- started) / 1e9
        if transfer.overflow { throw Failure(message: "the response from \(url) exceeded \(maxBodyBytes) bytes") }
        guard code == CURLE_OK else { throw Failure(message: "POST \(url): \(easy.errorMessage(code))") }
        var status = 0
        _ = fw_easy_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return Response(status: status, headers: transfer.headers, body: transfer.body, seconds: seconds)
    }
}

private let blockingCurlGlobalInit: Int32 = Int32(bitPattern: curl_global_init(Int(CURL_GLOBAL_ALL)).rawValue)

/// Per-transfer state reached from curl's callbacks through an opaque pointer (the calling thread only).
private final class BlockingTransfer {
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    let wanted: Set<String>
    let limit: Int
    var overflow = false

    init(wanted: Set<String>, limit: Int) {
        self.wanted = wanted
        self.limit = limit
    }

    func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard body.count + bytes.count <= limit else { overflow = true; return false }
        body.append(contentsOf: bytes)
        return true
    }

    /// One header line ("Name: value\r\n"); a new status line (after a redirect or 100) starts over.
    func header(_ bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self)
        if line.hasPrefix("HTTP/") { headers = [:]; return }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        guard wanted.contains(name) else { return }
        let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
        headers[name] = String(value.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }.reversed())
    }
}

private let blockingWrite: fw_data_callback = { data, size, count, user in
    let n = size * count
    guard let data, let user else { return 0 }
    let transfer = Unmanaged<BlockingTransfer>.fromOpaque(user).takeUnretainedValue()
    return transfer.append(UnsafeRawBufferPointer(start: data, count: n)) ? n : 0
}

private let blockingHeader: fw_data_callback = { data, size, count, user in
    let n = size * count
    guard let data, let user else { return n }
    Unmanaged<BlockingTransfer>.fromOpaque(user).takeUnretainedValue().header(UnsafeRawBufferPointer(start: data, count: n))
    return n
}
