#if canImport(Glibc)
import Glibc
#endif

/// The `Retry-After` header (RFC 9110 §10.2.3): either `delay-seconds` (digits only) or an HTTP-date in any of
/// the three forms a recipient must accept (§5.6.7): the preferred IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`
/// and the obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`.
/// Anything else (a sign, a fraction, a time zone other than GMT, a day 31 of February...) is refused with nil,
/// and the retry falls back to its own backoff. Pure functions, any thread.
public enum RetryAfter {
    /// Seconds to wait from `now` (Unix seconds), or nil when `value` is not a valid Retry-After. A date in the
    /// past is 0 (retry now).
    public static func seconds(_ value: String, now: Int64) -> Double? {
        let bytes = Array(value.utf8.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed())
        guard !bytes.isEmpty, bytes.count <= 64 else { return nil }
        if bytes.allSatisfy(isDigit) {
            // 1*DIGIT; an absurd number of digits is simply "very long".
            var total: Int64 = 0
            for byte in bytes {
                total = total * 10 + Int64(byte - 0x30)
                if total > 1_000_000_000 { return 1e9 }
            }
            return Double(total)
        }
        guard let date = httpDate(bytes) else { return nil }
        return Double(max(0, date - now))
    }

    /// Seconds to wait for `value` from the current wall clock.
    public static func seconds(_ value: String) -> Double? {
        seconds(value, now: Int64(time(nil)))
    }

    /// Unix seconds of an HTTP-date in one of its three forms, or nil.
    static func httpDate(_ b: [UInt8]) -> Int64? {
        var cursor = Cursor(bytes: b)
        // The day name ends at ',' (IMF-fixdate: 3 letters, RFC 850: the full name) or ' ' (asctime).
        let name = cursor.letters()
        if cursor.take(0x2C) {
            guard cursor.take(0x20) else { return nil }
            if name.count == 3, shortDays.contains(name) {
                // IMF-fixdate: DD SP Mon SP YYYY SP hh:mm:ss SP GMT
                guard let day = cursor.digits(2), cursor.take(0x20), let month = cursor.month(), cursor.take(0x20),
                      let year = cursor.digits(4), cursor.take(0x20), let time = cursor.timeOfDay(), cursor.take(0x20),
                      cursor.gmtAtEnd() else { return nil }
                return epoch(year: year, month: month, day: day, time: time)
            }
            guard longDays.contains(name) else { return nil }
            // RFC 850: DD-Mon-YY SP hh:mm:ss SP GMT
            guard let day = cursor.digits(2), cursor.take(0x2D), let month = cursor.month(), cursor.take(0x2D),
                  let yy = cursor.digits(2), cursor.take(0x20), let time = cursor.timeOfDay(), cursor.take(0x20),
                  cursor.gmtAtEnd() else { return nil }
            return epoch(year: fullYear(yy), month: month, day: day, time: time)
        }
        // asctime: Mon SP (DD | SP D) SP hh:mm:ss SP YYYY
        guard name.count == 3, shortDays.contains(name), cursor.take(0x20), let month = cursor.month(),
              cursor.take(0x20) else { return nil }
        let day: Int
        if cursor.take(0x20) {
            guard let one = cursor.digits(1) else { return nil }
            day = one
        } else {
            guard let two = cursor.digits(2) else { return nil }
            day = two
        }
        guard cursor.take(0x20), let time = cursor.timeOfDay(), cursor.take(0x20), let year = cursor.digits(4),
              cursor.atEnd else { return nil }
        return epoch(year: year, month: month, day: day, time: time)
    }

    /// RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is the most recent past year with
    /// those digits.
    static func fullYear(_ yy: Int, currentYear: Int = currentUTCYear()) -> Int {
        var year = currentYear - currentYear % 100 + yy
        if year > currentYear + 50 { year -= 100 }
        return year
    }

    static func currentUTCYear() -> Int {
        var now = time(nil)
        var parts = tm()
        guard gmtime_r(&now, &parts) != nil else { return 2000 }
        return Int(parts.tm_year) + 1900
    }

    private static func epoch(year: Int, month: Int, day: Int, time: Int) -> Int64? {
        guard year >= 1970, year <= 9999, day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        return Int64(daysFromCivil(year: year, month: month, day: day)) * 86_400 + Int64(time)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (month 1...12).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    private static let shortDays: Set<String> = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let longDays: Set<String> = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private struct Cursor {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func letters() -> String {
            let start = index
            while index < bytes.count, (bytes[index] | 0x20) >= 0x61, (bytes[index] | 0x20) <= 0x7A { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        /// Exactly `count` digits.
        mutating func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + count] {
                guard RetryAfter.isDigit(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            index += count
            return value
        }

        /// A three-letter month name (case-sensitive, as the grammar has it), 1...12.
        mutating func month() -> Int? {
            guard index + 3 <= bytes.count else { return nil }
            let name = String(decoding: bytes[index..<index + 3], as: UTF8.self)
            guard let position = RetryAfter.months.firstIndex(of: name) else { return nil }
            index += 3
            return position + 1
        }

        /// hh:mm:ss as seconds into the day (a leap second 60 is allowed, as the grammar does).
        mutating func timeOfDay() -> Int? {
            guard let h = digits(2), take(0x3A), let m = digits(2), take(0x3A), let s = digits(2),
                  h < 24, m < 60, s <= 60 else { return nil }
            return h * 3600 + m * 60 + s
        }

        mutating func gmtAtEnd() -> Bool {
            take(0x47) && take(0x4D) && take(0x54) && atEnd
        }
    }
}
