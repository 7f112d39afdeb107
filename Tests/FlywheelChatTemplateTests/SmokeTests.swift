import XCTest
@testable import FlywheelChatTemplate

final class FlywheelChatTemplateSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
