// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]
let optimizedHot: [SwiftSetting] = strict + [
    .unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
]

// The AVX2 kernels are compiled for Haswell-class x86-64 CPUs and only called after a CPU check at run
// time; on other architectures the target compiles empty and without these flags.
#if arch(x86_64)
let avx2Flags: [SwiftSetting] = [
    .unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c", "-target-cpu", "haswell"]),
]
// The AVX-512 VNNI kernels: Ice Lake server and later, likewise only called after a CPU check.
let avx512Flags: [SwiftSetting] = [
    .unsafeFlags(["-Xcc", "-mavx512f", "-Xcc", "-mavx512bw", "-Xcc", "-mavx512vl", "-Xcc", "-mavx512vnni",
                  "-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c", "-target-cpu", "icelake-server"]),
]
#else
let avx2Flags: [SwiftSetting] = []
let avx512Flags: [SwiftSetting] = []
#endif

let package = Package(
    name: "Flywheel",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "flywheel", targets: ["flywheel"]),
        // For the libFuzzer package under Fuzz/ only (it depends on this one by path): the parsers it drives.
        .library(name: "FlywheelFuzzable",
                 targets: ["FlywheelHTTP", "FlywheelJSON", "FlywheelEngine", "FlywheelTokenizer", "FlywheelChatTemplate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // C system libraries (module maps only).
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLinux"),

        // Deadline bookkeeping shared by the event loops and the upstream client.
        .target(name: "FlywheelTimers", swiftSettings: strict),
        // Sockets, addresses, system calls, epoll event loops with timers, clocks. Knows nothing of HTTP.
        .target(name: "FlywheelSockets", dependencies: ["CLinux", "FlywheelTimers"], swiftSettings: strict),
        // HTTP/1.1 parsing and writing over a transport (TCP, or TLS through OpenSSL), the server, SSE framing.
        // Knows nothing of OpenAI.
        .target(name: "FlywheelHTTP", dependencies: ["FlywheelSockets", "COpenSSL"], swiftSettings: strict),
        // libcurl multi client on the event loops: pooled connections, streaming, timeouts, retries, fallbacks.
        .target(name: "FlywheelUpstream", dependencies: ["CCurl", "FlywheelTimers"], swiftSettings: strict),
        // The SQLite log: schema, migrations, background batch writer, queries.
        .target(name: "FlywheelStore", dependencies: ["CSQLite"], swiftSettings: strict),
        // A small, fast JSON value type with parser and writer.
        .target(name: "FlywheelJSON", swiftSettings: strict),
        // The daemon's configuration: YAML (Yams) -> typed, validated values. Imports no other Flywheel module,
        // so commands that only read the log need not import the gateway.
        // The daemon's own output: levelled lines in text or JSON, escaped, written off the caller's thread; access log.
        .target(name: "FlywheelOutput", swiftSettings: strict),
        .target(name: "FlywheelConfig", dependencies: [.product(name: "Yams", package: "Yams")], swiftSettings: strict),
        // OpenAI wire format, route table, exchanges -> outcome -> ledger, feedback, metrics.
        .target(
            name: "FlywheelGateway",
            dependencies: ["FlywheelHTTP", "FlywheelSockets", "FlywheelUpstream", "FlywheelStore", "FlywheelJSON", "FlywheelEngine",
                           "FlywheelChatTemplate", "FlywheelConfig", "COpenSSL"],
            swiftSettings: strict),
        // The daemon's assembly: store, engine, upstream clients, gateway and HTTP server, started and stopped in order.
        .target(
            name: "FlywheelDaemon",
            dependencies: ["FlywheelGateway", "FlywheelConfig", "FlywheelHTTP", "FlywheelSockets", "FlywheelUpstream", "FlywheelStore",
                           "FlywheelEngine", "FlywheelLoop", "FlywheelOutput", "FlywheelRedaction", "FlywheelJSON"],
            swiftSettings: strict),
        // The flywheel's offline side: reports, export, eval, promotion (and next drift) over the log. Reads the store,
        // never imports the gateway.
        .target(name: "FlywheelLoop", dependencies: ["FlywheelStore", "FlywheelJSON", "FlywheelInspect", "FlywheelConfig", "FlywheelUpstream", "COpenSSL",
                                                     "FlywheelRedaction"],
                swiftSettings: strict),
        // The PII scrubber shared by `flywheel export` and the log's write-time redaction (`log.redact: pii`).
        .target(name: "FlywheelRedaction", swiftSettings: strict),
        // Reading the log for operators: `tail` and `show` formatting and follow mode.
        .target(name: "FlywheelInspect", dependencies: ["FlywheelStore", "FlywheelJSON"], swiftSettings: strict),
        // The command line: one file per subcommand, no logic.
        .executableTarget(
            name: "flywheel",
            dependencies: ["FlywheelDaemon", "FlywheelGateway", "FlywheelConfig", "FlywheelInspect", "FlywheelLoop", "FlywheelStore", "FlywheelEngine",
                           "FlywheelChatTemplate", "CLinux", "FlywheelOutput",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        // Int8 (Q8_0) matrix kernels and the compute thread pool the engine runs them on.
        // CPU feature check, spin-wait hint and prefetch for the kernels (C).
        .target(name: "CFlywheelKernels"),
        // The AVX2 kernels; only FlywheelKernels calls them, after checking the CPU.
        .target(
            name: "FlywheelKernelsAVX2", dependencies: ["CFlywheelKernels"],
            swiftSettings: optimizedHot + avx2Flags),
        // The AVX-512 VNNI kernels; likewise.
        .target(
            name: "FlywheelKernelsAVX512", dependencies: ["CFlywheelKernels"],
            swiftSettings: optimizedHot + avx512Flags),
        .target(
            name: "FlywheelKernels", dependencies: ["CFlywheelKernels", "FlywheelKernelsAVX2", "FlywheelKernelsAVX512"],
            swiftSettings: optimizedHot),
        // `swift run -c release kernel-bench`: GB/s of the int8 kernels and the pool's round trip.
        .executableTarget(
            name: "kernel-bench", dependencies: ["FlywheelKernels", "FlywheelKernelsAVX2", "FlywheelKernelsAVX512"],
            path: "Benchmarks/KernelBench", swiftSettings: optimizedHot),
        // Text <-> token ids from GGUF vocabularies: gpt2 byte-level BPE and llama SentencePiece.
        .target(name: "FlywheelTokenizer", swiftSettings: strict),
        // Chat templates: the Jinja subset that models' `tokenizer.chat_template`s use.
        .target(name: "FlywheelChatTemplate", dependencies: ["FlywheelJSON"], swiftSettings: strict),
        // Attention's float inner loops for AVX2 + FMA; the engine calls them only on the AVX2 kernel path.
        .target(name: "FlywheelEngineAVX2", swiftSettings: optimizedHot + avx2Flags),
        // Local inference: GGUF files, model weights, the forward pass, sampling, generation.
        .target(
            name: "FlywheelEngine",
            dependencies: ["FlywheelKernels", "FlywheelEngineAVX2", "FlywheelTokenizer", "FlywheelChatTemplate"],
            swiftSettings: optimizedHot),

        // What the test suites share: an OpenAI-compatible fake upstream, a raw scripted server for the upstream
        // client's edge cases, a blocking test client, temporary log databases and a harness that starts the real
        // gateway. Lives under Tests/ so it never ships in the product.
        .target(
            name: "FlywheelTesting",
            dependencies: ["FlywheelDaemon", "FlywheelGateway", "FlywheelConfig", "FlywheelHTTP", "FlywheelUpstream",
                           "FlywheelStore", "FlywheelJSON"],
            path: "Tests/FlywheelTesting", swiftSettings: strict),
        .testTarget(name: "FlywheelTimersTests", dependencies: ["FlywheelTimers"], swiftSettings: strict),
        .testTarget(name: "FlywheelSocketsTests", dependencies: ["FlywheelSockets"], swiftSettings: strict),
        .testTarget(name: "FlywheelHTTPTests", dependencies: ["FlywheelHTTP", "FlywheelSockets", "COpenSSL"], swiftSettings: strict),
        .testTarget(
            name: "FlywheelUpstreamTests", dependencies: ["FlywheelUpstream", "FlywheelTimers", "FlywheelTesting"],
            swiftSettings: strict),
        .testTarget(name: "FlywheelStoreTests", dependencies: ["FlywheelStore"], swiftSettings: strict),
        .testTarget(name: "FlywheelJSONTests", dependencies: ["FlywheelJSON"], swiftSettings: strict),
        .testTarget(name: "FlywheelConfigTests", dependencies: ["FlywheelConfig"], swiftSettings: strict),
        .testTarget(name: "FlywheelOutputTests", dependencies: ["FlywheelOutput"], swiftSettings: strict),
        .testTarget(name: "FlywheelLoopTests", dependencies: ["FlywheelLoop", "FlywheelStore"], swiftSettings: strict),
        .testTarget(name: "FlywheelRedactionTests", dependencies: ["FlywheelRedaction"], swiftSettings: strict),
        .testTarget(name: "FlywheelDaemonTests", dependencies: ["FlywheelDaemon", "FlywheelStore", "FlywheelConfig"], swiftSettings: strict),
        .testTarget(name: "FlywheelInspectTests", dependencies: ["FlywheelInspect"], swiftSettings: strict),
        .testTarget(
            name: "FlywheelGatewayTests",
            dependencies: ["FlywheelGateway", "FlywheelChatTemplate", "FlywheelJSON", "FlywheelTesting", "FlywheelStore",
                           "FlywheelConfig", "FlywheelHTTP"],
            swiftSettings: strict),
        .testTarget(
            name: "FlywheelKernelsTests",
            dependencies: ["FlywheelKernels", "FlywheelKernelsAVX2", "FlywheelKernelsAVX512"],
            swiftSettings: strict),
        .testTarget(
            name: "FlywheelTokenizerTests", dependencies: ["FlywheelTokenizer"],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "FlywheelChatTemplateTests", dependencies: ["FlywheelChatTemplate", "FlywheelJSON"],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "FlywheelEngineTests", dependencies: ["FlywheelEngine", "FlywheelEngineAVX2"],
            resources: [.copy("Fixtures")], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
