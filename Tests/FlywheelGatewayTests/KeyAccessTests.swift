import FlywheelConfig
import FlywheelHTTP
import FlywheelStore
import XCTest
@testable import FlywheelGateway

/// Virtual keys' hashing and verification, the authenticator's verdicts, the per-key rate windows and the admin
/// key's sessions.
final class KeyAccessTests: XCTestCase {
    func stored(_ issued: VirtualKeyCredential.Issued, name: String = "k", revoked: Int64? = nil, expires: Int64? = nil,
                models: [String]? = nil) -> StoredAPIKey {
        StoredAPIKey(id: issued.id, name: name, saltHex: issued.saltHex, hashHex: issued.hashHex, models: models,
                     expiresAtMillis: expires, createdAtMillis: 1, revokedAtMillis: revoked)
    }

    func testAnIssuedKeyParsesAndVerifiesAgainstItsSaltedHashOnly() throws {
        let a = try XCTUnwrap(VirtualKeyCredential.issue()), b = try XCTUnwrap(VirtualKeyCredential.issue())
        XCTAssertTrue(a.key.hasPrefix("fw_" + a.id + "_"))
        XCTAssertNotEqual(a.id, b.id)
        XCTAssertNotEqual(a.saltHex, b.saltHex)
        let (id, secret) = try XCTUnwrap(VirtualKeyCredential.parse(a.key))
        XCTAssertEqual(id, a.id)
        XCTAssertFalse(a.hashHex.contains(secret) || a.saltHex.contains(secret))
        XCTAssertTrue(VirtualKeyCredential.verify(secret: secret, saltHex: a.saltHex, hashHex: a.hashHex))
        // Another key's hash, a flipped digit, a truncated hash: all refused.
        XCTAssertFalse(VirtualKeyCredential.verify(secret: secret, saltHex: b.saltHex, hashHex: b.hashHex))
        var flipped = Array(secret)
        flipped[0] = flipped[0] == "0" ? "1" : "0"
        XCTAssertFalse(VirtualKeyCredential.verify(secret: String(flipped), saltHex: a.saltHex, hashHex: a.hashHex))
        XCTAssertFalse(VirtualKeyCredential.verify(secret: secret, saltHex: a.saltHex, hashHex: String(a.hashHex.dropLast(2))))
        XCTAssertFalse(VirtualKeyCredential.verify(secret: secret, saltHex: "zz", hashHex: a.hashHex))
    }

    func testOnlyTheExactShapeParsesAsAVirtualKey() throws {
        let a = try XCTUnwrap(VirtualKeyCredential.issue())
        XCTAssertNil(VirtualKeyCredential.parse("sk-" + a.key.dropFirst(3)))
        XCTAssertNil(VirtualKeyCredential.parse(a.key + "0"))
        XCTAssertNil(VirtualKeyCredential.parse(String(a.key.dropLast())))
        XCTAssertNil(VirtualKeyCredential.parse(a.key.uppercased()))
        XCTAssertNil(VirtualKeyCredential.parse(a.key.replacingOccurrences(of: "_", with: "-")))
        XCTAssertNil(VirtualKeyCredential.parse("fw_" + String(repeating: "g", count: 12) + "_" + String(repeating: "0", count: 48)))
        XCTAssertNil(VirtualKeyCredential.parse(String(repeating: "f", count: 1 << 16)))
    }

