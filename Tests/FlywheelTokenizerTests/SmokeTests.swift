import XCTest
@testable import FlywheelTokenizer

final class FlywheelTokenizerSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
