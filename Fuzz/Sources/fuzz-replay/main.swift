import Foundation
import FuzzHarness

// Runs a harness once over each input, without libFuzzer: `fuzz-replay <target> <file or directory>...`,
// or `fuzz-replay --all <corpus root>` for every target over <corpus root>/<target>/. The committed corpora
// replayed this way are the cheap regression check; a violated invariant stops the process like a crash.

func inputs(at path: String) -> [String] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        FileHandle.standardError.write(Data("fuzz-replay: no such file or directory: \(path)\n".utf8))
        exit(2)
    }
    guard isDirectory.boolValue else { return [path] }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.filter { !$0.hasPrefix(".") }.sorted().map { path + "/" + $0 }
}

func replay(_ target: FuzzTarget, _ paths: [String]) -> Int {
    var count = 0
    for path in paths.flatMap(inputs(at:)) {
        guard let data = FileManager.default.contents(atPath: path) else {
            FileHandle.standardError.write(Data("fuzz-replay: cannot read \(path)\n".utf8))
            exit(2)
        }
        data.withUnsafeBytes { target.run($0) }
        count += 1
    }
    return count
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.count == 2, arguments[0] == "--all" {
    for target in FuzzTarget.allCases {
        let count = replay(target, [arguments[1] + "/" + target.rawValue])
        print("\(target.rawValue): \(count) inputs, no invariant violated")
    }
} else if arguments.count >= 2, let target = FuzzTarget(rawValue: arguments[0]) {
    let count = replay(target, Array(arguments.dropFirst()))
    print("\(target.rawValue): \(count) inputs, no invariant violated")
} else {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
    FileHandle.standardError.write(Data("usage: fuzz-replay <\(names)> <file or directory>...\n       fuzz-replay --all <corpus root>\n".utf8))
    exit(2)
}
