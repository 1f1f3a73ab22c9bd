import GRDB

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
public protocol ListedColumns: TableRecord {
    /// Every column the record writes.
    static var columns: [String] { get }
    /// The record's values, in the order of `columns`.
    var values: [DatabaseValue] { get }
}

extension FetchableRecord where Self: TableRecord {
    /// The record whose `column` holds `value`, or nil.
    public static func fetchOne(_ db: Database, where column: String, is value: some DatabaseValueConvertible) throws -> Self? {
        try fetchOne(db.cachedStatement(sql: "SELECT * FROM \"\(databaseTableName)\" WHERE \"\(column)\" = ?"), arguments: [value])
    }
}

extension TableRecord {
    /// Whether a row's `column` holds `value`.
    public static func exists(_ db: Database, where column: String, is value: some DatabaseValueConvertible) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM \"\(databaseTableName)\" WHERE \"\(column)\" = ?"), arguments: [value]) ?? false
    }
}

extension ListedColumns {
    /// Inserts the record's columns.
    public func insertCached(_ db: Database) throws {
        try db.cachedStatement(sql: "INSERT INTO \"\(Self.databaseTableName)\" (\(Self.columns.quoted)) VALUES (\(Self.columns.placeholders))")
            .execute(arguments: StatementArguments(values))
    }

    /// Updates every column of the row whose `key` column holds the record's own value for it.
    public func updateCached(_ db: Database, key: String) throws {
        let columns = Self.columns
        guard let keyIndex = columns.firstIndex(of: key) else { throw DatabaseError(message: "\(Self.self) has no column \(key)") }
        var arguments = values
        arguments.append(arguments.remove(at: keyIndex))
        try db.cachedStatement(sql: """
            UPDATE "\(Self.databaseTableName)" SET \(columns.filter { $0 != key }.map { "\"\($0)\" = ?" }.joined(separator: ", ")) WHERE "\(key)" = ?
            """).execute(arguments: StatementArguments(arguments))
    }

    /// Inserts the record, or updates every other column of the row whose `key` (its primary key) it shares.
    public func upsertCached(_ db: Database, key: String) throws {
        let updates = Self.columns.filter { $0 != key }.map { "\"\($0)\" = excluded.\"\($0)\"" }
        let onConflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
        try db.cachedStatement(sql: """
            INSERT INTO "\(Self.databaseTableName)" (\(Self.columns.quoted)) VALUES (\(Self.columns.placeholders)) ON CONFLICT ("\(key)") \(onConflict)
            """).execute(arguments: StatementArguments(values))
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
