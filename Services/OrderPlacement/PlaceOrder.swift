import Catalogue
import DomainEvents

/// The body of `POST /orders`, and what may be wrong with it. Apart from the service, so that a fuzzer can drive
/// the decoding and the checks without a server (`Fuzz/`).
public struct PlaceOrder: Decodable, Sendable {
    public struct Line: Decodable, Sendable {
        public let productId: String
        public let quantity: Int
    }

    public let customerId: String
    public let lines: [Line]

    public static let maximumLines = 50
    public static let quantities = 1...100

    /// A request that is well-formed JSON but cannot be placed: what is wrong and in which field, for a 422.
    public struct Problem: Error, Equatable, Sendable {
        public let message: String
        public let field: String
    }

    /// The first problem found, or nil when the order can be placed.
    public func problem(in catalogue: Catalogue) -> Problem? {
        // ASCII only, as docs/openapi.yaml says: the ID travels in events, whose IDs the contract limits to ASCII.
        guard (1...64).contains(customerId.utf8.count), ContractValues.isIdentifier(customerId), !customerId.contains(":") else {
            return Problem(message: "customerId must be 1 to 64 letters, digits, '-', '_' or '.'", field: "customerId")
        }
        guard (1...Self.maximumLines).contains(lines.count) else {
            return Problem(message: "an order has 1 to \(Self.maximumLines) lines", field: "lines")
        }
        var seen = Set<String>()
        for (index, line) in lines.enumerated() {
            guard catalogue.product(line.productId) != nil else {
                return Problem(message: "unknown product '\(line.productId)'", field: "lines[\(index)].productId")
            }
            guard Self.quantities.contains(line.quantity) else {
                return Problem(message: "quantity must be between 1 and 100", field: "lines[\(index)].quantity")
            }
            guard seen.insert(line.productId).inserted else {
                return Problem(message: "one line per product: '\(line.productId)' appears twice", field: "lines[\(index)].productId")
            }
        }
        return nil
    }
}