    func testTheAuthenticatorTellsMissingWrongRevokedAndExpiredKeysApart() throws {
        let live = try XCTUnwrap(VirtualKeyCredential.issue()), gone = try XCTUnwrap(VirtualKeyCredential.issue())
        let old = try XCTUnwrap(VirtualKeyCredential.issue())
        let auth = APIKeyAuthenticator(keys: [])
        XCTAssertFalse(auth.isEnabled)
        XCTAssertEqual(auth.authenticate(HTTPHeaders(), nowMillis: 10), .open)
        auth.setVirtualKeys([stored(live, models: ["gpt-4o*"]), stored(gone, revoked: 5), stored(old, expires: 100)])
        XCTAssertTrue(auth.isEnabled)
        guard case .authenticated(let key) = auth.authenticate(token: live.key, nowMillis: 10) else { return XCTFail() }
        XCTAssertEqual(key.id, live.id)
        XCTAssertTrue(key.allows("gpt-4o-mini"))
        XCTAssertFalse(key.allows("o1"))
        XCTAssertEqual(auth.authenticate(token: gone.key, nowMillis: 10), .rejected(.revoked(id: gone.id)))
        XCTAssertEqual(auth.authenticate(token: old.key, nowMillis: 99).isAuthenticated, true)
        XCTAssertEqual(auth.authenticate(token: old.key, nowMillis: 100), .rejected(.expired(id: old.id)))
        // The right id with another key's secret, and an unknown id, say nothing about the key.
        let forged = "fw_" + live.id + "_" + (VirtualKeyCredential.parse(gone.key)?.secret ?? "")
        XCTAssertEqual(auth.authenticate(token: forged, nowMillis: 10), .rejected(.invalid))
        XCTAssertEqual(auth.authenticate(token: "fw_000000000000_" + String(repeating: "0", count: 48), nowMillis: 10), .rejected(.invalid))
        XCTAssertEqual(auth.authenticate(token: String(repeating: "x", count: 100_000), nowMillis: 10), .rejected(.invalid))
        var headers = HTTPHeaders()
        XCTAssertEqual(auth.authenticate(headers, nowMillis: 10), .rejected(.missing))
        headers.add("Authorization", "Bearer " + String(repeating: "a", count: 8000))
        XCTAssertEqual(auth.authenticate(headers, nowMillis: 10), .rejected(.invalid))
        // Revoking every key keeps auth on.
        auth.setVirtualKeys([stored(live, revoked: 20)])
        XCTAssertTrue(auth.isEnabled)
        XCTAssertEqual(auth.authenticate(token: live.key, nowMillis: 30), .rejected(.revoked(id: live.id)))
    }

    func testConfiguredKeysWorkBesideVirtualOnesAndAreComparedByDigest() throws {
        let live = try XCTUnwrap(VirtualKeyCredential.issue())
        let auth = APIKeyAuthenticator(keys: [.init(id: "team-a", key: "sk-team-a"), .init(id: "team-b", key: "sk-team-b")])
        auth.setVirtualKeys([stored(live)])
        guard case .authenticated(let b) = auth.authenticate(token: "sk-team-b", nowMillis: 0) else { return XCTFail() }
        XCTAssertEqual(b.id, "team-b")
        XCTAssertNil(b.models)
        XCTAssertTrue(b.limits.isEmpty)
        XCTAssertEqual(auth.authenticate(token: "sk-team-", nowMillis: 0), .rejected(.invalid))
        XCTAssertEqual(auth.authenticate(token: live.key, nowMillis: 0).isAuthenticated, true)
        auth.setConfigKeys([])
        XCTAssertEqual(auth.authenticate(token: "sk-team-b", nowMillis: 0), .rejected(.invalid))
    }

    func key(_ id: String, rpm: Int? = nil, tpm: Int? = nil, budget: Double? = nil) -> ClientKey {
        ClientKey(id: id, models: nil, limits: KeyLimits(requestsPerMinute: rpm, tokensPerMinute: tpm, budgetUSD: budget))
    }

    func testRequestsPerMinuteSlideAndRetryAfterNamesWhenTheOldestLeaves() throws {
        let limiter = KeyLimiter()
        let k = key("a", rpm: 3)
        XCTAssertNil(limiter.admit(k, now: 1000))
        XCTAssertNil(limiter.admit(k, now: 1010))
        XCTAssertNil(limiter.admit(k, now: 1020))
        let refused = try XCTUnwrap(limiter.admit(k, now: 1030))
        XCTAssertEqual(refused.status, 429)
        XCTAssertEqual(refused.code, "rate_limit_exceeded")
        XCTAssertEqual(refused.headers["retry-after"], "30")  // the request of second 1000 leaves at 1060
        XCTAssertNotNil(limiter.admit(k, now: 1059))
        XCTAssertNil(limiter.admit(k, now: 1060))
        XCTAssertNotNil(limiter.admit(k, now: 1061))
        // Another key has its own window; a key without limits has none at all.
        XCTAssertNil(limiter.admit(key("b", rpm: 1), now: 1061))
        XCTAssertNil(limiter.admit(key("c"), now: 1061))
        XCTAssertEqual(limiter.trackedCount, 2)
    }

