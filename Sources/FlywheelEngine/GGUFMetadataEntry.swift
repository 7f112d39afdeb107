/// One metadata key/value pair, in file order.
public struct GGUFMetadataEntry: Equatable, Sendable {
    public let key: String
    public let value: GGUFValue

    public init(key: String, value: GGUFValue) {
        self.key = key
        self.value = value
    }
}
