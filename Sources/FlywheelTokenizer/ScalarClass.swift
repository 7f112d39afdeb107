/// The character classes the pre-tokenizer regexes distinguish (`\p{L}`, `\p{N}`, `\s`, `[\r\n]`, ` `).
enum ScalarClass: UInt8 {
    /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
    case letter
    /// `\p{N}`: Nd, Nl, No.
    case number
    /// U+0020, the only character the regexes' optional ` ?` accepts.
    case space
    /// `\r` or `\n`.
    case newline
    /// Any other `\s` (Unicode White_Space): tab, NBSP, U+3000 ...
    case otherWhitespace
    /// Everything else: punctuation, symbols, marks, controls.
    case other

    var isWhitespace: Bool { self == .space || self == .newline || self == .otherWhitespace }

    init(_ scalar: Unicode.Scalar) {
        let value = scalar.value
        if value < 0x80 {
            self = Self.ascii[Int(value)]
            return
        }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            self = .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            self = .number
        default:
            self = scalar.properties.isWhitespace ? .otherWhitespace : .other
        }
    }

    private static let ascii: [ScalarClass] = (0 ..< 128).map { value in
        switch value {
        case 0x41 ... 0x5A, 0x61 ... 0x7A: return .letter
        case 0x30 ... 0x39: return .number
        case 0x20: return .space
        case 0x0A, 0x0D: return .newline
        case 0x09, 0x0B, 0x0C: return .otherWhitespace
        default: return .other
        }
    }
}
