/// A request the parser refuses, with the status to answer (400, 413, 431, 501, 505) and a short message.
struct HTTPParserError: Error, Equatable {
    var status: Int
    var message: String
}
