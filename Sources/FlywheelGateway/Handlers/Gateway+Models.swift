import FlywheelHTTP
import FlywheelJSON

extension Gateway {
    /// Model ids longer than this are refused before any lookup.
    static let maxModelIDBytes = 256

    /// `GET /v1/models`: local models, routed names and the upstreams' own lists, merged; for a virtual key with
    /// `--models`, only those it may use.
    func listModels(_ request: GatewayRequest) {
        let writer = request.writer
        let requestID = request.requestID
        let key = request.clientKey
        catalog.list(loop: writer.eventLoop) { models, complete in
            let models = key.map { key in models.filter { key.allows($0["id"]?.stringValue ?? "") } } ?? models
            if models.isEmpty && !complete {
                return writer.send(OpenAIError.upstreamUnavailable("The upstream's model list could not be fetched.").response(requestID: requestID))
            }
            writer.send(HTTPResponse.json(["object": "list", "data": .array(models)], requestID: requestID))
        }
    }

    /// `GET /v1/models/{id}` (the SDKs' `models.retrieve`): the model's entry from the same merged list.
    func retrieveModel(_ request: GatewayRequest) {
        let writer = request.writer
        let requestID = request.requestID
        guard let id = request.pathRest.flatMap(Self.percentDecoded), !id.isEmpty, id.utf8.count <= Self.maxModelIDBytes else {
            return writer.send(OpenAIError.invalidRequest("The model id in the path is not valid.", param: "model").response(requestID: requestID))
        }
        let key = request.clientKey
        catalog.list(loop: writer.eventLoop) { models, complete in
            if let model = models.first(where: { $0["id"]?.stringValue == id }), key?.allows(id) ?? true {
                return writer.send(HTTPResponse.json(model, requestID: requestID))
            }
            if !complete {
                return writer.send(OpenAIError.upstreamUnavailable("The upstream's model list could not be fetched.").response(requestID: requestID))
            }
            writer.send(OpenAIError.modelNotFound(id).response(requestID: requestID))
        }
    }

    /// `%XX` escapes decoded; nil for a malformed escape or bytes that are not UTF-8.
    static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        func hex(_ c: UInt8?) -> UInt8? {
            guard let c else { return nil }
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let hi = hex(iterator.next()), let lo = hex(iterator.next()) else { return nil }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
