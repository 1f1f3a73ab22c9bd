import GRDB
import Synchronization

// GRDB's query interface (`Record.fetchOne(db, key:)`, `record.insert(db)`, `update`, `save`) writes its SQL
// and has SQLite prepare and authorize it on every call. On the path every consumed event takes, that cost
// more than running the queries: in a profile of order-service under load, `fetchOne(_:key:)` alone took 11 % of
// its CPU, most of it building and preparing SQL. These run reads and writes of the hot rows through statements
// each connection prepares once (`Database.cachedStatement`).

/// A record the hot path writes through cached statements: its columns, named once, and their values in the
/// same order.
///
/// Listed by hand because GRDB's Codable encoding of a record (a keyed encoder filling an ordered dictionary,
/// copied into a `Dictionary` that then had to be sorted so that the SQL came out the same each time) cost
/// about 3 % of the whole shop's CPU at saturation, more than the statements it fed. Each conforming record's
/// listing is checked against its Codable encoding by a test (`ListedColumnsTests`), so the two cannot drift.
///
/// Each also names its table (`static let databaseTableName`): GRDB's default derives the name from the type's,
/// through a demangled type name and a lookup in a Foundation cache, on every use; that was about 2 to 3 % of
/// payment-service's and inventory-service's CPU.
public protocol ListedColumns: TableRecord {
    /// Every column the record writes.
    static var columns: [String] { get }
    /// The record's values, in the order of `columns`.
    var values: [DatabaseValue] { get }
}

extension FetchableRecord where Self: TableRecord {
    /// The record whose `column` holds `value`, or nil.
    public static func fetchOne(_ db: Database, where column: String, is value: some DatabaseValueConvertible) throws -> Self? {
        let sql = sql(.select(where: column)) { "SELECT * FROM \"\(databaseTableName)\" WHERE \"\(column)\" = ?" }
        return try fetchOne(db.cachedStatement(sql: sql), arguments: [value])
    }
}

extension TableRecord {
    /// Whether a row's `column` holds `value`.
    public static func exists(_ db: Database, where column: String, is value: some DatabaseValueConvertible) throws -> Bool {
        let sql = sql(.exists(where: column)) { "SELECT 1 FROM \"\(databaseTableName)\" WHERE \"\(column)\" = ?" }
        return try Bool.fetchOne(db.cachedStatement(sql: sql), arguments: [value]) ?? false
    }
}

extension ListedColumns {
    /// Inserts the record's columns.
    public func insertCached(_ db: Database) throws {
        let sql = Self.sql(.insert) {
            "INSERT INTO \"\(Self.databaseTableName)\" (\(Self.columns.quoted)) VALUES (\(Self.columns.placeholders))"
        }
        try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(listing: values))
    }

    /// Updates every column of the row whose `key` column holds the record's own value for it.
    public func updateCached(_ db: Database, key: String) throws {
        guard let keyIndex = Self.columns.firstIndex(of: key) else { throw DatabaseError(message: "\(Self.self) has no column \(key)") }
        var arguments = values
        arguments.append(arguments.remove(at: keyIndex))
        let sql = Self.sql(.update(key: key)) {
            let assignments = Self.columns.filter { $0 != key }.map { "\"\($0)\" = ?" }.joined(separator: ", ")
            return "UPDATE \"\(Self.databaseTableName)\" SET \(assignments) WHERE \"\(key)\" = ?"
        }
        try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(listing: arguments))
    }

    /// Inserts the record, or updates every other column of the row whose `key` (its primary key) it shares.
    public func upsertCached(_ db: Database, key: String) throws {
        let sql = Self.sql(.upsert(key: key)) {
            let updates = Self.columns.filter { $0 != key }.map { "\"\($0)\" = excluded.\"\($0)\"" }
            let onConflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
            return """
                INSERT INTO "\(Self.databaseTableName)" (\(Self.columns.quoted)) VALUES (\(Self.columns.placeholders)) ON CONFLICT ("\(key)") \(onConflict)
                """
        }
        try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(listing: values))
    }
}

/// A statement of the hot path, for one record type.
enum RecordStatement: Hashable {
    case select(where: String)
    case exists(where: String)
    case insert
    case update(key: String)
    case upsert(key: String)
}

/// The SQL of each record type's statements, written the first time it is needed: building it on every call
/// (quoting, mapping and joining the column names) was about 1.5 % of order-service's CPU.
private let writtenSQL = Mutex<[SQLOf: String]>([:])

private struct SQLOf: Hashable {
    let record: ObjectIdentifier
    let statement: RecordStatement
}

extension TableRecord {
    /// The SQL `write` gives for this record type's `statement`, written the first time it is asked for.
    static func sql(_ statement: RecordStatement, written write: () -> String) -> String {
        let key = SQLOf(record: ObjectIdentifier(Self.self), statement: statement)
        if let sql = writtenSQL.withLock({ $0[key] }) { return sql }
        let sql = write()
        writtenSQL.withLock { $0[key] = sql }
        return sql
    }
}

extension StatementArguments {
    /// GRDB's initializer for a sequence of one concrete type maps it through a key path (`\.databaseValue`),
    /// which the Swift runtime instantiates again on every call: 1.5 to 4 % of each service's CPU. Mapped through
    /// a closure instead.
    init(listing values: [DatabaseValue]) {
        self.init(values.map { $0 as (any DatabaseValueConvertible)? })
    }
}

extension Row {
    /// A column holding the raw value of an enum from another module (so not `DatabaseValueConvertible`), nil
    /// for NULL. A value the enum does not know is an error, as it is when GRDB decodes the record with Codable.
    public func decodeIfPresent<T: RawRepresentable>(_ type: T.Type, forColumn column: String) throws -> T? where T.RawValue == String {
        guard let raw = try decode(String?.self, forColumn: column) else { return nil }
        guard let value = T(rawValue: raw) else {
            throw DatabaseError(message: "\(column) holds '\(raw)', which is no \(T.self)")
        }
        return value
    }
}

private extension [String] {
    var quoted: String { map { "\"\($0)\"" }.joined(separator: ", ") }
    var placeholders: String { map { _ in "?" }.joined(separator: ", ") }
}
