import Foundation
import Kafka
import Logging
import Synchronization

/// Which consumer group member each instance sharing a database is: a file per instance in `<database>.members/`,
/// locked (`flock`) by that instance for as long as it runs. The kernel drops a lock when its process dies, so a
/// file no one holds names a dead instance's member, and since instances that share a SQLite database share a
/// host, the lock is proof.
///
/// A group keeps a member that was killed until its session ends, and on the embedded cluster a restarted process
/// is a new member whose join first waits out that session (the mock ignores static membership). So an instance
/// that starts takes the dead members of its database out of the group before it joins (`removeDeadMembers`),
/// which cuts the time a `kill -9` stops a service's partitions from about 6.5 s to 2.6 s. On a real cluster,
/// static membership (`group.instance.id`) is Kafka's way to the same end, and this is not done there.
///
/// A process killed before its join was answered never learns its member ID, yet the embedded cluster keeps
/// that member, elects it leader if it joined first, and waits for its session to end twice over (once for the
/// leader's assignment, once for the rebalance after it). Each instance therefore also holds an `alive-<pid>-…`
/// file from its start. An instance that found a dead instance's files when it started, and then hears it joined
/// as a follower while no other instance is alive, knows the leader is dead (`leaderIsDead`) and takes it out by
/// the ID its join answer names. Instances that merely share a group name without sharing a database (not a
/// deployment Emporium supports: their inboxes would differ) then never take each other out.
public final class MemberRecords: Sendable {
    private struct Record: Codable {
        let group: String
        let memberId: String
        let instance: String
        let pid: Int32
    }

    private struct Held {
        let memberID: String
        let path: String
        let descriptor: Int32
    }

    public let directory: String
    private let held = Mutex<Held?>(nil)
    private let alive = Mutex<Int32?>(nil)
    private let sawDeadInstance = Mutex(false)
    /// Named for the process and this object, so instances in one process (tests) have one each.
    private let aliveName = "alive-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    public init(databasePath: String) {
        directory = databasePath + ".members"
    }

    /// Records this instance's member ID, if it changed (a member expelled from its group joins again as another).
    public func hold(memberID: String, group: String, instance: String) throws {
        if held.withLock({ $0?.memberID }) == memberID { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Locked before it is given its name, so no instance ever sees the file unlocked while this one lives.
        let staging = "\(directory)/.\(getpid()).staging"
        let descriptor = open(staging, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw MemberRecordError(path: staging) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw MemberRecordError(path: staging)
        }
        let contents = try JSONEncoder().encode(Record(group: group, memberId: memberID, instance: instance, pid: getpid()))
        let path = "\(directory)/\(Self.fileName(for: memberID))"
        let written = contents.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == contents.count, rename(staging, path) == 0 else {
            close(descriptor)
            throw MemberRecordError(path: path)
        }
        let previous = held.withLock { held in
            defer { held = Held(memberID: memberID, path: path, descriptor: descriptor) }
            return held
        }
        if let previous {
            if previous.path != path { unlink(previous.path) }
            close(previous.descriptor)
        }
    }

    /// Marks this instance as running until it stops or dies: a file it holds locked. Call it before joining.
    public func markAlive() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/\(aliveName)"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw MemberRecordError(path: path) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw MemberRecordError(path: path)
        }
        if let previous = alive.withLock({ alive in defer { alive = descriptor }; return alive }) { close(previous) }
    }

    /// Whether the leader a join answer named can be no running instance: this instance found a dead one's files
    /// when it started (`removeDeadMembers`), and no other instance is alive now.
    public func leaderIsDead(_ answer: JoinGroupAnswer) -> Bool {
        !answer.isLeader && sawDeadInstance.withLock { $0 } && !othersAlive()
    }

    /// Whether another instance sharing this database is running: whether any file here other than this
    /// instance's own is locked.
    private func othersAlive() -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
        let own: Set<String> = [aliveName, ".\(getpid()).staging", held.withLock { $0.map { URL(fileURLWithPath: $0.path).lastPathComponent } } ?? ""]
        return names.contains { name in
            guard !own.contains(name) else { return false }
            let descriptor = open("\(directory)/\(name)", O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return false }
            defer { close(descriptor) }
            return flock(descriptor, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK
        }
    }

    /// Removes this instance's files: after a graceful stop has left the group.
    public func release() {
        if let previous = held.withLock({ held in defer { held = nil }; return held }) {
            unlink(previous.path)
            close(previous.descriptor)
        }
        if let descriptor = alive.withLock({ alive in defer { alive = nil }; return alive }) {
            unlink("\(directory)/\(aliveName)")
            close(descriptor)
        }
    }

    /// Takes every member whose instance died out of its group, and forgets it once the coordinator no longer has
    /// it. Blocks on the network (a few seconds at most per member); call it off the cooperative pool.
    @discardableResult
    public func removeDeadMembers(bootstrapServers: String, logger: Logger) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for name in names.sorted() {
            let path = "\(directory)/\(name)"
            let descriptor = open(path, O_RDWR | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { continue }  // its instance is alive
            sawDeadInstance.withLock { $0 = true }
            if name.hasPrefix(".") || name.hasPrefix("alive-") {
                unlink(path)  // staged by, or marking, an instance that died
                continue
            }
            guard let data = FileManager.default.contents(atPath: path), let record = try? JSONDecoder().decode(Record.self, from: data) else {
                unlink(path)  // a file its instance died writing
                continue
            }
            do {
                switch try GroupMemberRemoval.remove(member: record.memberId, from: record.group, bootstrapServers: bootstrapServers) {
                case .removed:
                    logger.info("took member \(record.memberId) of \(record.instance) (pid \(record.pid), gone) out of group \(record.group)")
                    removed.append(record.memberId)
                case .notAMember:
                    logger.debug("member \(record.memberId) of \(record.instance) had already left group \(record.group)")
                }
                unlink(path)
            } catch {
                logger.warning("could not take member \(record.memberId) of \(record.instance) out of group \(record.group); the group will drop it when its session ends: \(error)")
            }
        }
        return removed
    }

    /// Takes out of the group the leader this instance's join answer named, once `leaderIsDead` said it is no
    /// running process: a member killed before its join was answered. Blocks on the network.
    public func removeDeadLeader(_ answer: JoinGroupAnswer, of group: String, bootstrapServers: String, logger: Logger) {
        do {
            switch try GroupMemberRemoval.remove(member: answer.leader, from: group, bootstrapServers: bootstrapServers) {
            case .removed:
                logger.info("took the elected leader \(answer.leader) out of group \(group): no running instance is that member (killed before its join was answered)")
            case .notAMember:
                logger.debug("the elected leader \(answer.leader) had already left group \(group)")
            }
        } catch {
            logger.warning("could not take the elected leader \(answer.leader) out of group \(group); the group will drop it when its session ends: \(error)")
        }
    }

    /// Member IDs are the coordinator's choice (`<client.id>-<uuid>` on Kafka); keep what is safe in a file name.
    static func fileName(for memberID: String) -> String {
        "member-" + String(memberID.unicodeScalars.map { scalar in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "-_.".unicodeScalars.contains(scalar)) ? Character(scalar) : "_"
        }.prefix(200)) + ".json"
    }
}

struct MemberRecordError: Error, CustomStringConvertible {
    let path: String
    let reason = String(cString: strerror(errno))

    var description: String { "cannot record this instance's group member in \(path): \(reason)" }
}
