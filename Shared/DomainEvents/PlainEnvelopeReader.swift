/// Reads an envelope the way Emporium's writers write one, without `Codable`. Every consumed event went through
/// `JSONDecoder`, at 8–15 µs an envelope on this machine (this reader takes 2–3 µs); with the encoding, that was
/// a tenth of the shop's CPU.
///
/// It takes only the plain form: every field the contract names and no other, each once; strings without escapes
/// or control characters; integers without fraction, exponent or leading zero. For anything else it returns nil
/// and `Wire.decode` asks `JSONDecoder`, which decides, and words the error. So what this reader accepts,
/// `JSONDecoder` decodes to the same envelope (`PlainEnvelopeReaderTests` checks that on every event type and on
/// thousands of damaged copies), and what it refuses costs one more attempt.
enum PlainEnvelopeReader {
    static func envelope(from bytes: UnsafeRawBufferPointer) -> Envelope? {
        var parser = Parser(bytes: bytes)
        guard let root = parser.document()?.object else { return nil }
        var fields = Fields(root)
        guard let typeName = fields.string("type"), let type = EventType(rawValue: typeName),
              let eventId = fields.string("eventId"), let version = fields.integer("version"),
              let key = fields.string("key"), let sequence = fields.integer("sequence"),
              let correlationId = fields.optionalString("correlationId"),
              let causationId = fields.optionalString("causationId"),
              let occurredAt = fields.string("occurredAt"), let source = fields.string("source"),
              let data = fields.take("data")?.object, fields.isEmpty,
              let event = event(type, Fields(data))
        else { return nil }
        return Envelope(
            eventId: eventId, version: version, key: key, sequence: Int64(sequence), correlationId: correlationId,
            causationId: causationId, occurredAt: occurredAt, source: source, event: event)
    }

    private static func event(_ type: EventType, _ fields: Fields) -> DomainEvent? {
        var data = fields
        let event: DomainEvent?
        switch type {
        case .orderPlaced:
            event = orderLines(data.take("lines")).flatMap { lines in
                zip5(data.string("orderId"), data.string("customerId"), lines, data.integer("totalCents"), data.string("currency"))
                    .map { .orderPlaced(OrderPlaced(orderId: $0, customerId: $1, lines: $2, totalCents: $3, currency: $4)) }
            }
        case .orderConfirmed:
            event = zip3(data.string("orderId"), data.string("customerId"), data.integer("totalCents"))
                .map { .orderConfirmed(OrderConfirmed(orderId: $0, customerId: $1, totalCents: $2)) }
        case .orderCancelled:
            event = zip4(data.string("orderId"), data.string("customerId"), data.string("reason").flatMap(CancellationReason.init),
                         data.string("detail"))
                .map { .orderCancelled(OrderCancelled(orderId: $0, customerId: $1, reason: $2, detail: $3)) }
        case .paymentAuthorized:
            event = payment(&data).map { .paymentAuthorized(PaymentAuthorized(orderId: $0, customerId: $1, paymentId: $2, amountCents: $3, currency: $4)) }
        case .paymentCaptured:
            event = payment(&data).map { .paymentCaptured(PaymentCaptured(orderId: $0, customerId: $1, paymentId: $2, amountCents: $3, currency: $4)) }
        case .paymentRefunded:
            event = payment(&data).map { .paymentRefunded(PaymentRefunded(orderId: $0, customerId: $1, paymentId: $2, amountCents: $3, currency: $4)) }
        case .paymentDeclined:
            event = zip3(data.string("orderId"), data.string("customerId"), data.string("reason"))
                .map { .paymentDeclined(PaymentDeclined(orderId: $0, customerId: $1, reason: $2)) }
        case .stockReserved:
            event = zip5(data.string("productId"), data.string("orderId"), data.integer("quantity"), data.integer("available"),
                         data.integer("lineCount"))
                .map { .stockReserved(StockReserved(productId: $0, orderId: $1, quantity: $2, available: $3, lineCount: $4)) }
        case .stockShortage:
            event = zip4(data.string("productId"), data.string("orderId"), data.integer("requested"), data.integer("available"))
                .map { .stockShortage(StockShortage(productId: $0, orderId: $1, requested: $2, available: $3)) }
        case .stockReleased:
            event = zip4(data.string("productId"), data.string("orderId"), data.integer("quantity"), data.integer("available"))
                .map { .stockReleased(StockReleased(productId: $0, orderId: $1, quantity: $2, available: $3)) }
        case .stockRestocked:
            event = zip3(data.string("productId"), data.integer("quantity"), data.integer("available"))
                .map { .stockRestocked(StockRestocked(productId: $0, quantity: $1, available: $2)) }
        case .notificationSent:
            event = zip6(data.string("notificationId"), data.string("orderId"), data.string("customerId"),
                         data.string("kind").flatMap(NotificationKind.init), data.string("channel"), data.string("messageId"))
                .map { .notificationSent(NotificationSent(notificationId: $0, orderId: $1, customerId: $2, kind: $3, channel: $4, messageId: $5)) }
        }
        // A field the payload does not have: JSONDecoder would skip it, and has the last word.
        return data.isEmpty ? event : nil
    }

