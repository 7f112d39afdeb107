import Foundation
import XCTest
@testable import FlywheelOutput

final class LogLineEncodingTests: XCTestCase {
    private let hostile = "a\r\nb\u{1B}[31mc\u{7F}d\u{9B}e\\f\u{2028}g"

    func testTextEscapesEveryControlCharacterAndTheBackslash() {
        XCTAssertEqual(LogLineEncoding.escapedText(hostile), "a\\r\\nb\\e[31mc\\x7fd\\u{9b}e\\\\f\u{2028}g")
        XCTAssertEqual(LogLineEncoding.escapedText("plain ünïcode"), "plain ünïcode")
    }

    func testTextLineKeepsKeyValuePairsApart() {
        let line = LogLineEncoding.text(time: "T", level: .warn, message: "m\nforged", fields: [
            ("model", hostile), ("empty", ""), ("spaced", "a b"), ("eq", "k=v"), ("quote", "say \"hi\""), ("n", "5"),
        ])
        XCTAssertEqual(line, "T warn m\\nforged model=a\\r\\nb\\e[31mc\\x7fd\\u{9b}e\\\\f\u{2028}g empty=\"\" spaced=\"a b\" eq=\"k=v\" quote=\"say \\\"hi\\\"\" n=5")
        XCTAssertFalse(line.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
    }

    func testJSONLineParsesBackToTheSameStrings() throws {
        let line = LogLineEncoding.json(time: "T", level: .error, message: hostile, fields: [("model", hostile), ("msg", "dup")])
        XCTAssertFalse(line.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        XCTAssertEqual(object, ["time": "T", "level": "error", "msg": hostile, "model": hostile, "_msg": "dup"])
    }

    func testNamedNumericFieldsAreJSONNumbersOnlyWhenTheyAreNumbers() throws {
        let line = LogLineEncoding.json(time: "T", level: .info, message: "request",
                                        fields: [("status", "200"), ("duration_ms", "0.532"), ("bytes", "1e9"), ("model", "42")],
                                        numbers: ["status", "duration_ms", "bytes"])
        XCTAssertEqual(line, "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"request\",\"status\":200,\"duration_ms\":0.532,\"bytes\":\"1e9\",\"model\":\"42\"}")
        for text in ["", ".5", "5.", "1.2.3", "-1", "01", "NaN"] { XCTAssertFalse(LogLineEncoding.isPlainNumber(text), text) }
        for text in ["0", "0.5", "200", "15.059"] { XCTAssertTrue(LogLineEncoding.isPlainNumber(text), text) }
    }

    func testLevelsParseAndOrder() {
        XCTAssertEqual(LogLevel(name: "WARNING"), .warn)
        XCTAssertNil(LogLevel(name: "verbose"))
        XCTAssertTrue(LogLevel.debug < .info && LogLevel.info < .warn && LogLevel.warn < .error)
    }

    func testOutputFiltersByLevelAndWritesTheAccessLogFile() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let output = DaemonOutput(level: .warn, format: .json, descriptor: fds[1])
        output.info("hidden")
        output.warn("shown", [("k", "v")])
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID().uuidString).log").path
        defer { unlink(file) }
        try output.setAccessLog(file)
        output.access([("path", "/x")])
        output.flush()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fds[0], &buffer, buffer.count)
        let said = String(decoding: buffer[0..<max(0, n)], as: UTF8.self)
        XCTAssertFalse(said.contains("hidden"))
        XCTAssertTrue(said.contains("\"msg\":\"shown\",\"k\":\"v\""), said)
        XCTAssertTrue(try String(contentsOfFile: file, encoding: .utf8).contains("\"msg\":\"request\",\"path\":\"/x\""))
        XCTAssertThrowsError(try output.setAccessLog("/nonexistent-dir/access.log")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent-dir/access.log"), "\(error)")
        }
        XCTAssertTrue(output.recordsAccess)  // the previous destination stays
        try output.setAccessLog(nil)
        close(fds[0])
    }
}
