import FlywheelJSON
import FlywheelStore

/// A logged chat completion read back, as export, eval, drift and corrections all read it.
extension RequestRecord {
    /// The request's `messages` and `tools` (nil when absent or null), or nil when the body cannot be read or has
    /// no messages array.
    public var chatPrompt: (messages: [JSON], tools: JSON?)? {
        guard let request = try? JSONParser.parse(requestJSON, limits: .depthOnly),
              let messages = request["messages"]?.arrayValue else { return nil }
        let tools = request["tools"]
        return (messages, tools == .null ? nil : tools)
    }

    /// The logged answer, the response's `choices[0].message` (whatever JSON it is), or nil.
    public var chatMessage: JSON? {
        responseJSON.flatMap { try? JSONParser.parse($0, limits: .depthOnly) }?["choices"]?[0]?["message"]
    }

    /// `chatMessage` when it is an object (a message that can be used as an answer).
    var chatAnswer: JSON? {
        chatMessage.flatMap { $0.objectValue != nil ? $0 : nil }
    }
}
