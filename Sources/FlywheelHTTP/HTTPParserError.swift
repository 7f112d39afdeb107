/// A request the parser refuses, with the status to answer (400, 413, 431, 501, 505) and a short message.
@_spi(Fuzzing) public struct HTTPParserError: Error, Equatable {
    public var status: Int
    public var message: String
}
