import XCTest
@testable import FlywheelKernels

final class KernelPathTests: XCTestCase {
    func testEnvironmentForcesPortableAndOtherValuesAreIgnored() {
        #if arch(x86_64)
        XCTAssertEqual(KernelPath.select(environment: nil, cpuSupportsAVX2: true), .avx2)
        XCTAssertEqual(KernelPath.select(environment: "portable", cpuSupportsAVX2: true), .portable)
        XCTAssertEqual(KernelPath.select(environment: "PORTABLE", cpuSupportsAVX2: true), .portable)
        XCTAssertEqual(KernelPath.select(environment: "avx512", cpuSupportsAVX2: true), .avx2)
        XCTAssertEqual(KernelPath.select(environment: "avx512vnni", cpuSupportsAVX2: true), .avx2)
        #endif
        XCTAssertEqual(KernelPath.select(environment: nil, cpuSupportsAVX2: false), .portable)
        XCTAssertEqual(KernelPath.select(environment: "avx2", cpuSupportsAVX2: false), .portable)
    }

    func testAVX512VNNIIsPreferredAndTheEnvironmentCapsItAtAVX2OrPortable() {
        #if arch(x86_64)
        let select = { (env: String?, avx2: Bool, vnni: Bool) in
            KernelPath.select(environment: env, cpuSupportsAVX2: avx2, cpuSupportsAVX512VNNI: vnni)
        }
        XCTAssertEqual(select(nil, true, true), .avx512vnni)
        XCTAssertEqual(select("bogus", true, true), .avx512vnni)
        XCTAssertEqual(select("avx512vnni", true, true), .avx512vnni)
        XCTAssertEqual(select("avx2", true, true), .avx2)
        XCTAssertEqual(select("AVX2", true, true), .avx2)
        XCTAssertEqual(select("portable", true, true), .portable)
        XCTAssertEqual(select("avx512vnni", true, false), .avx2)
        // The AVX-512 path uses the AVX2 quantizer, so it needs AVX2 too.
        XCTAssertEqual(select(nil, false, true), .portable)
        #else
        XCTAssertEqual(KernelPath.select(environment: nil, cpuSupportsAVX2: true, cpuSupportsAVX512VNNI: true),
                       .portable)
        #endif
    }
}
