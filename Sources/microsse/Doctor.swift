import ArgumentParser
import Dispatch
import MicroSSE
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Diagnoses the path between a hub and browsers: headers, buffering, idle cuts and resume.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that events reach browsers promptly through proxies, CDNs and load balancers.",
        discussion: """
            Subscribes to URL (e.g. http://host/events/doctor-probe) as a browser would and prints one line \
            per check: ok, warn, FAIL or skip. Exits 1 when a check fails. With --publish it publishes \
            \(Doctor.probeCount) probe events (type \(Prober.eventType), so onmessage handlers ignore them) \
            to that URL and measures their delays, then checks resume with Last-Event-ID. Without it, \
            only heartbeats can be watched. https:// URLs are checked over TLS (HTTP/1.1 by ALPN, as the \
            doctor speaks it) with the system's trusted certificates; --ca-file adds one, --insecure \
            accepts any (and says so). The publish token comes from --token, --token-file or \
            \(Doctor.tokenVariable). The server is not trusted: a stream past \(ProbeStream.maxBlockBytes >> 20) MiB \
            in one line or event, \(ProbeStream.maxItems) events and comments or \(ProbeStream.maxBytes >> 20) MiB \
            fails the check, what it sends is printed escaped, and a run takes at most \
            7 x --wait + 1 s, plus --idle (or --heartbeat-wait without --publish).
            """)

    static let probeCount = 5
    static let spacing = 0.2
    /// The environment variable read for the publish token when neither --token nor
    /// --token-file is given (so it is not in `ps`).
    static let tokenVariable = "MICROSSE_DOCTOR_TOKEN"

    @Argument(help: ArgumentHelp("The stream URL to subscribe to (http:// or https://).", valueName: "URL"))
    var url: String
    @Option(
        help: ArgumentHelp(
            "Publish probe events to this URL (POST, the same channel) to measure buffering and check resume.",
            valueName: "URL"))
    var publish: String?
    @Option(
        help: ArgumentHelp(
            "Bearer token for --publish (visible in ps: prefer --token-file or \(Doctor.tokenVariable)).",
            valueName: "TOKEN"))
    var token: String?
    @Option(
        help: ArgumentHelp(
            "Read the bearer token for --publish from this file (one trailing newline dropped).", valueName: "FILE"))
    var tokenFile: String?
    @Flag(help: "https: do not fail on a certificate that does not verify (self-signed test setups).")
    var insecure = false
    @Option(help: ArgumentHelp("https: also trust the certificates in this PEM file.", valueName: "FILE"))
    var caFile: String?
    @Option(
        help: ArgumentHelp(
            "Hold the stream open without events this long and report whether it survives.", valueName: "SECONDS"))
    var idle: Double?
    @Option(help: ArgumentHelp("Without --publish: how long to wait for a heartbeat.", valueName: "SECONDS"))
    var heartbeatWait = 20.0
    @Option(
        help: ArgumentHelp(
            "How long to wait for each connection's response head, for the probe publishes (all together, "
                + "after the 0.8 s they are spread over) and for each probe event after its publish.",
            valueName: "SECONDS"))
    var wait = 5.0

    func validate() throws {
        do {
            _ = try DoctorURL(url)
            _ = try publish.map(DoctorURL.init)
        } catch {
            throw ValidationError(String(describing: error))
        }
        if let caFile, access(caFile, R_OK) != 0 {
            throw ValidationError("--ca-file \(caFile): \(String(cString: strerror(errno)))")
        }
        guard (idle ?? 1) > 0, heartbeatWait > 0, wait > 0 else {
            throw ValidationError("--idle, --heartbeat-wait and --wait must be positive")
        }
        guard (idle ?? 1) <= 86_400, heartbeatWait <= 86_400, wait <= 3_600 else {
            throw ValidationError("--idle and --heartbeat-wait must be at most 86400, --wait at most 3600")
        }
        if token != nil, tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
        if let tokenFile, access(tokenFile, R_OK) != 0 {
            throw ValidationError("--token-file \(tokenFile): \(String(cString: strerror(errno)))")
        }
    }

    /// The publish token: --token, --token-file, or the environment variable; nil for none.
    /// Visible ASCII only, as `serve` requires: it goes into a header line.
    private func publishToken() throws -> String? {
        var found: String?
        if let token {
            found = token
        } else if let tokenFile {
            do throws(MicroSSEError) {
                found = try readSecret(tokenFile)
            } catch {
                throw ValidationError(error.message)
            }
        } else {
            found = getenv(Self.tokenVariable).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        if let found, !found.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
            throw ValidationError(
                "the publish token must be visible ASCII (it is sent as Authorization: Bearer <token>)")
        }
        return found
    }

    /// `text` as a URL, trusted as the TLS options say.
    private func parse(_ text: String) throws -> DoctorURL {
        var parsed = try DoctorURL(text)
        parsed.trust = TLSTrust(insecure: insecure, caFile: caFile)
        return parsed
    }

    func run() throws {
        let streamURL = try parse(url)
        let token = try publishToken()
        let report = Report()
        print(escaped("microsse doctor \(url)" + (publish.map { ", publishing to \($0)" } ?? "")))
        diagnose(streamURL, token: token, report)
        let failures = report.failures
        if failures.isEmpty {
            let warnings = report.lines.filter { $0.verdict == .warn }.count
            print("doctor: no check failed" + (warnings > 0 ? " (\(warnings) warning(s))" : ""))
        } else {
            print("doctor: \(failures.count) check(s) failed:")
            for line in failures { print("  " + line) }
        }
        fflush(nil)
        if !failures.isEmpty { throw ExitCode(1) }
    }

    private func diagnose(_ streamURL: DoctorURL, token: String?, _ report: Report) {
        let stream: ProbeStream
        do {
            stream = try ProbeStream(streamURL, wait: wait)
        } catch is NoResponseHead {
            report.add(.fail, "status", "no response head within \(seconds(wait)) of the request")
            report.add(
                .fail, "buffering",
                "events held by something between you and the hub: even the response head is held "
                    + "(the hub sends it at once; a proxy that waits for its buffer to fill holds it: "
                    + "nginx needs proxy_buffering off and proxy_http_version 1.1), or the server hangs")
            return
        } catch let error as CertificateNotTrusted {
            report.add(
                .fail, "tls",
                "certificate verification failed for \(streamURL.host): \(error) (trusting "
                    + "\(streamURL.trust.source); give its CA with --ca-file, or --insecure for a test setup)")
            return
        } catch let error as TLSFailure {
            report.add(.fail, "tls", error.description)
            return
        } catch {
            report.add(.fail, "connect", String(describing: error))
            return
        }
        defer { stream.close() }
        // Runs before the close above: a stream that broke a bound is a failure, whatever else was seen.
        defer { report.checkStream(stream) }
        if let tls = stream.tls { report.checkTLS(tls, host: streamURL.host) }
        guard report.checkHeaders(stream.head, tls: stream.tls) else { return }
        if streamURL.isTLS { report.checkHTTP2(streamURL, timeout: wait) }
        guard !stream.compressed else {
            report.add(.skip, "buffering", "the body is compressed (see content-encoding): fix that first")
            if let idle {
                stream.read(until: monotonicSeconds() + idle)
                report.checkIdle(stream, window: idle, start: stream.openedAt)
            }
            report.add(.skip, "resume", "the body is compressed (see content-encoding)")
            return
        }
        guard let publish, let publishURL = try? parse(publish) else {
            let window = idle ?? heartbeatWait
            stream.read(until: monotonicSeconds() + window) { idle == nil && !stream.commentTimes.isEmpty }
            report.checkHeartbeats(stream, watched: monotonicSeconds() - stream.openedAt)
            if idle != nil { report.checkIdle(stream, window: window, start: stream.openedAt) }
            report.add(.skip, "resume", "needs --publish")
            return
        }
        let prober = Prober(url: publishURL, token: token)
        let probes = prober.measure(stream, count: Self.probeCount, spacing: Self.spacing, wait: wait, report: report)
        report.checkBuffering(probes, spacing: Self.spacing, waited: wait, stream: stream)
        if let idle {
            let start = monotonicSeconds()
            stream.read(until: start + idle)
            report.checkIdle(stream, window: idle, start: start)
        }
        stream.close()
        guard !probes.isEmpty, probes.allSatisfy({ $0.arrivedAt != nil }) else {
            report.add(.skip, "resume", "the probe events did not all arrive (see buffering)")
            return
        }
        prober.checkResume(streamURL, after: probes, wait: wait, report: report)
    }
}

