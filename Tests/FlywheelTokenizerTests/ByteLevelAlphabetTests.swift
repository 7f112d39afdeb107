import XCTest
@testable import FlywheelTokenizer

final class ByteLevelAlphabetTests: XCTestCase {
    func testEveryByteHasItsOwnPrintableScalar() {
        let scalars = ByteLevelAlphabet.scalarForByte
        XCTAssertEqual(Set(scalars).count, 256)
        XCTAssertEqual(scalars[0x20], 0x120)  // "Ġ"
        XCTAssertEqual(scalars[0x0A], 0x10A)  // "Ċ"
        XCTAssertEqual(scalars[Int(UInt8(ascii: "A"))], 0x41)
        XCTAssertEqual(scalars[0xAD], 0x143)  // soft hyphen is the last shifted byte
    }

    func testEncodeThenDecodeRestoresEveryByte() {
        let bytes = (0 ... 255).map { UInt8($0) }
        var spelled: [UInt8] = []
        ByteLevelAlphabet.encode(bytes, into: &spelled)
        XCTAssertEqual(ByteLevelAlphabet.decode(String(decoding: spelled, as: UTF8.self)), bytes)
        XCTAssertEqual(ByteLevelAlphabet.decode("ĠhelloĊ"), Array(" hello\n".utf8))
    }

    func testScalarsOutsideTheAlphabetDecodeAsTheirUTF8() {
        XCTAssertEqual(ByteLevelAlphabet.decode("中"), Array("中".utf8))
        XCTAssertNil(ByteLevelAlphabet.byte(for: "\u{0144}"))
    }
}