    func testTokensPerMinuteCountAnsweredTokens() throws {
        let limiter = KeyLimiter()
        let k = key("t", tpm: 100)
        XCTAssertNil(limiter.admit(k, now: 0))
        limiter.record(keyID: "t", tokens: 60, costUSD: 0, now: 1)
        XCTAssertNil(limiter.admit(k, now: 2))
        limiter.record(keyID: "t", tokens: 50, costUSD: 0, now: 5)
        let refused = try XCTUnwrap(limiter.admit(k, now: 10))
        XCTAssertEqual(refused.type, "tokens")
        XCTAssertEqual(refused.headers["retry-after"], "51")  // 60 tokens of second 1 leave at 61
        XCTAssertNil(limiter.admit(k, now: 61))
        limiter.record(keyID: "unknown", tokens: 1_000_000, costUSD: 5, now: 61)
        XCTAssertEqual(limiter.trackedCount, 1)
    }

    func testTheBudgetStartsFromTheLoggedSpendAndAccumulates() throws {
        let limiter = KeyLimiter()
        let k = key("b", budget: 1.0)
        limiter.track(keyID: "b", spentUSD: 0.9)
        XCTAssertNil(limiter.admit(k, now: 0))
        limiter.record(keyID: "b", tokens: 10, costUSD: 0.1, now: 0)
        let refused = try XCTUnwrap(limiter.admit(k, now: 0))
        XCTAssertEqual(refused.code, "budget_exceeded")
        XCTAssertEqual(refused.headers["x-should-retry"], "false")
        XCTAssertNotNil(refused.headers["retry-after"])
        limiter.retain([])
        XCTAssertEqual(limiter.trackedCount, 0)
    }

    func testTheLimiterIsSafeUnderConcurrentUse() {
        let limiter = KeyLimiter()
        let k = key("c", rpm: 500)
        let admitted = ManagedAtomicCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<200 where limiter.admit(k, now: 7) == nil { admitted.increment() }
        }
        XCTAssertEqual(admitted.value, 500)
    }

    func testAdminSessionsAreBoundToTheKeyAndExpire() {
        let access = AdminAccess(adminKey: "admin-key-0123456789", metricsRequireAdmin: true)
        let session = access.newSession(nowSeconds: 1000)
        XCTAssertFalse(session.contains("admin-key"))
        XCTAssertTrue(access.validSession(session, nowSeconds: 1001))
        XCTAssertFalse(access.validSession(session, nowSeconds: 1000 + AdminAccess.sessionSeconds))
        XCTAssertFalse(AdminAccess(adminKey: "another-admin-key-012", metricsRequireAdmin: false).validSession(session, nowSeconds: 1001))
        XCTAssertFalse(access.validSession("9999999999." + String(repeating: "0", count: 64), nowSeconds: 1001))
        XCTAssertFalse(access.validSession("garbage", nowSeconds: 1001))
        XCTAssertTrue(access.matches("admin-key-0123456789"))
        XCTAssertFalse(access.matches("admin-key-012345678"))
        var request = HTTPRequest(method: "GET", target: "/")
        request.headers.add("Cookie", "a=b; \(AdminAccess.cookieName)=\(session)")
        XCTAssertEqual(access.check(request, withCookie: true, nowSeconds: 1001), .allowed)
        XCTAssertEqual(access.check(request, withCookie: false, nowSeconds: 1001), .unauthenticated)
        XCTAssertTrue(AdminAccess.isLoopback("127.0.0.1:5000") && AdminAccess.isLoopback("[::1]:80"))
        XCTAssertFalse(AdminAccess.isLoopback("10.0.0.1:5000") || AdminAccess.isLoopback("[2001:db8::1]:80"))
        XCTAssertEqual(AdminAccess(adminKey: nil, metricsRequireAdmin: true).metricsRequireAdmin, false)
    }
}

extension APIKeyAuthenticator.Outcome {
    var isAuthenticated: Bool { if case .authenticated = self { true } else { false } }
}

/// A counter for concurrentPerform.
final class ManagedAtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
