#if canImport(Glibc)
import Glibc
#endif

/// The `Date:` header line, formatted (IMF-fixdate) at most once per second. One per event loop; not thread-safe.
struct HTTPDateCache {
    private var second: time_t = -1
    private var line: [UInt8] = []

    /// "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    mutating func headerLine() -> [UInt8] {
        let now = time(nil)
        if now != second {
            second = now
            format(now)
        }
        return line
    }

    private mutating func format(_ now: time_t) {
        var clock = now
        var parts = tm()
        gmtime_r(&clock, &parts)
        let days: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months: [StaticString] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func twoDigits(_ value: Int32, into bytes: inout [UInt8]) {
            bytes.append(UInt8(48 + value / 10))
            bytes.append(UInt8(48 + value % 10))
        }
        line.removeAll(keepingCapacity: true)
        line.appendASCII("Date: ")
        line.appendASCII(days[Int(parts.tm_wday) % 7])
        line.appendASCII(", ")
        twoDigits(parts.tm_mday, into: &line)
        line.append(UInt8(ascii: " "))
        line.appendASCII(months[Int(parts.tm_mon) % 12])
        line.append(UInt8(ascii: " "))
        line.appendDecimal(Int(parts.tm_year) + 1900)
        line.append(UInt8(ascii: " "))
        twoDigits(parts.tm_hour, into: &line)
        line.append(UInt8(ascii: ":"))
        twoDigits(parts.tm_min, into: &line)
        line.append(UInt8(ascii: ":"))
        twoDigits(parts.tm_sec, into: &line)
        line.appendASCII(" GMT\r\n")
    }
}