/// Publishes probe events and finds them in a stream.
struct Prober: Sendable {
    let url: DoctorURL
    let token: String?
    /// Tells this run's probe events from anything else on the channel.
    let run = "\(getpid())-\(Int(monotonicSeconds() * 1000) % 1_000_000)"
    static let eventType = "microsse.doctor"

    /// Publishes probe `seq` now; returns when it was sent (monotonic seconds), or why it failed
    /// (also when the server has not answered by `deadline`).
    func publish(_ seq: Int, deadline: Double) -> Result<Double, DoctorError> {
        let sentAt = monotonicSeconds()
        let body = "probe \(run) \(seq) sent=\(Int(sentAt * 1e6))us"
        var target = url
        target.target += (url.target.contains("?") ? "&" : "?") + "event=\(Self.eventType)"
        do {
            let (status, text) = try postEvent(target, body: body, token: token, deadline: deadline)
            guard (200..<300).contains(status) else {
                let hint =
                    status == 401 || status == 403
                    ? " (give the publish token with --token-file, \(Doctor.tokenVariable) or --token)" : ""
                return .failure(DoctorError("POST \(url) → \(status) \(text)\(hint)"))
            }
            return .success(sentAt)
        } catch {
            return .failure(error as? DoctorError ?? DoctorError(String(describing: error)))
        }
    }

