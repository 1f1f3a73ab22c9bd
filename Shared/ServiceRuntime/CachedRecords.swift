import GRDB

// GRDB's query interface (`Record.fetchOne(db, key:)`, `record.insert(db)`, `update`, `save`) writes its SQL
// and has SQLite prepare and authorize it on every call. On the path every consumed event takes, that cost
// more than running the queries: in a profile of order-service under load, `fetchOne(_:key:)` alone took 11 % of
// its CPU, most of it building and preparing SQL. These keep GRDB's records (their Codable columns, their
// decoding) and run them through statements each connection prepares once (`Database.cachedStatement`).

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

extension EncodableRecord where Self: TableRecord {
    /// Inserts the record's columns.
    public func insertCached(_ db: Database) throws {
        let (columns, values) = try encodedColumns()
        try db.cachedStatement(sql: "INSERT INTO \"\(Self.databaseTableName)\" (\(columns.quoted)) VALUES (\(columns.placeholders))")
            .execute(arguments: StatementArguments(values))
    }

    /// Updates every column of the row whose `key` column holds the record's own value for it.
    public func updateCached(_ db: Database, key: String) throws {
        let (columns, values) = try encodedColumns()
        guard let keyIndex = columns.firstIndex(of: key) else { throw DatabaseError(message: "\(Self.self) has no column \(key)") }
        let others = columns.indices.filter { $0 != keyIndex }
        try db.cachedStatement(sql: """
            UPDATE "\(Self.databaseTableName)" SET \(others.map { "\"\(columns[$0])\" = ?" }.joined(separator: ", ")) WHERE "\(key)" = ?
            """).execute(arguments: StatementArguments(others.map { values[$0] } + [values[keyIndex]]))
    }

    /// Inserts the record, or updates every other column of the row whose `key` (its primary key) it shares.
    public func upsertCached(_ db: Database, key: String) throws {
        let (columns, values) = try encodedColumns()
        let updates = columns.filter { $0 != key }.map { "\"\($0)\" = excluded.\"\($0)\"" }
        let onConflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
        try db.cachedStatement(sql: """
            INSERT INTO "\(Self.databaseTableName)" (\(columns.quoted)) VALUES (\(columns.placeholders)) ON CONFLICT ("\(key)") \(onConflict)
            """).execute(arguments: StatementArguments(values))
    }

    /// Column names in a fixed order (so that the SQL, and so the cached statement, is the same every call) and
    /// their values, encoded as GRDB encodes the record.
    private func encodedColumns() throws -> (columns: [String], values: [DatabaseValue]) {
        let encoded = try databaseDictionary.sorted { $0.key < $1.key }
        return (encoded.map(\.key), encoded.map(\.value))
    }
}

private extension [String] {
    var quoted: String { map { "\"\($0)\"" }.joined(separator: ", ") }
    var placeholders: String { map { _ in "?" }.joined(separator: ", ") }
}
