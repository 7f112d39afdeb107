#if canImport(Glibc)
import Glibc
#endif

/// Writes the whole of `text` to `descriptor`, retrying short writes and EINTR; gives up quietly when the reader
/// went away (a closed pipe, `| head`): there is nothing useful to do about it. The daemon's line writer and the
/// command line's console both write this way.
public func writeAll(_ text: String, to descriptor: Int32) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += n
    }
}
