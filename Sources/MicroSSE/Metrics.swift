import CoreMetrics
import Dispatch
import MicroSSECore
import MicroSSETransport
import Synchronization

import class Prometheus.PrometheusCollectorRegistry
import struct Prometheus.PrometheusMetricsFactory

/// The hub's metrics, reported two ways at once: to this server's own Prometheus registry (what
/// `GET /metrics` renders) and to the process's swift-metrics backend (`MetricsSystem.bootstrap`,
/// or the factory given to ``Server/init(configuration:logger:metricsFactory:)``).
///
/// Every metric object is made once, here. The hot paths only touch objects made in advance:
/// one counter increment per publish (plus a timer), one per stream opened or closed, one per
/// gap. Per-subscriber work (events delivered, bytes written) is never counted per write: the
/// transport already keeps those totals in atomics, and ``sample(_:)`` adds what they grew by
/// since the last sample, once a second and at every scrape. Gauges (streams, channels, the
/// largest queue) are sampled the same way.
final class HubMetrics: Sendable {
    /// What `GET /metrics` renders; one per server, so two servers in a process never mix.
    let registry = PrometheusCollectorRegistry()
    let published: CoreMetrics.Counter
    let opened: CoreMetrics.Counter
    let disconnects: CoreMetrics.Counter
    let drops: CoreMetrics.Counter
    let publishDuration: CoreMetrics.Timer
    /// Publishes acknowledged while no replica confirmed them (Redis `wait=auto` with no replica
    /// connected): `MicroSSE-Replicated: 0`.
    let unreplicated: CoreMetrics.Counter
    private let gapsEvicted: CoreMetrics.Counter
    private let gapsUnknown: CoreMetrics.Counter
    private let delivered: CoreMetrics.Counter
    private let bytes: CoreMetrics.Counter
    private let clients: CoreMetrics.Gauge
    private let channels: CoreMetrics.Gauge
    private let largestQueue: CoreMetrics.Gauge
    private let readerGaps: CoreMetrics.Counter
    private let readerLag: CoreMetrics.Gauge
    private let storedBytes: CoreMetrics.Gauge
    private let sampled = Mutex(Totals())
    private let timer = Mutex<SamplingTimer?>(nil)

    private struct Totals {
        var delivered = 0
        var bytes = 0
        var readerGaps = 0
    }

    /// The metric names: the Prometheus names, used as swift-metrics labels too.
    enum Name {
        static let clients = "microsse_clients"
        static let channels = "microsse_channels"
        static let published = "microsse_events_published_total"
        static let delivered = "microsse_events_delivered_total"
        static let bytes = "microsse_stream_bytes_total"
        static let drops = "microsse_drops_total"
        static let disconnects = "microsse_disconnects_total"
        static let opened = "microsse_streams_opened_total"
        static let gaps = "microsse_gaps_total"
        static let publishDuration = "microsse_publish_duration_seconds"
        static let unreplicated = "microsse_publishes_unreplicated_total"
        static let largestQueue = "microsse_queue_pending_bytes_max"
        /// With Redis: times the reader lost its place, and how far behind it is (0 without Redis).
        static let readerGaps = "microsse_redis_reader_gaps_total"
        static let readerLag = "microsse_redis_reader_lag_seconds"
        /// With Redis: the history bytes all channels hold there (the memory budget's count).
        static let storedBytes = "microsse_redis_history_bytes"
    }

