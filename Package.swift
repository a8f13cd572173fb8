// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "MicroSSE",
    products: [
        .library(name: "MicroSSE", targets: ["MicroSSE"]),
        // Several hubs through Redis, for Swift packages: only those that add it link hiredis.
        .library(name: "MicroSSERedis", targets: ["MicroSSERedis"]),
        // The Mercure hub (docs/MERCURE.md): `configuration.mercure` once it is imported.
        .library(name: "MicroSSEMercure", targets: ["MicroSSEMercure"]),
        // The C library. SwiftPM cannot name it `microsse` next to the `microsse` executable, so the
        // product is `MicroSSEC` and its soname is `libmicrosse.so.0` (0: the ABI's major version);
        // `make lib` adds that name and the development link `libmicrosse.so`.
        .library(name: "MicroSSEC", type: .dynamic, targets: ["MicroSSECABI"]),
        .executable(name: "microsse", targets: ["microsse"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // Metrics for the app's backend, the hub's /metrics text, and `Server` as a `Service`.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // libmicrohttpd from Debian (libmicrohttpd-dev), found through pkg-config.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        // hiredis from Debian (libhiredis-dev), for the Redis-backed broker (several hubs).
        // No pkgConfig: hiredis.pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM rejects with a
        // warning; the header is at <hiredis/hiredis.h> in the default include path.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // The transport's C (about 1,000 lines; only MicroSSETransport imports it): typed wrappers
        // for libmicrohttpd's variadic calls, chunked `sendmsg` writes, epoll and eventfd, request
        // deadlines, per-address connection counts, and request-head checks.
        .target(name: "CMHDShim", dependencies: ["CMicroHTTPD"]),
        // The layers, each its own module so the compiler enforces the arrows (docs/DESIGN.md):
        // wire format -> core -> transport -> MicroSSE (public API) -> C ABI; Auth and Redis
        // beside them (Auth on the wire layer's channel-name rule, Redis on MicroSSE).
        // Layers see each other's `package` declarations; only MicroSSE's are public API.
        .target(name: "MicroSSEWire"),
        // glibc's <malloc.h> (malloc_trim, malloc_usable_size) as a module: the history budget
        // gives freed memory back to the system with it.
        .systemLibrary(name: "CMalloc"),
        .target(name: "MicroSSECore", dependencies: ["MicroSSEWire", "CMalloc"]),
        .target(name: "MicroSSETransport", dependencies: ["MicroSSECore", "CMHDShim"]),
        .target(
            name: "MicroSSE",
            dependencies: [
                "MicroSSEWire", "MicroSSECore", "MicroSSETransport", "MicroSSEAuth",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Several hubs through Redis: only what links it (the CLI, the C library, a package that
        // adds the MicroSSERedis product) pays for hiredis.
        .target(name: "MicroSSERedis", dependencies: ["MicroSSE", "MicroSSECore", "CHiredis"]),
        // The Mercure hub at /.well-known/mercure (docs/MERCURE.md), served when configured.
        .target(
            name: "MicroSSEMercure",
            dependencies: ["MicroSSE", "MicroSSECore", "MicroSSEWire", "MicroSSETransport", "MicroSSEAuth"]),
        // include/microsse.h as a module, so the C ABI's exports are checked against it.
        .systemLibrary(name: "CMicroSSE"),
        // The C ABI: a thin `@c @implementation` shell over the Swift API (include/microsse.h).
        .target(
            name: "MicroSSECABI",
            dependencies: ["MicroSSE", "MicroSSERedis", "MicroSSEMercure", "CMicroSSE"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libmicrosse.so.0"])]
        ),
        .executableTarget(
            name: "microsse",
            dependencies: [
                "MicroSSE", "MicroSSERedis", "MicroSSEMercure", "CGnuTLS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Benchmarks' in-process publisher (scenario "inproc"): built with the package, release mode.
        .executableTarget(name: "microsse-inproc", dependencies: ["MicroSSE"], path: "Benchmarks/inproc/swift"),
        // The README's Swift example, compiled with the package so it cannot go stale.
        .executableTarget(name: "hello-sse", dependencies: ["MicroSSE"], path: "Examples/swift/hello-sse"),
        // A strict raw-socket HTTP/SSE client shared by the test targets (not a product).
        .target(name: "MicroSSETestSupport", dependencies: ["MicroSSE"]),
        // One test target per layer, plus the server over loopback seen three ways (the embedding
        // API, the hub's routes, hostile clients).
        .testTarget(name: "WireTests", dependencies: ["MicroSSEWire"]),
        .testTarget(name: "CoreTests", dependencies: ["MicroSSECore", "MicroSSEWire", "CMalloc"]),
        .testTarget(name: "TransportTests", dependencies: ["MicroSSETransport", "CMHDShim"]),
        .testTarget(name: "ServerTests", dependencies: ["MicroSSE", "MicroSSETestSupport"]),
        .testTarget(name: "HubTests", dependencies: ["MicroSSE", "MicroSSECore", "MicroSSETestSupport"]),
        // Hostile clients: slowloris, oversized requests, resets, path tricks.
        .testTarget(name: "ReliabilityTests", dependencies: ["MicroSSE", "MicroSSECore", "MicroSSETestSupport"]),
        // Several hubs sharing one real redis-server.
        .testTarget(name: "RedisTests", dependencies: ["MicroSSE", "MicroSSERedis", "MicroSSETestSupport"]),
        // Mercure publishers and subscribers over loopback, both revisions.
        // php/ holds the Symfony publisher a test runs.
        .testTarget(
            name: "MercureTests",
            dependencies: ["MicroSSE", "MicroSSEMercure", "MicroSSECore", "MicroSSERedis", "MicroSSETestSupport"],
            exclude: ["php"]),
        // Builds and runs C programs against include/microsse.h and libmicrosse.
        .testTarget(name: "CABITests", dependencies: ["MicroSSECABI", "MicroSSETestSupport"]),
        // JWT authorization (MicroSSE wires it into the channel routes). libjwt from Debian
        // (libjwt-dev), found through pkg-config (libjwt.pc adds only -ljwt).
        .systemLibrary(name: "CJWT", pkgConfig: "libjwt", providers: [.apt(["libjwt-dev"])]),
        // Token verification, claims, channel patterns and token extraction; no Foundation.
        .target(name: "MicroSSEAuth", dependencies: ["MicroSSEWire", "CJWT"]),
        .testTarget(name: "AuthTests", dependencies: ["MicroSSEAuth", "CJWT"]),
        // `microsse doctor` against the real hub, directly and through a real nginx
        // (Examples/deploy); the deploy files checked with nginx -t and systemd-analyze.
        .testTarget(name: "DoctorTests", dependencies: ["MicroSSETestSupport"]),
        // The doctor over TLS: GnuTLS from Debian (libgnutls28-dev, which libmicrohttpd-dev
        // also pulls in), found through pkg-config; only the CLI links it, for https:// URLs.
        .systemLibrary(name: "CGnuTLS", pkgConfig: "gnutls", providers: [.apt(["libgnutls28-dev"])]),
        // The README's ServiceGroup example (run by EcosystemTests), and the tests of metrics,
        // the service lifecycle, configuration from the environment and the access log.
        .executableTarget(
            name: "service-group",
            dependencies: [
                "MicroSSE", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/swift/service-group"
        ),
        .testTarget(
            name: "EcosystemTests",
            dependencies: [
                "MicroSSE", "MicroSSETestSupport", .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
