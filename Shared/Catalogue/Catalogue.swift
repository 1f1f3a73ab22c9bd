
/// A product of the shop: price and opening stock.
public struct Product: Codable, Sendable, Hashable {
    public let productId: String
    public let name: String
    public let unitPriceCents: Int
    public let initialStock: Int

    /// The warehouse restocks a product to its initial stock when a reservation leaves it at or below this:
    /// a fifth of its initial stock, at least one unit.
    public var reorderPoint: Int { max(1, initialStock / 5) }
}

/// The shop's catalogue, generated from a seed so that order-service (prices) and inventory-service (stock)
/// derive the very same one without talking to each other. Every tenth product is scarce, so that
/// orders run out of stock and compensation shows.
public struct Catalogue: Sendable {
    public static let defaultSeed: UInt64 = 2026
    public static let defaultSize = 1_000
    public static let currency = "EUR"

    public let products: [Product]
    private let byID: [String: Product]

    public init(seed: UInt64 = defaultSeed, size: Int = defaultSize) {
        var random = SeededRandom(seed: seed)
        let adjectives = ["Sturdy", "Tiny", "Vintage", "Bright", "Quiet", "Swift", "Woolen", "Copper"]
        let nouns = ["Kettle", "Lamp", "Notebook", "Backpack", "Teapot", "Scarf", "Mug", "Clock", "Chair", "Pen"]
        products = (1...size).map { index in
            let scarce = index % 10 == 0
            return Product(
                productId: "product-\(index)",
                name: "\(adjectives[Int(random.next() % 8)]) \(nouns[Int(random.next() % 10)])",
                unitPriceCents: 199 + Int(random.next() % 4_801),
                initialStock: scarce ? 5 + Int(random.next() % 11) : 300 + Int(random.next() % 701))
        }
        byID = Dictionary(uniqueKeysWithValues: products.map { ($0.productId, $0) })
    }

    public static let standard = Catalogue()

    public func product(_ id: String) -> Product? { byID[id] }
}

/// Per-customer credit limits, derived from the customer ID and a seed: every tenth customer is on a low
/// limit, so that payments are declined and refunds show.
public struct CreditPolicy: Sendable {
    public let seed: UInt64

    public init(seed: UInt64 = Catalogue.defaultSeed) {
        self.seed = seed
    }

    public static let standard = CreditPolicy()

    public func limitCents(for customerId: String) -> Int {
        let hash = Self.stableHash("\(seed):\(customerId)")
        return hash % 10 == 0 ? 5_000 + Int(hash / 10 % 10_001) : 500_000 + Int(hash / 10 % 500_001)
    }

    /// FNV-1a over the UTF-8 bytes, finished with SplitMix64's mixer: the same on every platform and in every
    /// language, so that any implementation of the shop derives the same limits.
    static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        var mixer = SeededRandom(seed: hash)
        return mixer.next()
    }

    public func isLowLimit(_ customerId: String) -> Bool { limitCents(for: customerId) < 100_000 }
}

/// SplitMix64: small, fast and the same everywhere, so seeded data repeats exactly.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
