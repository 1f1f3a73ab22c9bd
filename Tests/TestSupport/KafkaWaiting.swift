import Kafka

/// Kafka calls a test awaits, each bounded: a client that hangs fails the test instead of the whole run.
extension KafkaProducer {
    /// Sends and waits for every delivery report; throws the first failed delivery, or `TimedOut`.
    public func deliver(_ messages: [OutgoingMessage], within limit: Duration = .seconds(60)) async throws {
        let results = try await within(limit, "\(messages.count) deliveries") { await self.send(messages) }
        for result in results { _ = try result.get() }
    }

    public func close(within limit: Duration) async throws {
        try await TestSupport.within(limit, "the producer closes") { await self.close() }
    }
}

extension KafkaConsumer {
    public func close(within limit: Duration) async throws {
        try await TestSupport.within(limit, "the consumer closes") { await self.close() }
    }
}
