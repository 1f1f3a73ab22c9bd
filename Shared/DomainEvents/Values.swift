/// The value rules of docs/contract.md ("Values") that decoding JSON into the payload types does not enforce.
/// A consumer checks them before any handler runs, so that no value from a topic can trap an arithmetic
/// operation, escape a file name, or put a service's state out of the contract's bounds.
public enum ContractValues {
    /// IDs: 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`. No `/`, so an ID is always a safe file name part.
    public static let identifierBytes = 128
    public static let quantities = 1...1_000_000
    public static let stockLevels = 0...1_000_000_000
    /// Up to ten billion in currency units: sums of thousands of them stay far from `Int.max`.
    public static let cents = 0...1_000_000_000_000
    public static let lineCounts = 1...100
    public static let textBytes = 1_024

    public static func isIdentifier(_ value: String) -> Bool {
        let bytes = value.utf8
        return (1...identifierBytes).contains(bytes.count) && bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
                true
            default:
                false
            }
        }
    }
}

extension DomainEvent {
    /// The first value that breaks the contract, as a sentence naming the field; nil if there is none.
    public var valueViolation: String? {
        var check = ValueCheck()
        switch self {
        case .orderPlaced(let e):
            check.identifiers(["orderId": e.orderId, "customerId": e.customerId])
            check.range(e.lines.count, ContractValues.lineCounts, "the number of lines")
            var products = Set<String>()
            var total = 0
            for (index, line) in e.lines.enumerated() {
                check.identifiers(["lines[\(index)].productId": line.productId])
                check.range(line.quantity, ContractValues.quantities, "lines[\(index)].quantity")
                check.range(line.unitPriceCents, ContractValues.cents, "lines[\(index)].unitPriceCents")
                if !products.insert(line.productId).inserted { check.fail("lines has two lines for \(line.productId)") }
                // Checked arithmetic: out-of-range values are reported above, and must not trap on the way.
                let (amount, productOverflow) = line.quantity.multipliedReportingOverflow(by: line.unitPriceCents)
                let (sum, sumOverflow) = total.addingReportingOverflow(amount)
                total = productOverflow || sumOverflow ? Int.max : sum
            }
            check.range(e.totalCents, ContractValues.cents, "totalCents")
            if check.problem == nil, total != e.totalCents { check.fail("totalCents \(e.totalCents) is not the lines' sum \(total)") }
            check.currency(e.currency)
        case .orderConfirmed(let e):
            check.identifiers(["orderId": e.orderId, "customerId": e.customerId])
            check.range(e.totalCents, ContractValues.cents, "totalCents")
        case .orderCancelled(let e):
            check.identifiers(["orderId": e.orderId, "customerId": e.customerId])
            check.text(e.detail, "detail")
        case .paymentAuthorized(let e):
            check.payment(e.orderId, e.customerId, e.paymentId, e.amountCents, e.currency)
        case .paymentDeclined(let e):
            check.identifiers(["orderId": e.orderId, "customerId": e.customerId])
            check.text(e.reason, "reason")
        case .paymentCaptured(let e):
            check.payment(e.orderId, e.customerId, e.paymentId, e.amountCents, e.currency)
        case .paymentRefunded(let e):
            check.payment(e.orderId, e.customerId, e.paymentId, e.amountCents, e.currency)
        case .stockReserved(let e):
            check.identifiers(["productId": e.productId, "orderId": e.orderId])
            check.range(e.quantity, ContractValues.quantities, "quantity")
            check.range(e.available, ContractValues.stockLevels, "available")
            check.range(e.lineCount, ContractValues.lineCounts, "lineCount")
        case .stockShortage(let e):
            check.identifiers(["productId": e.productId, "orderId": e.orderId])
            check.range(e.requested, ContractValues.quantities, "requested")
            check.range(e.available, ContractValues.stockLevels, "available")
        case .stockReleased(let e):
            check.identifiers(["productId": e.productId, "orderId": e.orderId])
            check.range(e.quantity, ContractValues.quantities, "quantity")
            check.range(e.available, ContractValues.stockLevels, "available")
        case .stockRestocked(let e):
            check.identifiers(["productId": e.productId])
            check.range(e.quantity, 1...ContractValues.stockLevels.upperBound, "quantity")
            check.range(e.available, ContractValues.stockLevels, "available")
        case .notificationSent(let e):
            check.identifiers(["notificationId": e.notificationId, "orderId": e.orderId, "customerId": e.customerId])
            check.text(e.channel, "channel")
            check.text(e.messageId, "messageId")
        }
        return check.problem
    }
}

/// Keeps the first problem found.
private struct ValueCheck {
    var problem: String?

    mutating func fail(_ sentence: String) {
        if problem == nil { problem = sentence }
    }

    mutating func identifiers(_ fields: KeyValuePairs<String, String>) {
        for (field, value) in fields where !ContractValues.isIdentifier(value) {
            fail("\(field) '\(value.prefix(40))\(value.count > 40 ? "…" : "")' is not 1 to \(ContractValues.identifierBytes) letters, digits, '-', '_', '.' or ':'")
        }
    }

    mutating func range(_ value: Int, _ allowed: ClosedRange<Int>, _ field: String) {
        if !allowed.contains(value) { fail("\(field) \(value) is outside \(allowed.lowerBound)…\(allowed.upperBound)") }
    }

    mutating func text(_ value: String, _ field: String) {
        if value.utf8.count > ContractValues.textBytes { fail("\(field) is longer than \(ContractValues.textBytes) bytes") }
    }

    mutating func currency(_ value: String) {
        if !(value.utf8.count == 3 && value.utf8.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) {
            fail("currency '\(value.prefix(10))' is not an ISO 4217 code")
        }
    }

    mutating func payment(_ orderId: String, _ customerId: String, _ paymentId: String, _ amountCents: Int, _ currency: String) {
        identifiers(["orderId": orderId, "customerId": customerId, "paymentId": paymentId])
        range(amountCents, ContractValues.cents, "amountCents")
        self.currency(currency)
    }
}