    /// The probe's sequence number when `event` is one of this run's probes.
    func seq(of event: ParsedEvent) -> Int? {
        guard event.type == Self.eventType else { return nil }
        let words = event.data.split(separator: " ")
        guard words.count == 4, words[0] == "probe", words[1] == run else { return nil }
        return Int(words[2])
    }

    /// Publishes `count` probes `spacing` apart from another thread while `stream` is read here,
    /// so each arrival is stamped the moment its bytes come. The publishes must all be answered
    /// within `wait` of when the last is due, and each probe gets `wait` from its publish to
    /// arrive: the whole takes at most `(count - 1) * spacing + 2 * wait`.
    func measure(_ stream: ProbeStream, count: Int, spacing: Double, wait: Double, report: Report) -> [Probe] {
        let sent = Mutex<(probes: [Probe], failure: DoctorError?, finished: Bool)>(([], nil, false))
        let start = monotonicSeconds()
        let publishDeadline = start + Double(count - 1) * spacing + wait
        let prober = self
        DispatchQueue.global().async {
            for seq in 0..<count {
                let due = start + Double(seq) * spacing
                let pause = due - monotonicSeconds()
                if pause > 0 { usleep(UInt32(pause * 1e6)) }
                switch prober.publish(seq, deadline: publishDeadline) {
                case .success(let at): sent.withLock { $0.probes.append(Probe(seq: seq, sentAt: at)) }
                case .failure(let error): sent.withLock { $0.failure = error }
                }
                if sent.withLock({ $0.failure != nil }) { break }
            }
            sent.withLock { $0.finished = true }
        }
        // Each probe gets `wait` seconds from when it was sent (or due, if the publisher is late).
        var lastSent = start + Double(count - 1) * spacing
        var finished = false
        func settled() -> Bool {
            sent.withLock { state in
                if state.failure != nil { return true }
                lastSent = max(lastSent, state.probes.last?.sentAt ?? 0)
                finished = state.finished
                let seen = Set(stream.events.compactMap { seq(of: $0.event) })
                return state.finished && seen.count >= state.probes.count
            }
        }
        while !settled(), stream.end == nil, !finished || monotonicSeconds() < lastSent + wait {
            stream.read(until: monotonicSeconds() + 0.05) { settled() }
        }
        while !sent.withLock({ $0.finished }) { usleep(1000) }
        let state = sent.withLock { $0 }
        if let failure = state.failure {
            report.add(.fail, "publish", failure.description)
        } else {
            report.add(.ok, "publish", "\(state.probes.count) probe events accepted by POST \(url)")
        }
        var probes = state.probes
        for (event, at) in stream.events {
            if let seq = seq(of: event), let i = probes.firstIndex(where: { $0.seq == seq }),
                probes[i].arrivedAt == nil
            {
                probes[i].arrivedAt = at
                probes[i].id = event.id
            }
        }
        return probes
    }

    /// Reconnects with the last probe's id, publishes one more, and checks that exactly it follows.
    func checkResume(_ streamURL: DoctorURL, after probes: [Probe], wait: Double, report: Report) {
        guard let lastID = probes.last?.id else {
            report.add(.skip, "resume", "the probe events carried no id: nothing to resume from")
            return
        }
        let stream: ProbeStream
        do {
            stream = try ProbeStream(streamURL, lastEventID: lastID, wait: wait)
        } catch {
            report.add(.fail, "resume", "reconnecting failed: \(error)")
            return
        }
        defer { stream.close() }
        defer { report.checkStream(stream, "resume stream") }
        guard stream.head.status == 200 else {
            report.add(.fail, "resume", "reconnecting with Last-Event-ID gave \(stream.head.status)")
            return
        }
        let next = probes.count
        if case .failure(let error) = publish(next, deadline: monotonicSeconds() + wait) {
            report.add(.fail, "resume", "publishing the last probe failed: \(error)")
            return
        }
        let deadline = monotonicSeconds() + wait
        stream.read(until: deadline) { stream.events.contains { seq(of: $0.event) == next } }
        let seqs = stream.events.compactMap { seq(of: $0.event) }
        let gap =
            stream.head.header("MicroSSE-Gap") ?? stream.events.first { $0.event.type == "microsse.gap" }?.event.data
        let duplicated = seqs.filter { $0 < next }.count
        if let gap {
            report.add(
                .fail, "resume",
                "Last-Event-ID \(lastID) was not found (gap: \(gap)): several hubs without a shared --redis?")
        } else if !seqs.contains(next) || duplicated > 0 {
            let lost = seqs.contains(next) ? "" : "the new event did not arrive within \(seconds(wait))"
            let dup = duplicated > 0 ? "\(duplicated) event(s) already received came again" : ""
            report.add(.fail, "resume", [lost, dup].filter { !$0.isEmpty }.joined(separator: "; "))
        } else {
            report.add(
                .ok, "resume", "reconnected with Last-Event-ID \(lastID): the next event came, none lost or repeated")
        }
    }
}
