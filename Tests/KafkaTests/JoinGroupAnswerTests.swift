@testable import Kafka
import Synchronization
import Testing

/// The leader a group elected, read from the join answers librdkafka logs in its `cgrp` debug context.
@Suite struct JoinGroupAnswerTests {
    @Test func aFollowersAnswerNamesItselfAndTheLeader() throws {
        let line = "[thrd:main]: JoinGroup response: GenerationId 3, Protocol range, LeaderId 0x7fa1d8161840, my MemberId 0x7fa1d81b8820, member metadata count 0: (no error)"
        let answer = try #require(JoinGroupAnswer(logLine: line))
        #expect(answer == JoinGroupAnswer(generation: 3, member: "0x7fa1d81b8820", leader: "0x7fa1d8161840"))
        #expect(!answer.isLeader)
    }

    @Test func theLeadersAnswerNamesItTwice() throws {
        let line = "JoinGroup response: GenerationId 12, Protocol range, LeaderId rdkafka-5f1c (me), my MemberId rdkafka-5f1c, member metadata count 2: (no error)"
        let answer = try #require(JoinGroupAnswer(logLine: line))
        #expect(answer == JoinGroupAnswer(generation: 12, member: "rdkafka-5f1c", leader: "rdkafka-5f1c"))
        #expect(answer.isLeader)
    }

    @Test func aRefusedJoinOrAnotherLineIsNoAnswer() {
        #expect(JoinGroupAnswer(logLine: "JoinGroup response: GenerationId -1, Protocol , LeaderId , my MemberId , member metadata count 0: Broker: Not coordinator") == nil)
        #expect(JoinGroupAnswer(logLine: "JoinGroup response: discarding outdated request (now in join-state wait-sync)") == nil)
        #expect(JoinGroupAnswer(logLine: "I am elected leader for group \"g\" with 2 member(s)") == nil)
        #expect(JoinGroupAnswer(logLine: "JoinGroup response: GenerationId x, Protocol range, LeaderId a, my MemberId b, member metadata count 0: (no error)") == nil)
    }

    /// The mock elects the member that joined first; the second member hears who that is.
    @Test func eachMemberOfARealGroupHearsWhomItElected() async throws {
        let cluster = try TestCluster(partitions: 2)
        let first = try KafkaConsumer(configuration: cluster.configuration, group: "elected", topics: [cluster.topic])
        let firstAnswers = Answers()
        let firstWatcher = Task { for await case .joined(let answer) in first.events { firstAnswers.add(answer) } }
        defer { firstWatcher.cancel() }
        try await waitUntil(.seconds(30), "the first member is assigned every partition") { first.assignment().count == 2 }
        let leader = try #require(first.memberID())
        let elected = try #require(firstAnswers.all.last)
        #expect(elected.member == leader && elected.isLeader)

        let second = try KafkaConsumer(configuration: cluster.configuration, group: "elected", topics: [cluster.topic])
        let secondAnswers = Answers()
        let secondWatcher = Task { for await case .joined(let answer) in second.events { secondAnswers.add(answer) } }
        defer { secondWatcher.cancel() }
        try await waitUntil(.seconds(30), "the second member is assigned a partition") { second.assignment().count == 1 }
        let answer = try #require(secondAnswers.all.last)
        #expect(answer.member == second.memberID() && answer.leader == leader && !answer.isLeader)
        await second.close()
        await first.close()
    }
}

/// The join answers a consumer reported.
private final class Answers: Sendable {
    private let answers = Mutex<[JoinGroupAnswer]>([])
    func add(_ answer: JoinGroupAnswer) { answers.withLock { $0.append(answer) } }
    var all: [JoinGroupAnswer] { answers.withLock { $0 } }
}
