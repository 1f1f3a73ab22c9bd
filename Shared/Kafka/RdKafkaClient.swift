import CRdKafka
import Foundation
import Logging

/// Owns one `rd_kafka_t` and destroys it when the last reference goes.
///
/// `@unchecked Sendable` is safe because the pointer never changes after `init`, librdkafka documents every
/// call on an `rd_kafka_t` that Emporium makes as thread-safe, and `deinit` runs only when no thread holds
/// the client any more. State that Swift code mutates lives elsewhere, behind locks.
final class RdKafkaClient: @unchecked Sendable {
    let handle: OpaquePointer
    /// The object librdkafka's callbacks reach through the opaque pointer; released only after `rd_kafka_destroy`,
    /// which may still call them.
    private let callbackContext: (any Sendable & AnyObject)?

    /// Creates the client. `configure` may install callbacks on the raw `rd_kafka_conf_t` before it is consumed.
    init(
        type: rd_kafka_type_t,
        properties: [String: String],
        callbackContext: (any Sendable & AnyObject)? = nil,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws {
        self.callbackContext = callbackContext
        let conf = try Self.makeConf(properties)
        configure(conf)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.clientCreationFailed(errstr.nulTerminatedString)
        }
        self.handle = handle
    }

    deinit {
        // rd_kafka_destroy joins librdkafka's threads, which can wait on a broker; the last reference may go on a
        // Swift concurrency thread, and a few such waits would starve the whole pool. So it runs on a thread of
        // its own, which also keeps the callback context alive until librdkafka can no longer call it.
        let remains = Remains(handle: handle, callbackContext: callbackContext)
        Thread.detachNewThread { remains.destroy() }
    }

    /// What `deinit` hands to the destroying thread. `@unchecked Sendable` is safe because the client is gone:
    /// that thread is the only one left holding the handle.
    private struct Remains: @unchecked Sendable {
        let handle: OpaquePointer
        let callbackContext: (any Sendable & AnyObject)?

        func destroy() {
            rd_kafka_destroy(handle)
            withExtendedLifetime(callbackContext) {}
        }
    }

    /// Builds a configuration, failing on the first property librdkafka rejects with its name and reason.
    static func makeConf(_ properties: [String: String]) throws -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        rd_kafka_conf_set_log_cb(conf, logCallback)
        var errstr = [CChar](repeating: 0, count: 512)
        for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, name, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError.invalidProperty(name: name, message: errstr.nulTerminatedString)
            }
        }
        return conf
    }

    /// Wakes a thread blocked polling the main queue (or, for a consumer, the consumer queue).
    func wakePoller(consumer: Bool) {
        let queue = consumer ? rd_kafka_queue_get_consumer(handle) : rd_kafka_queue_get_main(handle)
        rd_kafka_queue_yield(queue)
        rd_kafka_queue_destroy(queue)
    }

    /// The fatal error librdkafka has raised on this client, if any.
    func fatalError() -> KafkaError? {
        var errstr = [CChar](repeating: 0, count: 512)
        let code = rd_kafka_fatal_error(handle, &errstr, errstr.count)
        return code == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : .fatal(errstr.nulTerminatedString)
    }
}

/// librdkafka's own log lines (a broker it cannot reach, an offset reset) go through swift-log like every other
/// line Emporium writes, instead of to stderr in librdkafka's format. A global, because librdkafka may log
/// before a client's opaque is set, from its own threads; swift-log's handlers may be called from any thread.
private let librdkafkaLogger = Logger(label: "emporium.kafka.librdkafka")

private let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { client, level, facility, text in
    logLibrdkafkaLine(client, level, facility, text)
}

/// What every client's log callback does with a line; a client that also reads some lines calls it after.
func logLibrdkafkaLine(_ client: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?, _ text: UnsafePointer<CChar>?) {
    let level: Logger.Level = switch level {
    case ...2: .critical
    case 3: .error
    case 4: .warning
    case 5: .notice
    case 6: .info
    default: .debug
    }
    guard librdkafkaLogger.logLevel <= level, let text else { return }
    librdkafkaLogger.log(level: level, "\(String(cString: text))", metadata: [
        "client": "\(client.map { String(cString: rd_kafka_name($0)) } ?? "?")",
        "facility": "\(facility.map { String(cString: $0) } ?? "?")",
    ])
}

/// Builds an `rd_kafka_topic_partition_list_t`, hands it to `body`, and frees it.
func withPartitionList<T>(
    _ entries: [(TopicPartition, Int64)],
    _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> T
) rethrows -> T {
    let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
    defer { rd_kafka_topic_partition_list_destroy(list) }
    for (partition, offset) in entries {
        rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition).pointee.offset = offset
    }
    return try body(list)
}

extension UnsafeMutablePointer where Pointee == rd_kafka_topic_partition_list_t {
    /// The entries as Swift values: partition, offset, and the per-entry error code.
    var entries: [(partition: TopicPartition, offset: Int64, error: rd_kafka_resp_err_t)] {
        (0..<Int(pointee.cnt)).map { index in
            let element = pointee.elems[index]
            return (TopicPartition(String(cString: element.topic), element.partition), element.offset, element.err)
        }
    }
}

extension Array where Element == CChar {
    /// The text of a C error buffer that librdkafka filled in.
    var nulTerminatedString: String { withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }
}
