/// The limits of an `HTTPServer` that may change while it runs (`HTTPServer.updateLimits`): the timeouts and
/// the connection and body-budget caps apply to every connection from its next check, the header and body
/// sizes to connections accepted afterwards (a keep-alive connection keeps the parser it started with).
public struct HTTPServerLimits: Sendable, Equatable {
    public var maxHeaderBytes: Int
    public var maxBodyBytes: Int
    public var maxBufferedBodyBytes: Int
    public var maxConnections: Int
    public var requestTimeout: Double
    public var idleTimeout: Double
    public var writeTimeout: Double

    public init(maxHeaderBytes: Int, maxBodyBytes: Int, maxBufferedBodyBytes: Int, maxConnections: Int,
                requestTimeout: Double, idleTimeout: Double, writeTimeout: Double) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.maxBufferedBodyBytes = maxBufferedBodyBytes
        self.maxConnections = maxConnections
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
    }
}

extension HTTPServerConfiguration {
    /// The part of the configuration `HTTPServer.updateLimits` can change later.
    public var limits: HTTPServerLimits {
        get {
            HTTPServerLimits(maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes, maxBufferedBodyBytes: maxBufferedBodyBytes,
                             maxConnections: maxConnections, requestTimeout: requestTimeout, idleTimeout: idleTimeout,
                             writeTimeout: writeTimeout)
        }
        set {
            maxHeaderBytes = newValue.maxHeaderBytes
            maxBodyBytes = newValue.maxBodyBytes
            maxBufferedBodyBytes = newValue.maxBufferedBodyBytes
            maxConnections = newValue.maxConnections
            requestTimeout = newValue.requestTimeout
            idleTimeout = newValue.idleTimeout
            writeTimeout = newValue.writeTimeout
        }
    }
}
