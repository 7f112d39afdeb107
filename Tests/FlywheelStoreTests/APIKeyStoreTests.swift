import Foundation
import XCTest
@testable import FlywheelStore

final class APIKeyStoreTests: XCTestCase {
    func testKeysAreStoredWithTheirLimitsAndEveryChangeMovesTheMarker() throws {
        let path = try StoreTestSupport.databasePath(self)
        let store = try SQLiteAPIKeyStore(path: path)
        XCTAssertEqual(try store.changeMarker(), 0)
        let key = StoredAPIKey(id: "0123456789ab", name: "team\r\nx", saltHex: "00", hashHex: "11", models: ["gpt-4o*", "o1"],
                               requestsPerMinute: 5, tokensPerMinute: 900, budgetUSD: 2.5, expiresAtMillis: 99, createdAtMillis: 7)
        try store.create(key, source: "test")
        let m1 = try store.changeMarker()
        XCTAssertGreaterThan(m1, 0)
        XCTAssertEqual(try store.all(), [key])
        // A live name cannot be reused, nor an id; after a revoke the name is free again.
        XCTAssertThrowsError(try store.create(StoredAPIKey(id: "ffffffffffff", name: "team\r\nx", saltHex: "0", hashHex: "0"), source: "t"))
        XCTAssertThrowsError(try store.create(StoredAPIKey(id: "0123456789ab", name: "other", saltHex: "0", hashHex: "0"), source: "t"))
        XCTAssertEqual(try store.changeMarker(), m1)
        try store.revoke(id: "0123456789ab", atMillis: 50, source: "test")
        XCTAssertGreaterThan(try store.changeMarker(), m1)
        XCTAssertEqual(try store.all().first?.revokedAtMillis, 50)
        XCTAssertThrowsError(try store.revoke(id: "0123456789ab", atMillis: 60, source: "test"))
        XCTAssertThrowsError(try store.revoke(id: "nope", atMillis: 60, source: "test"))
        try store.create(StoredAPIKey(id: "ffffffffffff", name: "team\r\nx", saltHex: "0", hashHex: "0"), source: "t")
        XCTAssertEqual(try store.all().count, 2)
    }

    func testSpendAndUsageAreSummedFromTheLogWithoutShadowRuns() throws {
        let path = try StoreTestSupport.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        var a = StoreTestSupport.record("r1")
        a.clientKeyID = "k1"; a.costUSD = 0.25; a.totalTokens = 10
        var b = StoreTestSupport.record("r2")
        b.clientKeyID = "k1"; b.costUSD = 0.5; b.totalTokens = 20
        var shadow = StoreTestSupport.record("r3")
        shadow.clientKeyID = "k1"; shadow.costUSD = 9; shadow.shadowOf = "r2"
        var other = StoreTestSupport.record("r4")
        other.clientKeyID = "k2"; other.costUSD = 1
        for r in [a, b, shadow, other, StoreTestSupport.record("r5")] { writer.enqueue(r) }
        writer.close()
        let store = try SQLiteAPIKeyStore(path: path)
        XCTAssertEqual(try store.spend(keyID: "k1"), 0.75, accuracy: 1e-9)
        XCTAssertEqual(try store.spend(keyID: "none"), 0)
        let usage = try store.usage()
        XCTAssertEqual(usage["k1"], APIKeyUsage(requests: 2, totalTokens: 30, costUSD: 0.75))
        XCTAssertEqual(usage["k2"]?.requests, 1)
        XCTAssertEqual(usage.count, 2)
    }
}