    /// The three payment events share their fields: order, customer, payment, amount and currency.
    private static func payment(_ data: inout Fields) -> (String, String, String, Int, String)? {
        zip5(data.string("orderId"), data.string("customerId"), data.string("paymentId"), data.integer("amountCents"), data.string("currency"))
    }

    private static func orderLines(_ value: Value?) -> [OrderLine]? {
        guard case .array(let items)? = value else { return nil }
        var lines: [OrderLine] = []
        lines.reserveCapacity(items.count)
        for item in items {
            guard var line = item.object.map(Fields.init),
                  let productId = line.string("productId"), let quantity = line.integer("quantity"),
                  let unitPriceCents = line.integer("unitPriceCents"), line.isEmpty
            else { return nil }
            lines.append(OrderLine(productId: productId, quantity: quantity, unitPriceCents: unitPriceCents))
        }
        return lines
    }
}

/// A JSON value of the plain form. Not `indirect`: objects and arrays hold their parts in arrays already, and
/// boxing every string and number would cost an allocation each.
private enum Value {
    case string(String)
    case integer(Int)
    case null
    case object([(key: String, value: Value)])
    case array([Value])

    var object: [(key: String, value: Value)]? {
        if case .object(let members) = self { members } else { nil }
    }
}

/// An object's members, taken one by one, so that what is left at the end is what the payload does not know.
private struct Fields {
    private let members: [(key: String, value: Value)]
    /// Bit i is set once member i is taken; the parser refuses objects of more than 64 members.
    private var taken: UInt64 = 0

    init(_ members: [(key: String, value: Value)]) {
        self.members = members
    }

    var isEmpty: Bool { taken.nonzeroBitCount == members.count }

    mutating func take(_ key: String) -> Value? {
        for index in members.indices where taken & (1 << index) == 0 && members[index].key == key {
            taken |= 1 << index
            return members[index].value
        }
        return nil
    }

    mutating func string(_ key: String) -> String? {
        if case .string(let text)? = take(key) { text } else { nil }
    }

    mutating func integer(_ key: String) -> Int? {
        if case .integer(let number)? = take(key) { number } else { nil }
    }

    /// nil when the value is neither a string nor null; .some(nil) when it is null or absent.
    mutating func optionalString(_ key: String) -> String?? {
        switch take(key) {
        case .string(let text)?: .some(text)
        case .null?, nil: .some(nil)
        default: nil
        }
    }
}

