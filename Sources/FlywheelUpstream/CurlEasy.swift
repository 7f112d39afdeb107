import CCurl
import Glibc

/// A pooled libcurl easy handle with its error buffer. Created, configured, reset and destroyed on the curl thread
/// only (the pool is drained there on shutdown).
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

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }
}
