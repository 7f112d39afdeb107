import FlywheelOutput
import FlywheelGateway
import FlywheelStore
import Foundation
import Synchronization

/// Keeps the gateway's virtual keys in step with the log's `api_keys` table: loads them at start (with each
/// budgeted key's spend summed from the log), then a background thread reads the change marker every
/// `interval` seconds and reloads the table when it moved, so `flywheel keys create` / `revoke` take effect
/// without a restart (a revocation within about `interval`). The store's connection is used by one thread at a
/// time: `load` runs before the thread starts, then only the thread uses it.
final class KeySync: Sendable {
    private let gateway: Gateway
    private let store: KeyStoreAccess
    private let lastSeen = Atomic<Int64>(-1)
    private let loop: BackgroundLoop
    private let say: @Sendable (LogLevel, String) -> Void

    init(gateway: Gateway, path: String, interval: Double = 0.25, say: @escaping @Sendable (LogLevel, String) -> Void) {
        self.gateway = gateway
        self.store = KeyStoreAccess(path: path)
        self.loop = BackgroundLoop(name: "flywheel-keys", interval: interval)
        self.say = say
    }

    /// Reads the keys when the marker moved; returns how many keys the log holds, or nil when it could not read.
    @discardableResult
    func load() -> Int? {
        do {
            return try store.with { store -> Int in
                let marker = try store.changeMarker()
                let before = lastSeen.load(ordering: .relaxed)
                guard marker != before else { return -1 }
                let keys = try store.all()
                var failed: (any Error)?
                gateway.setVirtualKeys(keys) { id in
                    do { return try store.spend(keyID: id) } catch { failed = error; return 0 }
                }
                if let failed { say(.warn, "cannot sum the spend of a key from the log (\(failed)); its budget counts from 0") }
                if before >= 0 {
                    let live = keys.filter { $0.revokedAtMillis == nil }.count
                    say(.info, "virtual keys changed: \(live) active, \(keys.count - live) revoked")
                }
                lastSeen.store(marker, ordering: .relaxed)
                return keys.count
            }
        } catch {
            say(.warn, "cannot read the virtual keys (\(error)); the keys in force stay")
            return nil
        }
    }

    func start() {
        loop.start { [self] in { self.load() } }
    }

    func shutdown() { loop.shutdown() }
}

/// The key store, opened on first use, under a lock (its SQLite connection is not thread-safe). Unchecked
/// Sendable because the lock, not the type system, guarantees one user at a time.
private final class KeyStoreAccess: @unchecked Sendable {
    private let lock = NSLock()
    private var store: SQLiteAPIKeyStore?
    private let path: String

    init(path: String) { self.path = path }

    func with<T>(_ body: (SQLiteAPIKeyStore) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        if store == nil { store = try SQLiteAPIKeyStore(path: path) }
        return try body(store!)
    }
}
