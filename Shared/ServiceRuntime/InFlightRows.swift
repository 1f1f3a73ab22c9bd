import Foundation
import Kafka

/// Outbox rows handed to the producer whose delivery reports are not all in, in the order they were sent, and the
/// lanes whose rows wait.
///
/// A relay that waited for every report of a batch before sending more would hold the whole outbox behind the
/// one partition whose broker is away. Keeping the rows in flight here, the relay sends the rows behind them and
/// settles each row when its own report comes. Order still holds: librdkafka queues each partition's messages
/// in the order they were handed over and the idempotent producer keeps that order through its retries, and rows
/// with the same key go to the same partition.
///
/// Rows are counted by *lane*: the partition their key goes to (murmur2, as the producer places them). A lane
/// with `laneLimit` rows unreported (its partition has no leader, say) is held: none of its rows is sent until it
/// has room again, from the first one held back, while every other lane goes on. A key's rows all share a lane,
/// so each key's order holds. A lane whose rows Kafka refuses for their topic (unknown, not authorized) is held the same way, and
/// tried again later, longer each time. So one partition's or one topic's trouble holds back only its own rows.
struct InFlightRows {
    /// A topic's partition: every row of one key is in one lane.
    struct Lane: Hashable, CustomStringConvertible {
        let topic: String
        /// -1 for rows without a key, and for a topic whose partitions are not known.
        let partition: Int32

        var description: String { partition < 0 ? topic : "\(topic)[\(partition)]" }
    }

    /// A lane whose rows are not sent: from `from` on (by row ID), until it has room again and, after a failure
    /// for its topic, not before `retryAt`.
    struct Hold {
        var from: Int64
        var retryAt: ContinuousClock.Instant?
        var failures = 0
    }

    private struct Batch {
        let rows: [OutboxRow]
        let lanes: [Lane]
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
        /// Lanes held because Kafka refused a row for its topic, with the error.
        var topicFailures: [(Lane, KafkaError)] = []

        var isEmpty: Bool { done.isEmpty && passing == nil && topicFailures.isEmpty }
    }

    let laneLimit: Int
    private let laneOf: (OutboxRow) -> Lane
    private var batches: [Batch] = []
    private var perLane: [Lane: Int] = [:]
    /// Rows `resume` and `admit` chose for the next `add`, so that together they take no more than a lane's room.
    private var chosen: [Lane: Int] = [:]
    private(set) var holds: [Lane: Hold] = [:]
    /// The last row read: the next read of new rows starts after it.
    private(set) var lastRead: Int64 = 0
    private(set) var count = 0

    init(laneLimit: Int, laneOf: @escaping (OutboxRow) -> Lane) {
        self.laneLimit = laneLimit
        self.laneOf = laneOf
    }

    /// Takes what was read after `lastRead` and returns the rows to send now: those of lanes neither held nor
    /// full. A lane that is full is held from its first row left out.
    mutating func admit(_ rows: [OutboxRow]) -> [OutboxRow] {
        guard let last = rows.last?.id else { return [] }
        lastRead = last
        var admitted: [OutboxRow] = []
        for row in rows {
            let lane = laneOf(row)
            if holds[lane] == nil, perLane[lane, default: 0] + chosen[lane, default: 0] < laneLimit {
                admitted.append(row)
                chosen[lane, default: 0] += 1
            } else if holds[lane] == nil {
                holds[lane] = Hold(from: row.id!)
            }
        }
        return admitted
    }

    /// Held lanes that may go on now, oldest hold first: a full one once half its room is free; one whose topic
    /// was refused once its retry time has come and none of its rows is in flight any more (rows sent after the
    /// refused one may still be, and would otherwise be sent again ahead of it).
    func resumable(at now: ContinuousClock.Instant = .now) -> [(lane: Lane, from: Int64)] {
        holds.filter { lane, hold in
            if let retryAt = hold.retryAt { return now >= retryAt && perLane[lane] == nil }
            return perLane[lane, default: 0] <= laneLimit / 2
        }.map { ($0.key, $0.value.from) }.sorted { $0.from < $1.from }
    }

    /// Takes the rows read again for a held lane (every row of it from its hold up to `through`, in order, or the
    /// first of them) and returns those to send: as many as the lane has room for. The lane is released once its
    /// rows up to `lastRead` are all sent; otherwise its hold moves to the first row not sent, or past `through`.
    mutating func resume(_ lane: Lane, rows: [OutboxRow], through: Int64) -> [OutboxRow] {
        guard var hold = holds[lane] else { return [] }
        let room = max(0, laneLimit - perLane[lane, default: 0] - chosen[lane, default: 0])
        let admitted = Array(rows.prefix(room))
        chosen[lane, default: 0] += admitted.count
        if admitted.count < rows.count {
            hold.from = rows[admitted.count].id!
        } else if through >= lastRead {
            holds[lane] = nil
            return admitted
        } else {
            hold.from = through + 1
        }
        hold.retryAt = nil
        holds[lane] = hold
        return admitted
    }

    mutating func add(_ rows: [OutboxRow], _ deliveries: Deliveries) {
        guard !rows.isEmpty else { return }
        let lanes = rows.map(laneOf)
        for lane in lanes { perLane[lane, default: 0] += 1 }
        chosen = [:]
        batches.append(Batch(rows: rows, lanes: lanes, deliveries: deliveries, unreported: rows.count, sent: .now))
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
            for (position, result) in batches[index].deliveries.takeReports().map({ ($0.index, $0.result) }) {
                let row = batches[index].rows[position], lane = batches[index].lanes[position]
                switch result {
                case .success:
                    settled.done.append(row.id!)
                case .failure(let error) where error.rejectsTheMessageForGood:
                    settled.done.append(row.id!)
                    settled.parked.append(ParkedOutboxRow(row, reason: error.description))
                case .failure(let error) where error.refusesTheTopic:
                    // The row stays in the outbox; its lane waits and starts again from it.
                    var hold = holds[lane] ?? Hold(from: row.id!)
                    hold.from = min(hold.from, row.id!)
                    if hold.retryAt == nil || hold.retryAt! < now {
                        hold.failures += 1
                        hold.retryAt = now + .seconds(1) * min(1 << min(hold.failures, 6), 60)
                        settled.topicFailures.append((lane, error))
                    }
                    holds[lane] = hold
                case .failure(let error):
                    settled.passing = settled.passing ?? error
                }
                perLane[lane, default: 1] -= 1
                if perLane[lane] == 0 { perLane[lane] = nil }
                batches[index].unreported -= 1
                count -= 1
            }
            if batches[index].unreported == 0 { settled.completed.append(now - batches[index].sent) }
        }
        batches.removeAll { $0.unreported == 0 }
        return settled
    }
}
