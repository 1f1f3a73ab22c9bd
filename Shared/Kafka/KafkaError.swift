import CRdKafka

/// Every failure the Kafka layer reports. Each case says what went wrong and, where it can, what to change.
public enum KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// librdkafka refused a property: unknown name or invalid value. `message` is librdkafka's own.
    case invalidProperty(name: String, message: String)
    /// A required setting is absent; `hint` says where it can come from.
    case missingSetting(name: String, hint: String)
    /// A malformed `key=value` override or properties-file line.
    case malformedProperty(String)
    /// `rd_kafka_new` failed.
    case clientCreationFailed(String)
    /// An error code returned by librdkafka or a broker, with the operation it belongs to.
    case broker(code: Int32, name: String, message: String, operation: String)
    /// The consumer was closed while the operation was pending.
    case consumerClosed
    /// The commit named a batch that is not the one in hand.
    case unknownBatch(UInt64)
    /// librdkafka raised a fatal error: the client is unusable and must be recreated.
    case fatal(String)
    /// A topic was not read to the end it had when reading began within the time allowed.
    case readTimedOut(topic: String, timeout: Duration, partitionsShort: Int)
    /// A request Emporium sends itself (not through librdkafka) could not reach a broker or was not understood.
    case connection(String)

    static func from(_ code: rd_kafka_resp_err_t, operation: String) -> KafkaError {
        .broker(
            code: code.rawValue,
            name: String(cString: rd_kafka_err2name(code)),
            message: String(cString: rd_kafka_err2str(code)),
            operation: operation
        )
    }

    public var description: String {
        switch self {
        case .invalidProperty(let name, let message):
            "invalid Kafka property '\(name)': \(message)"
        case .missingSetting(let name, let hint):
            "missing setting \(name): \(hint)"
        case .malformedProperty(let text):
            "malformed Kafka property '\(text)': expected key=value"
        case .clientCreationFailed(let message):
            "could not create the Kafka client: \(message)"
        case .broker(_, let name, let message, let operation):
            "\(operation) failed: \(name): \(message)"
        case .consumerClosed:
            "the consumer is closed"
        case .unknownBatch(let id):
            "batch \(id) is not the batch in hand; commit each batch once, in order"
        case .fatal(let message):
            "fatal Kafka error: \(message)"
        case .readTimedOut(let topic, let timeout, let short):
            "\(topic) was not read to its end within \(timeout): \(short) partitions short"
        case .connection(let message):
            message
        }
    }

    /// This message can never be delivered as it is (too large, invalid), however often it is tried again.
    public var rejectsTheMessageForGood: Bool {
        guard let code else { return false }
        return [
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
            RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR__INVALID_ARG,
        ].contains { $0.rawValue == code }
    }

    /// Kafka refuses the message's topic itself (unknown, or not to be written by this client): every message for
    /// it fails the same way until someone creates the topic or grants access, however often it is sent.
    public var refusesTheTopic: Bool {
        guard let code else { return false }
        return [
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        ].contains { $0.rawValue == code }
    }

    /// The client is unusable (for example an idempotent producer whose sequence broke) and must be recreated.
    public var isFatal: Bool {
        if case .fatal = self { return true }
        return code == RD_KAFKA_RESP_ERR__FATAL.rawValue
    }

    /// The librdkafka error code, where there is one.
    public var code: Int32? {
        if case .broker(let code, _, _, _) = self { return code }
        return nil
    }
}
