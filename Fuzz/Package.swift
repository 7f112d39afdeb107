// swift-tools-version:6.0
// libFuzzer harnesses for Flywheel's parsers of untrusted input. A separate package so that the main build
// and `swift test` never see fuzzer flags: scripts/fuzz builds it with `-sanitize=fuzzer,address`.
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

/// One libFuzzer executable per target: `LLVMFuzzerTestOneInput` calls into `FuzzHarness`, and `main` hands
/// control to libFuzzer's driver. (Not `-parse-as-library` with libFuzzer's own `main`: SwiftPM links debug
/// executables with `main` defined as `<module>_main`, which such an executable never defines.)
func fuzzer(_ name: String) -> Target {
    .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzHarness", "CLibFuzzerDriver"], swiftSettings: strict)
}

let package = Package(
    name: "FlywheelFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "Flywheel", path: "..")],
    targets: [
        // The harnesses: input bytes -> the parser under test -> invariants checked (a violation traps).
        .target(
            name: "FuzzHarness",
            dependencies: [.product(name: "FlywheelFuzzable", package: "Flywheel")],
            swiftSettings: strict),
        // The declaration of libFuzzer's `LLVMFuzzerRunDriver`.
        .target(name: "CLibFuzzerDriver"),
        fuzzer("http"),
        fuzzer("json"),
        fuzzer("gguf"),
        fuzzer("tokenizer"),
        fuzzer("chat-template"),
        // Runs every harness once over files or directories, without libFuzzer (the corpus regression check).
        .executableTarget(name: "fuzz-replay", dependencies: ["FuzzHarness"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
