import Kafka
import Synchronization
import Testing

/// Taking a member out of its group by ID, as a restarted instance does for the one it replaces.
@Suite struct GroupMemberRemovalTests {
    @Test func aMemberTakenOutOfItsGroupLosesItsPartitionsAndJoinsAgain() async throws {
        let cluster = try TestCluster(partitions: 3)
        let servers = cluster.cluster.bootstrapServers
        let consumer = try KafkaConsumer(configuration: cluster.configuration, group: "removal", topics: [cluster.topic])
        let revoked = RevokedCount()
        let watcher = Task { for await event in consumer.events { if case .revoked(let partitions) = event { revoked.add(partitions.count) } } }
        defer { watcher.cancel() }
        try await waitUntil(.seconds(30), "the member is assigned every partition") { consumer.assignment().count == 3 }
        let member = try #require(consumer.memberID())

        #expect(try GroupMemberRemoval.remove(member: member, from: "removal", bootstrapServers: servers) == .removed)
        // The coordinator forgot the member: its next heartbeat is refused, it gives its partitions up and joins anew.
        try await waitUntil(.seconds(30), "the member hears it is no longer in the group") { revoked.count == 3 }
        try await waitUntil(.seconds(30), "the member joins the group again") { consumer.assignment().count == 3 }

        #expect(try GroupMemberRemoval.remove(member: "no-such-member", from: "removal", bootstrapServers: servers) == .notAMember)
        #expect(try GroupMemberRemoval.remove(member: member, from: "no-such-group", bootstrapServers: servers) == .notAMember)
        await consumer.close()
    }

    @Test func aClusterThatCannotBeReachedIsAnError() {
        // Port 1 on the loopback refuses connections: nothing listens there.
        #expect(throws: KafkaError.self) {
            try GroupMemberRemoval.remove(member: "m", from: "g", bootstrapServers: "127.0.0.1:1", timeout: .seconds(1))
        }
    }
}

private final class RevokedCount: Sendable {
    private let partitions = Mutex(0)
    func add(_ count: Int) { partitions.withLock { $0 += count } }
    var count: Int { partitions.withLock { $0 } }
}
