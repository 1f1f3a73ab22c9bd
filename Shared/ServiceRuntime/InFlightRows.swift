import Kafka

/// Outbox rows handed to the producer whose delivery reports are not all in, in the order they were sent.
///
/// A relay that waited for every report of a batch before sending more would hold the whole outbox behind the
/// one partition whose broker is away. Keeping the rows in flight here, the relay sends the rows behind them and
/// settles each row when its own report comes. Order still holds: librdkafka queues each partition's messages
/// in the order they were handed over and the idempotent producer keeps that order through its retries, and rows
/// with the same key go to the same partition.
struct InFlightRows {
    private struct Batch {
        let rows: [OutboxRow]
        let deliveries: Deliveries
        var unreported: Int
        let sent: ContinuousClock.Instant
    }

    /// What `settle` found.
    struct Settled {
        /// Rows Kafka stored, and rows it refuses for good (also to be deleted from the outbox, once parked).
        var done: [Int64] = []
        var parked: [ParkedOutboxRow] = []
        /// A failure that may pass (the row stays in the outbox and is sent again).
        var passing: KafkaError?
        /// For each batch whose last report came in: how long after it was sent.
        var completed: [Duration] = []

        var isEmpty: Bool { done.isEmpty && passing == nil }
    }

    private var batches: [Batch] = []
    /// The last row handed over: the next read starts after it.
    private(set) var lastSent: Int64 = 0
    private(set) var count = 0

    mutating func add(_ rows: [OutboxRow], _ deliveries: Deliveries) {
        guard let last = rows.last?.id else { return }
        batches.append(Batch(rows: rows, deliveries: deliveries, unreported: rows.count, sent: .now))
        lastSent = last
        count += rows.count
    }

    /// Blocks until every row in flight is reported on or `deadline` passes.
    func waitForAll(until deadline: ContinuousClock.Instant) {
        for batch in batches {
            let left = deadline - .now
            guard left > .zero, batch.deliveries.waitBlocking(upTo: left) else { return }
        }
    }

    /// Takes the reports that came in since the last call, sorting their rows by outcome; forgets every batch
    /// whose last report is in.
    mutating func settle() -> Settled {
        var settled = Settled()
        let now = ContinuousClock.now
        for index in batches.indices {
            for (row, result) in batches[index].deliveries.takeReports().map({ (batches[index].rows[$0.index], $0.result) }) {
                switch result {
                case .success:
                    settled.done.append(row.id!)
                case .failure(let error) where error.rejectsTheMessageForGood:
                    settled.done.append(row.id!)
                    settled.parked.append(ParkedOutboxRow(row, reason: error.description))
                case .failure(let error):
                    settled.passing = settled.passing ?? error
                }
                batches[index].unreported -= 1
                count -= 1
            }
            if batches[index].unreported == 0 { settled.completed.append(now - batches[index].sent) }
        }
        batches.removeAll { $0.unreported == 0 }
        return settled
    }
}
