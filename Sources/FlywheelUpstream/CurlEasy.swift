import CCurl
import Glibc

/// A pooled libcurl easy handle with its error buffer. Created, configured, reset and destroyed on the driver's
/// loop thread only (or on the thread that closes a scheduler whose loop is gone for good).
final class CurlEasy {
    let handle: UnsafeMutableRawPointer
    /// CURLOPT_ERRORBUFFER target, CURL_ERROR_SIZE bytes, allocated once per handle.
    let errorBuffer: UnsafeMutablePointer<CChar>

    init?() {
        guard let handle = curl_easy_init() else { return nil }
        self.handle = handle
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    /// curl's detailed message for the last failure, or the generic text for `code`.
    func errorMessage(_ code: CURLcode) -> String {
        let detailed = String(cString: errorBuffer)
        let text = detailed.isEmpty ? String(cString: curl_easy_strerror(code)) : detailed
        return "\(text) (curl error \(code.rawValue))"
    }

    /// CURLINFO_OS_ERRNO: the socket error behind the last failure, 0 when curl recorded none.
    func osErrno() -> Int32 {
        var value = 0
        _ = fw_easy_getinfo_long(handle, CURLINFO_OS_ERRNO, &value)
        return Int32(truncatingIfNeeded: value)
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }
}
