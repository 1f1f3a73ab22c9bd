/// A topic and one of its partitions.
public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let topic: String
    public let partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// One Kafka record header. Names may repeat; order is kept.
public struct KafkaHeader: Sendable, Hashable {
    public let name: String
    public let value: [UInt8]

    public init(_ name: String, _ value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name, Array(value.utf8))
    }
}

/// A message to produce. With no partition, the configured partitioner (murmur2 of the key) places it.
public struct OutgoingMessage: Sendable, Hashable {
    public var topic: String
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    public var partition: Int32?

    public init(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = [], partition: Int32? = nil) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
    }

    public init(topic: String, key: String, value: [UInt8], headers: [KafkaHeader] = []) {
        self.init(topic: topic, key: Array(key.utf8), value: value, headers: headers)
    }
}

/// Where a produced message was stored.
public struct DeliveryReport: Sendable, Hashable {
    public let partition: Int32
    public let offset: Int64
}

/// A message read from Kafka.
///
/// Key, value and headers share one buffer: a consumer hands over hundreds of thousands of messages a second,
/// and the async side frees them on another thread than the poll thread that made them, where every separate
/// allocation meets glibc's arena lock. `key` and `value` are views into that buffer.
public struct ConsumedMessage: Sendable, Hashable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    /// Milliseconds since the epoch, as the producer or broker stamped it.
    public let timestamp: Int64?
    private let bytes: [UInt8]
    private let keyCount: Int?
    private let valueCount: Int

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8],
        headers: [KafkaHeader] = [], timestamp: Int64? = nil
    ) {
        var layout = MessageLayout(key: key?.count, value: value.count)
        for header in headers { layout.addHeader(name: header.name.utf8.count, value: header.value.count) }
        let bytes = layout.fill { writer in
            key?.withUnsafeBytes { writer.append($0) }
            value.withUnsafeBytes { writer.append($0) }
            for header in headers {
                var name = header.name
                name.withUTF8 { name in
                    header.value.withUnsafeBytes { writer.appendHeader(name: UnsafeRawBufferPointer(name), value: $0) }
                }
            }
        }
        self.init(topic: topic, partition: partition, offset: offset, timestamp: timestamp, bytes: bytes, layout: layout)
    }

    /// A message whose buffer `MessageLayout.fill` wrote.
    init(topic: String, partition: Int32, offset: Int64, timestamp: Int64?, bytes: [UInt8], layout: MessageLayout) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.bytes = bytes
        keyCount = layout.keyCount
        valueCount = layout.valueCount
    }

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    public var key: ArraySlice<UInt8>? { keyCount.map { bytes[0..<$0] } }

    public var value: ArraySlice<UInt8> { bytes[valueStart..<headersStart] }

    /// The key as UTF-8 text, if it is.
    public var keyString: String? { key.flatMap { String(validating: $0, as: UTF8.self) } }

    /// Every header, in order; names may repeat.
    public var headers: [KafkaHeader] {
        var headers: [KafkaHeader] = []
        forEachHeader { name, value in
            headers.append(KafkaHeader(String(decoding: name, as: UTF8.self), Array(value)))
            return true
        }
        return headers
    }

    /// The first header with this name, as UTF-8 text. Found without building the header list: the runtime
    /// asks for three or four headers of every message it consumes.
    public func header(_ name: String) -> String? {
        var found: String?
        let wanted = name.utf8
        forEachHeader { candidate, value in
            guard candidate.elementsEqual(wanted) else { return true }
            found = String(validating: value, as: UTF8.self)
            return false
        }
        return found
    }

    /// The headers' names and values in bytes, counted without building the list.
    public var headerByteCount: Int {
        var total = 0
        forEachHeader { name, value in
            total += name.count + value.count
            return true
        }
        return total
    }

    private var valueStart: Int { keyCount ?? 0 }
    private var headersStart: Int { valueStart + valueCount }

    /// Walks the headers as `MessageLayout.Writer.appendHeader` laid them out, until `body` returns false.
    private func forEachHeader(_ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) -> Bool) {
        var index = headersStart
        while index < bytes.count {
            let nameCount = MessageLayout.readLength(bytes, at: index)
            let valueCount = MessageLayout.readLength(bytes, at: index + 4)
            let nameStart = index + 8
            let valueStart = nameStart + nameCount
            index = valueStart + valueCount
            guard body(bytes[nameStart..<valueStart], bytes[valueStart..<index]) else { return }
        }
    }
}

/// Where a consumed message's parts go in its one buffer: the key, the value, then per header its name's and its
/// value's lengths (four bytes each, little-endian) followed by the name and the value.
struct MessageLayout {
    let keyCount: Int?
    let valueCount: Int
    private(set) var count: Int

    init(key: Int?, value: Int) {
        keyCount = key
        valueCount = value
        count = (key ?? 0) + value
    }

    mutating func addHeader(name: Int, value: Int) {
        count += 8 + name + value
    }

    /// The buffer, written by `body` in layout order; every byte counted must be written.
    func fill(_ body: (inout Writer) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var writer = Writer(buffer: UnsafeMutableRawBufferPointer(buffer))
            body(&writer)
            precondition(writer.position == count, "a consumed message's buffer was not filled as laid out")
            initialized = count
        }
    }

    static func readLength(_ bytes: [UInt8], at index: Int) -> Int {
        Int(bytes[index]) | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2]) << 16 | Int(bytes[index + 3]) << 24
    }

    struct Writer {
        let buffer: UnsafeMutableRawBufferPointer
        private(set) var position = 0

        init(buffer: UnsafeMutableRawBufferPointer) {
            self.buffer = buffer
        }

        mutating func append(_ bytes: UnsafeRawBufferPointer) {
            guard !bytes.isEmpty else { return }
            UnsafeMutableRawBufferPointer(rebasing: buffer[position..<position + bytes.count]).copyMemory(from: bytes)
            position += bytes.count
        }

        mutating func appendHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
            appendLength(name.count)
            appendLength(value.count)
            append(name)
            append(value)
        }

        private mutating func appendLength(_ length: Int) {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: length).littleEndian) { append($0) }
        }
    }
}
