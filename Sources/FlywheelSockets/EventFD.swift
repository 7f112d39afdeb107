import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking eventfd used to wake an event loop from other threads.
/// `signal` may be called from any thread; `drain` only on the owning loop thread.
struct EventFD: Sendable {
    let descriptor: Int32

    init() throws(SocketError) {
        descriptor = try SystemCall.runBlocking("eventfd") { fw_eventfd(0, fw_efd_cloexec | fw_efd_nonblock) }
    }

    func signal() {
        var one: UInt64 = 1
        // EAGAIN only when the counter would overflow, which still leaves the loop woken: ignore it.
        _ = try? SystemCall.run("write eventfd") { Glibc.write(descriptor, &one, 8) }
    }

    func drain() {
        var value: UInt64 = 0
        _ = try? SystemCall.run("read eventfd") { Glibc.read(descriptor, &value, 8) }
    }

    func close() {
        _ = Glibc.close(descriptor)
    }
}
