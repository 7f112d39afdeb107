/// Why `ServerSentEventParser.feed` refused its input.
public enum ServerSentEventParserError: Error, Equatable {
    /// One event (its pending line plus data so far) grew beyond `maxEventBytes`.
    case eventTooLarge(limit: Int)
}