/// A recursive-descent reader of the plain form. Any byte it does not expect ends the reading with nil.
private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var index = 0
    /// The envelope nests four deep (envelope, data, lines, line). Anything deeper is left to `JSONDecoder`, so a
    /// hostile message cannot exhaust the stack here.
    var depth = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func document() -> Value? {
        guard let value = value() else { return nil }
        skipWhitespace()
        return index == bytes.count ? value : nil
    }

    private mutating func value() -> Value? {
        skipWhitespace()
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "{"): return object()
        case UInt8(ascii: "["): return array()
        case UInt8(ascii: "\""): return string().map(Value.string)
        case UInt8(ascii: "n"): return null() ? .null : nil
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return integer().map(Value.integer)
        default: return nil
        }
    }

    private mutating func object() -> Value? {
        guard depth < 4 else { return nil }
        depth += 1
        defer { depth -= 1 }
        index += 1
        var members: [(key: String, value: Value)] = []
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { return .object(members) }
        repeat {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = string() else { return nil }
            skipWhitespace()
            guard consume(UInt8(ascii: ":")), let value = value() else { return nil }
            // A repeated key: which one JSONDecoder keeps is its business.
            guard members.count < 64, !members.contains(where: { $0.key == key }) else { return nil }
            members.append((key, value))
            skipWhitespace()
        } while consume(UInt8(ascii: ","))
        return consume(UInt8(ascii: "}")) ? .object(members) : nil
    }

    private mutating func array() -> Value? {
        guard depth < 4 else { return nil }
        depth += 1
        defer { depth -= 1 }
        index += 1
        var items: [Value] = []
        skipWhitespace()
        if consume(UInt8(ascii: "]")) { return .array(items) }
        repeat {
            guard let item = value() else { return nil }
            items.append(item)
            skipWhitespace()
        } while consume(UInt8(ascii: ","))
        return consume(UInt8(ascii: "]")) ? .array(items) : nil
    }

    /// A string without escapes or control characters, in valid UTF-8.
    private mutating func string() -> String? {
        index += 1
        let start = index
        var ascii = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = UnsafeRawBufferPointer(rebasing: bytes[start..<index]).assumingMemoryBound(to: UInt8.self)
                index += 1
                // ASCII needs no validation, and decoding it is a copy; the rest must be valid UTF-8 as it stands.
                return ascii ? String(decoding: text, as: UTF8.self) : String(validating: text, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            ascii = ascii && byte < 0x80
            index += 1
        }
        return nil
    }

    /// `-?(0|[1-9][0-9]*)`, at most 18 digits so that it cannot overflow, and nothing after it that would make it
    /// a fraction or an exponent.
    private mutating func integer() -> Int? {
        let negative = consume(UInt8(ascii: "-"))
        let start = index
        var number = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            guard index - start < 18 else { return nil }
            number = number * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            index += 1
        }
        let digits = index - start
        guard digits > 0, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
        if index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
            default: break
            }
        }
        return negative ? -number : number
    }

    private mutating func null() -> Bool {
        guard index + 4 <= bytes.count, bytes[index + 1] == UInt8(ascii: "u"), bytes[index + 2] == UInt8(ascii: "l"),
              bytes[index + 3] == UInt8(ascii: "l") else { return false }
        index += 4
        return true
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return
            }
        }
    }
}

private func zip3<A, B, C>(_ a: A?, _ b: B?, _ c: C?) -> (A, B, C)? {
    guard let a, let b, let c else { return nil }
    return (a, b, c)
}

private func zip4<A, B, C, D>(_ a: A?, _ b: B?, _ c: C?, _ d: D?) -> (A, B, C, D)? {
    guard let a, let b, let c, let d else { return nil }
    return (a, b, c, d)
}

private func zip5<A, B, C, D, E>(_ a: A?, _ b: B?, _ c: C?, _ d: D?, _ e: E?) -> (A, B, C, D, E)? {
    guard let a, let b, let c, let d, let e else { return nil }
    return (a, b, c, d, e)
}

private func zip6<A, B, C, D, E, F>(_ a: A?, _ b: B?, _ c: C?, _ d: D?, _ e: E?, _ f: F?) -> (A, B, C, D, E, F)? {
    guard let a, let b, let c, let d, let e, let f else { return nil }
    return (a, b, c, d, e, f)
}
