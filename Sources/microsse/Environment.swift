import ArgumentParser
import MicroSSE
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// `MICROSSE_*` environment variables as `serve` options.
///
/// Every option and flag of `serve` can also be set as `MICROSSE_` plus its long name in upper
/// case with `_` for `-` (`--publish-token` is `MICROSSE_PUBLISH_TOKEN`). The names come from
/// ArgumentParser's own description of the command (what `--experimental-dump-help` prints), so an
/// option added to `Serve` gets its variable with no list to maintain. A repeatable option takes a
/// comma-separated list; a flag is set by `1`, `true` or `yes`. The command line wins: a variable
/// is used only when none of its option's names is on the command line.
///
/// The values join the arguments ArgumentParser parses in this process; nothing is re-executed,
/// so no value (a token, say) shows in `ps` or `/proc/PID/cmdline`.
enum EnvironmentOptions {
    /// The prefix of every variable.
    static let prefix = "MICROSSE_"

    /// Options that stand in for each other: when the command line gives the second, the
    /// variable of the first is not used (a token file on the command line beats a token in the
    /// environment).
    static let alternatives: [String: [String]] = [
        "publish-token": ["publish-token-file"], "stats-token": ["stats-token-file"],
    ]

    /// Repeatable options whose values may hold commas (a sentinel URL's list): several are
    /// separated by spaces in their variable (`MICROSSE_REDIS="redis://a redis://b"`).
    static let spaceSeparated: Set<String> = ["redis"]

    /// `arguments` (without the executable) with the variables of `environment` added as options
    /// of the subcommand they name, when that subcommand is `serve`.
    static func apply(to arguments: [String], environment: [String: String]) -> [String] {
        guard arguments.first == "serve", let options = serveOptions() else { return arguments }
        let given = Set(
            arguments.prefix { $0 != "--" }.map { $0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? $0 })
        var added: [String] = []
        for option in options {
            let names = option.names.map { $0.kind == "long" ? "--\($0.name)" : "-\($0.name)" }
            guard let long = option.names.first(where: { $0.kind == "long" })?.name,
                names.allSatisfy({ !given.contains($0) }),
                alternatives[long, default: []].allSatisfy({ !given.contains("--\($0)") }),
                let value = environment[variable(for: long)]
            else { continue }
            switch option.kind {
            case "flag":
                if ["1", "true", "yes"].contains(value.lowercased()) { added.append("--\(long)") }
            case "option":
                let separator: Character = Self.spaceSeparated.contains(long) ? " " : ","
                let values = option.isRepeating ? value.split(separator: separator).map(String.init) : [value]
                added += values.map { "--\(long)=\($0)" }
            default:
                continue
            }
        }
        return [arguments[0]] + added + arguments.dropFirst()
    }

    /// `MICROSSE_` and `name` in upper case with `_` for `-`.
    static func variable(for name: String) -> String {
        prefix + name.uppercased().replacing("-", with: "_")
    }

    /// The options and flags of `serve`, from ArgumentParser's description of the command.
    static func serveOptions() -> [Argument]? {
        do {
            _ = try MicroSSECommand.parseAsRoot(["serve", "--experimental-dump-help"])
            return nil
        } catch {
            let json = MicroSSECommand.fullMessage(for: error)
            return try? JSONDecoder().decode(Tool.self, from: Data(json.utf8)).command.arguments
        }
    }

    /// The part of ArgumentParser's `--experimental-dump-help` JSON read here.
    struct Tool: Decodable {
        struct Command: Decodable {
            var arguments: [Argument]
        }
        var command: Command
    }

    /// One option, flag or positional argument of the dump.
    struct Argument: Decodable {
        struct Name: Decodable {
            /// `long`, `short` or `longWithSingleDash`.
            var kind: String
            var name: String
        }
        /// `option`, `flag` or `positional`.
        var kind: String
        var isRepeating: Bool
        var names: [Name]

        private enum CodingKeys: CodingKey { case kind, isRepeating, names }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decode(String.self, forKey: .kind)
            isRepeating = try c.decode(Bool.self, forKey: .isRepeating)
            names = try c.decodeIfPresent([Name].self, forKey: .names) ?? []
        }
    }

    /// The process's environment.
    static var current: [String: String] {
        var out: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let pair = String(cString: pointer).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if pair.count == 2, pair[0].hasPrefix(prefix) { out[String(pair[0])] = String(pair[1]) }
            entry += 1
        }
        return out
    }
}

/// Reads a secret (a token) from `path`: the whole file less one trailing newline (`\n` or
/// `\r\n`). The contents are never logged; errors name the file only.
func readSecret(_ path: String) throws(MicroSSEError) -> String {
    guard let file = fopen(path, "r") else {
        throw MicroSSEError(.invalidArgument, "cannot read \(path): \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buffer, 1, buffer.count, file)
        if n <= 0 { break }
        bytes += buffer[0..<n]
        guard bytes.count <= 65536 else { throw MicroSSEError(.invalidArgument, "\(path) is larger than 64 KiB") }
    }
    if bytes.last == 10 { bytes.removeLast() }
    if bytes.last == 13 { bytes.removeLast() }
    guard let text = String(validating: bytes, as: UTF8.self), !text.isEmpty else {
        throw MicroSSEError(.invalidArgument, "\(path) holds no UTF-8 token")
    }
    return text
}
