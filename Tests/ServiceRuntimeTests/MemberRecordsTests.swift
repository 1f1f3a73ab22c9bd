import Foundation
import Kafka
import Logging
import ServiceRuntime
import Testing

/// The files by which the instances sharing a database say which group member each is.
@Suite struct MemberRecordsTests {
    private let databasePath = FileManager.default.temporaryDirectory
        .appendingPathComponent("emporium-members-\(UUID().uuidString.prefix(8))").appendingPathComponent("service.sqlite").path
    private let logger = Logger(label: "test")

    private func files(_ records: MemberRecords) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: records.directory)) ?? []).sorted()
    }

    @Test func aLiveInstancesMemberIsLeftAloneAndItsFileFollowsItsMemberID() throws {
        let mine = MemberRecords(databasePath: databasePath)
        try mine.hold(memberID: "0x1", group: "payments", instance: "payment-service-1")
        try mine.hold(memberID: "0x1", group: "payments", instance: "payment-service-1")
        #expect(files(mine) == ["member-0x1.json"])
        // Expelled and joined again as another member: the old file goes.
        try mine.hold(memberID: "payment-service-1/rejoined", group: "payments", instance: "payment-service-1")
        #expect(files(mine) == ["member-payment-service-1_rejoined.json"])

        // Another instance starting beside it sees the file locked and leaves it: were it taken for a dead
        // instance's, the coordinator would answer that it has no such group and the file would go.
        let cluster = try EmbeddedCluster(brokers: 1)
        let other = MemberRecords(databasePath: databasePath)
        #expect(other.removeDeadMembers(bootstrapServers: cluster.bootstrapServers, logger: logger).isEmpty)
        #expect(files(other) == ["member-payment-service-1_rejoined.json"])

        mine.release()
        #expect(files(mine).isEmpty)
    }

    @Test func aDeadInstancesFileGoesOnceTheCoordinatorHasNoSuchMemberAndAnUnreadableOrUnnamedOneAtOnce() throws {
        let records = MemberRecords(databasePath: databasePath)
        try FileManager.default.createDirectory(atPath: records.directory, withIntermediateDirectories: true)
        // What a killed instance leaves: its file, no longer locked.
        let dead = #"{"group":"payments","memberId":"0x2","instance":"payment-service-1","pid":1}"#
        try dead.write(toFile: records.directory + "/member-0x2.json", atomically: true, encoding: .utf8)
        try "{".write(toFile: records.directory + "/member-0x3.json", atomically: true, encoding: .utf8)
        try "".write(toFile: records.directory + "/.4242.staging", atomically: true, encoding: .utf8)

        // The cluster cannot be reached: the member is not known to be out of its group, so its file stays.
        #expect(records.removeDeadMembers(bootstrapServers: "127.0.0.1:1", logger: logger).isEmpty)
        #expect(files(records) == ["member-0x2.json"])

        // It can: the coordinator has no such member (nor group), so there is nothing to wait for and the file goes.
        let cluster = try EmbeddedCluster(brokers: 1)
        #expect(records.removeDeadMembers(bootstrapServers: cluster.bootstrapServers, logger: logger).isEmpty)
        #expect(files(records).isEmpty)
    }

    /// The leader a join answer names is taken for dead only by an instance that found a dead one's files when it
    /// started, and only while no other instance is alive.
    @Test func aFollowerTakesTheLeaderForDeadOnlyAfterADeathAndWhileNoOtherInstanceLives() throws {
        let follower = JoinGroupAnswer(generation: 3, member: "0x2", leader: "0x1")
        let leader = JoinGroupAnswer(generation: 3, member: "0x2", leader: "0x2")
        let unreachable = "127.0.0.1:1"

        // A first start: nothing died, so a leader it does not know is another instance's, recorded or not.
        let first = MemberRecords(databasePath: databasePath)
        try first.markAlive()
        first.removeDeadMembers(bootstrapServers: unreachable, logger: logger)
        #expect(!first.leaderIsDead(follower))
        first.release()

        // What a process killed before its join was answered leaves: its alive file, no longer locked.
        let records = MemberRecords(databasePath: databasePath)
        try "".write(toFile: records.directory + "/alive-4242-7", atomically: true, encoding: .utf8)
        try records.markAlive()
        records.removeDeadMembers(bootstrapServers: unreachable, logger: logger)
        #expect(files(records).count == 1, "the dead one's file goes; this instance's stays")
        #expect(records.leaderIsDead(follower))
        #expect(!records.leaderIsDead(leader))

        // Another instance running beside it may be that leader.
        let other = MemberRecords(databasePath: databasePath)
        try other.markAlive()
        #expect(!records.leaderIsDead(follower))
        other.release()
        #expect(records.leaderIsDead(follower))
        records.release()
        #expect(files(records).isEmpty)
    }
}
