/// Writes an envelope's JSON without `Codable`: `JSONEncoder` took 7–11 µs an envelope on this machine, building
/// a tree of the whole envelope first; this takes under 2 µs. The fields come in the contract's order (docs/contract.md), which `JSONEncoder` does not
/// keep; `correlationId` is left out when there is none and `causationId` is written as null, as before.
/// `PlainEnvelopeWriterTests` checks that `JSONDecoder` reads every event back as it was, with text that needs
/// escaping.
enum PlainEnvelopeWriter {
    static func bytes(of envelope: Envelope) -> [UInt8] {
        var json = JSONWriter()
        json.open()
        json.field("eventId", envelope.eventId)
        json.field("type", envelope.type.rawValue)
        json.field("version", envelope.version)
        json.field("key", envelope.key)
        json.field("sequence", Int(envelope.sequence))
        if let correlationId = envelope.correlationId { json.field("correlationId", correlationId) }
        json.field("causationId", envelope.causationId)
        json.field("occurredAt", envelope.occurredAt)
        json.field("source", envelope.source)
        json.name("data")
        json.open()
        write(envelope.event, to: &json)
        json.close()
        json.close()
        return json.bytes
    }

    private static func write(_ event: DomainEvent, to json: inout JSONWriter) {
        switch event {
        case .orderPlaced(let data):
            json.field("orderId", data.orderId)
            json.field("customerId", data.customerId)
            json.name("lines")
            json.openArray()
            for line in data.lines {
                json.open()
                json.field("productId", line.productId)
                json.field("quantity", line.quantity)
                json.field("unitPriceCents", line.unitPriceCents)
                json.close()
            }
            json.closeArray()
            json.field("totalCents", data.totalCents)
            json.field("currency", data.currency)
        case .orderConfirmed(let data):
            json.field("orderId", data.orderId)
            json.field("customerId", data.customerId)
            json.field("totalCents", data.totalCents)
        case .orderCancelled(let data):
            json.field("orderId", data.orderId)
            json.field("customerId", data.customerId)
            json.field("reason", data.reason.rawValue)
            json.field("detail", data.detail)
        case .paymentAuthorized(let data):
            payment(data.orderId, data.customerId, data.paymentId, data.amountCents, data.currency, to: &json)
        case .paymentCaptured(let data):
            payment(data.orderId, data.customerId, data.paymentId, data.amountCents, data.currency, to: &json)
        case .paymentRefunded(let data):
            payment(data.orderId, data.customerId, data.paymentId, data.amountCents, data.currency, to: &json)
        case .paymentDeclined(let data):
            json.field("orderId", data.orderId)
            json.field("customerId", data.customerId)
            json.field("reason", data.reason)
        case .stockReserved(let data):
            json.field("productId", data.productId)
            json.field("orderId", data.orderId)
            json.field("quantity", data.quantity)
            json.field("available", data.available)
            json.field("lineCount", data.lineCount)
        case .stockShortage(let data):
            json.field("productId", data.productId)
            json.field("orderId", data.orderId)
            json.field("requested", data.requested)
            json.field("available", data.available)
        case .stockReleased(let data):
            json.field("productId", data.productId)
            json.field("orderId", data.orderId)
            json.field("quantity", data.quantity)
            json.field("available", data.available)
        case .stockRestocked(let data):
            json.field("productId", data.productId)
            json.field("quantity", data.quantity)
            json.field("available", data.available)
        case .notificationSent(let data):
            json.field("notificationId", data.notificationId)
            json.field("orderId", data.orderId)
            json.field("customerId", data.customerId)
            json.field("kind", data.kind.rawValue)
            json.field("channel", data.channel)
            json.field("messageId", data.messageId)
        }
    }

    /// The three payment events share their fields.
    private static func payment(_ orderId: String, _ customerId: String, _ paymentId: String, _ amountCents: Int, _ currency: String,
                                to json: inout JSONWriter) {
        json.field("orderId", orderId)
        json.field("customerId", customerId)
        json.field("paymentId", paymentId)
        json.field("amountCents", amountCents)
        json.field("currency", currency)
    }
}

/// Appends JSON to a byte buffer, putting the commas between members and items itself.
private struct JSONWriter {
    private static let hexDigits = Array("0123456789abcdef".utf8)
    private(set) var bytes: [UInt8] = []
    /// Whether the object or array being written still has no member or item.
    private var first = true

    init() {
        bytes.reserveCapacity(512)
    }

    mutating func open() { begin(UInt8(ascii: "{")) }
    mutating func close() { end(UInt8(ascii: "}")) }
    mutating func openArray() { begin(UInt8(ascii: "[")) }
    mutating func closeArray() { end(UInt8(ascii: "]")) }

    mutating func name(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        // The value that follows is this member's, not a new one.
        first = true
    }

    mutating func field(_ name: StaticString, _ value: String) {
        self.name(name)
        string(value)
        first = false
    }

    mutating func field(_ name: StaticString, _ value: String?) {
        self.name(name)
        if let value { string(value) } else { bytes.append(contentsOf: "null".utf8) }
        first = false
    }

    mutating func field(_ name: StaticString, _ value: Int) {
        self.name(name)
        bytes.append(contentsOf: String(value).utf8)
        first = false
    }

    private mutating func begin(_ bracket: UInt8) {
        separate()
        bytes.append(bracket)
        first = true
    }

    private mutating func end(_ bracket: UInt8) {
        bytes.append(bracket)
        first = false
    }

    private mutating func separate() {
        if !first { bytes.append(UInt8(ascii: ",")) }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, everything else as UTF-8.
    private mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0..<0x20:
                let hex = Self.hexDigits
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
