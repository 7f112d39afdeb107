/// C `strftime` for the directives chat templates use (`strftime_now("%d %b %Y")` in Llama 3.x),
/// in UTC and the C locale, from seconds since the Unix epoch. Unknown directives are copied
/// through unchanged, as glibc does.
enum StrftimeFormatter {
    private static let weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    private static let months = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ]

    static func format(_ format: String, secondsSince1970: Int) -> String {
        let days = Int((Double(secondsSince1970) / 86_400).rounded(.down))
        let secondsOfDay = secondsSince1970 - days * 86_400
        let (year, month, day) = civilDate(daysSince1970: days)
        let weekday = ((days % 7) + 7 + 3) % 7  // 1970-01-01 was a Thursday; 0 = Monday
        let dayOfYear = days - daysSince1970(year: year, month: 1, day: 1) + 1
        let hour = secondsOfDay / 3600
        let minute = secondsOfDay % 3600 / 60
        let second = secondsOfDay % 60

        var out = ""
        var iterator = format.makeIterator()
        while let character = iterator.next() {
            guard character == "%" else {
                out.append(character)
                continue
            }
            guard let directive = iterator.next() else {
                out.append("%")
                break
            }
            switch directive {
            case "a": out += String(weekdays[weekday].prefix(3))
            case "A": out += weekdays[weekday]
            case "b", "h": out += String(months[month - 1].prefix(3))
            case "B": out += months[month - 1]
            case "d": out += pad(day, 2)
            case "e": out += day < 10 ? " \(day)" : "\(day)"
            case "m": out += pad(month, 2)
            case "y": out += pad(year % 100, 2)
            case "Y": out += String(year)
            case "H": out += pad(hour, 2)
            case "I": out += pad(hour % 12 == 0 ? 12 : hour % 12, 2)
            case "M": out += pad(minute, 2)
            case "S": out += pad(second, 2)
            case "p": out += hour < 12 ? "AM" : "PM"
            case "j": out += pad(dayOfYear, 3)
            case "F": out += "\(year)-\(pad(month, 2))-\(pad(day, 2))"
            case "T": out += "\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2))"
            case "%": out += "%"
            default:
                out.append("%")
                out.append(directive)
            }
        }
        return out
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    private static func civilDate(daysSince1970 days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
