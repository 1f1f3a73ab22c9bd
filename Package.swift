// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Emporium",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "emporium", targets: ["Emporium"]),
        .executable(name: "order-service", targets: ["OrderService"]),
        .executable(name: "payment-service", targets: ["PaymentService"]),
        .executable(name: "inventory-service", targets: ["InventoryService"]),
        .executable(name: "notification-service", targets: ["NotificationService"]),
        // Each replays its corpus as built here; built with libFuzzer, it fuzzes (docs/runtime.md, "Fuzzing").
        .executable(name: "fuzz-envelope", targets: ["FuzzEnvelope"]),
        .executable(name: "fuzz-headers", targets: ["FuzzHeaders"]),
        .executable(name: "fuzz-order-request", targets: ["FuzzOrderRequest"]),
        .executable(name: "fuzz-mail", targets: ["FuzzMail"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            path: "Shared/CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Shared/Kafka"
        ),
        .target(
            name: "DomainEvents",
            path: "Shared/DomainEvents"
        ),
        .target(
            name: "ServiceRuntime",
            dependencies: [
                "Kafka",
                "DomainEvents",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Shared/ServiceRuntime",
            // A link to docs/openapi.yaml, compiled in so that every service serves its part of the API's description.
            resources: [.embedInCode("openapi.yaml")]
        ),
        .target(
            name: "Catalogue",
            path: "Shared/Catalogue"
        ),
        .target(
            name: "OrderPlacement",
            dependencies: ["Catalogue", "DomainEvents"],
            path: "Services/OrderPlacement"
        ),
        .target(
            name: "MailFormat",
            path: "Services/MailFormat"
        ),
        .systemLibrary(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        .target(
            name: "FuzzSupport",
            dependencies: ["CLibFuzzer"],
            path: "Fuzz/Support"
        ),
        .executableTarget(name: "FuzzEnvelope", dependencies: ["DomainEvents", "FuzzSupport"], path: "Fuzz/Envelope"),
        .executableTarget(name: "FuzzHeaders", dependencies: ["Kafka", "FuzzSupport"], path: "Fuzz/Headers"),
        .executableTarget(name: "FuzzOrderRequest", dependencies: ["OrderPlacement", "Catalogue", "FuzzSupport"], path: "Fuzz/OrderRequest"),
        .executableTarget(name: "FuzzMail", dependencies: ["MailFormat", "FuzzSupport"], path: "Fuzz/Mail"),
        .executableTarget(
            name: "OrderService",
            dependencies: [
                "ServiceRuntime", "DomainEvents", "Catalogue", "Kafka", "OrderPlacement",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Order"
        ),
        .executableTarget(
            name: "PaymentService",
            dependencies: [
                "ServiceRuntime", "DomainEvents", "Catalogue", "Kafka",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Payment"
        ),
        .executableTarget(
            name: "InventoryService",
            dependencies: [
                "ServiceRuntime", "DomainEvents", "Catalogue", "Kafka",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Inventory"
        ),
        .executableTarget(
            name: "NotificationService",
            dependencies: [
                "ServiceRuntime", "DomainEvents", "Catalogue", "Kafka", "MailFormat",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Services/Notification"
        ),
        .executableTarget(
            name: "Emporium",
            dependencies: [
                "Kafka",
                "DomainEvents",
                "ServiceRuntime",
                "Catalogue",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Tools/Emporium",
            resources: [.embedInCode("Console/console.html")]
        ),
        .target(
            name: "TestSupport",
            dependencies: ["Kafka"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "KafkaTests",
            dependencies: ["Kafka", "TestSupport"],
            path: "Tests/KafkaTests"
        ),
        .testTarget(
            name: "ServiceRuntimeTests",
            dependencies: [
                "ServiceRuntime", "DomainEvents", "Catalogue", "Kafka", "TestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ServiceRuntimeTests"
        ),
        .testTarget(
            name: "NotificationServiceTests",
            dependencies: ["NotificationService", "MailFormat", "TestSupport"],
            path: "Tests/NotificationServiceTests"
        ),
        .testTarget(
            name: "SagaTests",
            dependencies: [
                "OrderService", "PaymentService", "InventoryService", "NotificationService", "ServiceRuntime", "DomainEvents", "Catalogue", "Kafka",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/SagaTests"
        ),
        .testTarget(
            name: "AuditTests",
            dependencies: ["Emporium", "Catalogue", "DomainEvents", "Kafka", "ServiceRuntime"],
            path: "Tests/AuditTests"
        ),
        .testTarget(
            name: "EmporiumTests",
            dependencies: [
                "Catalogue", "Kafka", "DomainEvents", "ServiceRuntime", "TestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Tests/EmporiumTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
