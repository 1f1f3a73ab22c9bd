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
}
