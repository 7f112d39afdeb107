import XCTest
@testable import FlywheelKernels

final class KernelPathTests: XCTestCase {
    func testEnvironmentForcesPortableAndOtherValuesAreIgnored() {
        #if arch(x86_64)
        XCTAssertEqual(KernelPath.select(environment: nil, cpuSupportsAVX2: true), .avx2)
        XCTAssertEqual(KernelPath.select(environment: "portable", cpuSupportsAVX2: true), .portable)
        XCTAssertEqual(KernelPath.select(environment: "PORTABLE", cpuSupportsAVX2: true), .portable)
        XCTAssertEqual(KernelPath.select(environment: "avx512", cpuSupportsAVX2: true), .avx2)
        #endif
        XCTAssertEqual(KernelPath.select(environment: nil, cpuSupportsAVX2: false), .portable)
        XCTAssertEqual(KernelPath.select(environment: "avx2", cpuSupportsAVX2: false), .portable)
    }
}
