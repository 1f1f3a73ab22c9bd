/// Emporium's topics. Each has exactly one writer, and each has a dead-letter twin, `<topic>.dlq`.
public enum Topic: String, Sendable, CaseIterable, Codable {
    case orders
    case payments
    case inventory
    case notifications

    public var name: String { rawValue }

    /// Where consumers of this topic put the messages they cannot process.
    public var deadLetterName: String { rawValue + ".dlq" }

    /// Every topic Emporium uses, dead-letter topics included.
    public static var allNames: [String] { allCases.flatMap { [$0.name, $0.deadLetterName] } }
}