    /// Makes every metric, in this server's registry and in `factory` (nil: the bootstrapped
    /// `MetricsSystem.factory`, read now, so bootstrap before creating the server).
    init(factory: (any MetricsFactory)?) {
        var prometheus = PrometheusMetricsFactory(registry: registry)
        prometheus.defaultDurationHistogramBuckets = [
            .microseconds(10), .microseconds(50), .microseconds(100), .microseconds(500), .milliseconds(1),
            .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100), .seconds(1),
        ]
        let both = MultiplexMetricsHandler(factories: [prometheus, factory ?? MetricsSystem.factory])
        func counter(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: dimensions, factory: both)
        }
        func gauge(_ name: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: name, factory: both) }
        published = counter(Name.published)
        opened = counter(Name.opened)
        disconnects = counter(Name.disconnects)
        drops = counter(Name.drops)
        unreplicated = counter(Name.unreplicated)
        delivered = counter(Name.delivered)
        bytes = counter(Name.bytes)
        gapsEvicted = counter(Name.gaps, [("reason", GapReason.evicted.rawValue)])
        gapsUnknown = counter(Name.gaps, [("reason", GapReason.unknown.rawValue)])
        clients = gauge(Name.clients)
        channels = gauge(Name.channels)
        largestQueue = gauge(Name.largestQueue)
        readerGaps = counter(Name.readerGaps)
        readerLag = gauge(Name.readerLag)
        storedBytes = gauge(Name.storedBytes)
        publishDuration = CoreMetrics.Timer(label: Name.publishDuration, dimensions: [], factory: both)
        clients.record(0)
        channels.record(0)
        largestQueue.record(0)
        readerLag.record(0)
    }

    /// A resumed stream was told it may have missed events.
    func gap(_ reason: GapReason) {
        switch reason {
        case .evicted: gapsEvicted.increment()
        case .unknown: gapsUnknown.increment()
        }
    }

    /// Brings the sampled metrics up to date with `hub`'s counters.
    func sample(_ hub: Hub) {
        let statistics = hub.statistics()
        clients.record(statistics.clients)
        channels.record(statistics.channels)
        largestQueue.record(hub.largestQueueBytes())
        let reader = hub.broker.readerHealth
        if let reader { readerLag.record(Double(reader.lagMilliseconds) / 1_000) }
        if let stored = reader?.storedBytes { storedBytes.record(stored) }
        sampled.withLock { last in
            if let reader, reader.lostPlace > last.readerGaps {
                readerGaps.increment(by: Int64(reader.lostPlace - last.readerGaps))
                last.readerGaps = reader.lostPlace
            }
            if statistics.delivered > last.delivered {
                delivered.increment(by: Int64(statistics.delivered - last.delivered))
                last.delivered = statistics.delivered
            }
            if statistics.bytes > last.bytes {
                bytes.increment(by: Int64(statistics.bytes - last.bytes))
                last.bytes = statistics.bytes
            }
        }
    }

    /// The Prometheus text exposition of this server's metrics, sampled now.
    func exposition(_ hub: Hub) -> [UInt8] {
        sample(hub)
        return registry.emitToBuffer()
    }

    /// Samples `hub` every `interval` seconds until ``stopSampling(_:)`` (for backends that
    /// push, such as StatsD: they see delivered events and bytes without a scrape).
    func startSampling(_ hub: Hub, interval: Double = 1) {
        let source = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        source.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(100))
        source.setEventHandler { [weak hub] in
            if let hub { hub.metrics.sample(hub) }
        }
        source.resume()
        let running = SamplingTimer(source: source)
        timer.withLock { $0 = running }
    }

    /// Stops the timer and takes a last sample.
    func stopSampling(_ hub: Hub) {
        timer.withLock { t in
            t?.source.cancel()
            t = nil
        }
        sample(hub)
    }
}

/// The sampling timer: a Dispatch source is thread-safe, though not marked `Sendable`.
private final class SamplingTimer: @unchecked Sendable {
    let source: any DispatchSourceTimer

    init(source: any DispatchSourceTimer) { self.source = source }
}

/// Counts the gap signals of resumed streams; every other call goes straight to `base`.
struct GapCountingBroker: EventBroker {
    let base: any EventBroker
    let metrics: HubMetrics

    func start() throws(MicroSSEError) { try base.start() }

    func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try base.publish(event, to: channel)
    }

    func subscribe(_ subscriber: Subscriber, after lastEventID: String?) -> ResumeStatus {
        let status = base.subscribe(subscriber, after: lastEventID)
        if case .gap(let reason) = status { metrics.gap(reason) }
        return status
    }

    var isAsynchronous: Bool { base.isAsynchronous }
    var readerHealth: ReaderHealth? { base.readerHealth }

    func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<String, MicroSSEError>) -> Void
    ) {
        base.publish(event, to: channel, completion: completion)
    }

    func publishReceipt(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> PublishReceipt {
        try base.publishReceipt(event, to: channel)
    }

    func publishReceipt(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    ) {
        base.publishReceipt(event, to: channel, completion: completion)
    }

    func subscribe(
        _ subscriber: Subscriber, after lastEventID: String?, completion: @escaping @Sendable (ResumeStatus) -> Void
    ) {
        let metrics = self.metrics
        base.subscribe(subscriber, after: lastEventID) { status in
            if case .gap(let reason) = status { metrics.gap(reason) }
            completion(status)
        }
    }

    func unsubscribe(_ subscriber: Subscriber) { base.unsubscribe(subscriber) }

    func shutdown() { base.shutdown() }

    var channelCount: Int { base.channelCount }

    var unavailableReason: String? { base.unavailableReason }
}
