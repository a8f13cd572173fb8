import MicroSSECore
import MicroSSEWire

extension RedisBroker {
    /// Data bigger than this is stored once, in its channel's stream: its `PREFIX:all` entry
    /// carries `r` instead of `d`, and the readers fetch the data from the channel's stream.
    static let oneCopyAbove = 256

    /// The publish script: one call stores a batch of events (what a worker holds), in order.
    ///
    /// KEYS: the global stream, the epoch, the entry counter, the per-channel byte table (hash
    /// channel → bytes), the age index (sorted set channel → milliseconds of its oldest entry),
    /// the total byte counter. ARGV: global MAXLEN, history count, history bytes per channel,
    /// history cutoff (milliseconds; older entries are past the history TTL; 0 = no TTL), the
    /// epoch to create when the data set has none, the labels a channel's table keeps, channel
    /// TTL seconds, the memory budget of all channels (0 = none), the key prefix, the one-copy
    /// threshold, the number of events, then five per event: channel, data, event name, caller
    /// id (`=LABEL`, or empty), and `1` when the channel's expiry is to be set again (else empty;
    /// see ``RedisBroker/expiryDue(_:)``; a new stream always gets it). Returns the epoch, the bytes all
    /// channels hold after this call, then each event's entry id.
    ///
    /// Per event: one `XADD` to the global stream (`MAXLEN ~`, with its epoch `p` and count `n`)
    /// and one to its channel's stream, with the same id; label tables only for a label. Per
    /// channel of the batch: its length, its byte count, its expiry. Trimming is lazy: a channel
    /// is trimmed (to the history count plus its boundary entry, the oldest kept) once it holds
    /// a sixteenth more than the count, at once when over its bytes, and when a TTL is set, of
    /// entries past it; a resume never sees more than the count (it reads at most the count plus
    /// one). An entry's size is its data, event name and id plus 32 bytes; a channel's, the sum of its
    /// entries' plus 100 bytes and twice its name (its field in the byte table, its member in the
    /// age index). While the total of
    /// every channel is over the memory budget, the oldest entries go, channel by channel, oldest
    /// channel first (`XDEL`: a resume from before them gets the gap signal).
    static let publishScriptBytes = Array(publishScript.utf8)
    static let publishScript = """
        local g, prefix = KEYS[1], ARGV[9]
        local maxlen, count, chbytes, cutoff = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
        local ttl, budget, big, k = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[10]), tonumber(ARGV[11])
        local epoch = redis.call('GET', KEYS[2])
        if not epoch then
          redis.call('SET', KEYS[2], ARGV[5])
          epoch = ARGV[5]
        end
        local n0 = redis.call('INCRBY', KEYS[3], k) - k
        local function size(entry)
          local s = 32
          for j = 2, #entry[2], 2 do s = s + #entry[2][j] end
          return s
        end
        local reply = {epoch, 0}
        local added, order = {}, {}
        for j = 0, k - 1 do
          local c, d, e, i = ARGV[12 + 5 * j], ARGV[13 + 5 * j], ARGV[14 + 5 * j], ARGV[15 + 5 * j]
          local a = added[c]
          if not a then
            a = {n = 0, b = 0, key = prefix .. ':ch:' .. c, x = false}
            added[c] = a
            order[#order + 1] = c
          end
          local id
          -- Empty fields are left out (a reader takes a missing one as empty).
          if e == '' and i == '' then
            if #d > big then
              id = redis.call('XADD', g, 'MAXLEN', '~', maxlen, '*', 'c', c, 'p', epoch, 'n', n0 + j + 1, 'r', '1')
            else
              id = redis.call('XADD', g, 'MAXLEN', '~', maxlen, '*', 'c', c, 'd', d, 'p', epoch, 'n', n0 + j + 1)
            end
            redis.call('XADD', a.key, id, 'd', d)
          else
            if #d > big then
              id = redis.call('XADD', g, 'MAXLEN', '~', maxlen, '*', 'c', c, 'e', e, 'i', i, 'p', epoch, 'n', n0 + j + 1, 'r', '1')
            else
              id = redis.call('XADD', g, 'MAXLEN', '~', maxlen, '*', 'c', c, 'd', d, 'e', e, 'i', i, 'p', epoch, 'n', n0 + j + 1)
            end
            redis.call('XADD', a.key, id, 'd', d, 'e', e, 'i', i)
          end
          reply[#reply + 1] = id
          if not a.first then a.first = tonumber(string.match(id, '^%d+')) end
          if ARGV[16 + 5 * j] ~= '' then a.x = true end
          a.n = a.n + 1
          a.b = a.b + #d + #e + #i + 32
          if i ~= '' then
            local lb, lbo, label = prefix .. ':lb:' .. c, prefix .. ':lbo:' .. c, string.sub(i, 2)
            redis.call('HSET', lb, label, id)
            redis.call('ZADD', lbo, tonumber(string.match(id, '^%d+')), label)
            local over = redis.call('ZCARD', lbo) - tonumber(ARGV[6])
            if over > 0 then
              local gone = redis.call('ZPOPMIN', lbo, over)
              for x = 1, #gone, 2 do redis.call('HDEL', lb, gone[x]) end
            end
            redis.call('EXPIRE', lb, ttl)
            redis.call('EXPIRE', lbo, ttl)
          end
        end
        local delta = 0
        for _, c in ipairs(order) do
          local a = added[c]
          local key = a.key
          local len = redis.call('XLEN', key)
          local bytes
          local fresh = len == a.n
          if fresh then
            -- A new stream (or one that expired): whatever was counted for it is gone. Its
            -- bookkeeping (the field and the member naming it) counts as its own bytes.
            delta = delta - tonumber(redis.call('HGET', KEYS[4], c) or '0') + 100 + 2 * #c
            bytes = a.b + 100 + 2 * #c
            redis.call('HSET', KEYS[4], c, bytes)
            redis.call('ZADD', KEYS[5], a.first, c)
          else
            bytes = redis.call('HINCRBY', KEYS[4], c, a.b)
          end
          delta = delta + a.b
          if len - 1 > count + 128 + math.floor(count / 16) or bytes > chbytes or cutoff ~= '0' then
            local freed, first, trimmed = 0, nil, false
            if cutoff ~= '0' then
              local old = redis.call('XRANGE', key, '-', '(' .. cutoff .. '-0')
              if #old > 1 then
                for j = 1, #old - 1 do freed = freed + size(old[j]) end
                first = old[#old][1]
                len = len - (#old - 1)
              end
            end
            local from = first or '-'
            if len - 1 > count and not first and bytes - freed <= chbytes then
              -- Over the count alone: whole nodes go (MAXLEN ~), their bytes taken as the average.
              local gone = redis.call('XTRIM', key, 'MAXLEN', '~', count + 1)
              if gone > 0 then
                freed = freed + math.floor((bytes - freed) / len) * gone
                len = len - gone
                trimmed = true
              end
            elseif len - 1 > count then
              local over = len - 1 - count
              local gone = redis.call('XRANGE', key, from, '+', 'COUNT', over + 1)
              for j = 1, over do freed = freed + size(gone[j]) end
              first = gone[over + 1][1]
              len = len - over
            end
            local done = len <= 1 or bytes - freed <= chbytes
            while not done do
              local some = redis.call('XRANGE', key, first or '-', '+', 'COUNT', 17)
              local j = 1
              while j < #some and len > 1 and bytes - freed - size(some[j]) > chbytes do
                freed = freed + size(some[j])
                j = j + 1
                len = len - 1
              end
              if j > 1 then first = some[j][1] end
              done = j < #some or #some < 17 or len <= 1
            end
            if first then
              redis.call('XTRIM', key, 'MINID', first)
              trimmed = true
            end
            if trimmed then
              redis.call('HINCRBY', KEYS[4], c, -freed)
              first = first or redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1][1]
              redis.call('ZADD', KEYS[5], 'XX', tonumber(string.match(first, '^%d+')), c)
              delta = delta - freed
            end
          end
          if a.x or fresh then redis.call('EXPIRE', key, ttl) end
        end
        local total = redis.call('INCRBY', KEYS[6], delta)
        local rounds = 0
        while budget > 0 and total > budget and rounds < 10000 do
          rounds = rounds + 1
          local c = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
          if not c then break end
          local key = prefix .. ':ch:' .. c
          local some = redis.call('XRANGE', key, '-', '+', 'COUNT', 16)
          local freed, ids = 0, {}
          for j = 1, #some do
            if total - freed <= budget then break end
            freed = freed + size(some[j])
            ids[#ids + 1] = some[j][1]
          end
          if #ids > 0 then redis.call('XDEL', key, unpack(ids)) end
          local rest = some[#ids + 1]
          if not rest and #some == 16 then rest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1] end
          if rest then
            redis.call('HINCRBY', KEYS[4], c, -freed)
            redis.call('ZADD', KEYS[5], 'XX', tonumber(string.match(rest[1], '^%d+')), c)
          else
            -- Empty (or expired): whatever was counted for it goes.
            freed = tonumber(redis.call('HGET', KEYS[4], c) or '0')
            redis.call('HDEL', KEYS[4], c)
            redis.call('ZREM', KEYS[5], c)
          end
          total = redis.call('DECRBY', KEYS[6], freed)
        end
        reply[2] = total
        return reply
        """
}

extension RedisBroker {
    /// Fills in the data of the global stream's entries stored once (`r`, no `d`) from their
    /// channels' streams, with one pipelined round trip on the reader's connection. An entry whose
    /// data is gone already (evicted by the memory budget before this hub read it) is marked
    /// `lost`: the reader then gives its streams the gap signal instead.
    func fillOneCopyEntries(_ entries: [RedisValue], on c: RedisConnection) throws(MicroSSEError) -> [RedisValue] {
        var wanted: [(index: Int, command: [String])] = []
        for (n, entry) in entries.enumerated() {
            guard let fields = entry.array, fields.count == 2, field("r", in: fields[1]) != nil,
                field("d", in: fields[1]) == nil, let id = fields[0].text, let channel = field("c", in: fields[1])
            else { continue }
            wanted.append((n, ["XRANGE", channelKey(channel), id, id]))
        }
        guard !wanted.isEmpty else { return entries }
        let replies = try c.pipeline(wanted.map(\.command))
        var filled = entries
        for ((n, _), reply) in zip(wanted, replies) {
            guard var fields = filled[n].array, case .array(var values) = fields[1] else { continue }
            if let stored = reply.array?.first?.array, stored.count == 2, let data = rawField("d", in: stored[1]) {
                values += [.string(Array("d".utf8)), data]
            } else {
                values += [.string(Array("lost".utf8)), .string(Array("1".utf8))]
            }
            fields[1] = .array(values)
            filled[n] = .array(fields)
        }
        return filled
    }

    /// The value of `name` in an entry's `[field, value, ...]`, as Redis sent it.
    func rawField(_ name: String, in value: RedisValue) -> RedisValue? {
        guard let kv = value.array else { return nil }
        var i = 0
        while i + 1 < kv.count {
            if case .string(let key) = kv[i], key.elementsEqual(name.utf8) { return kv[i + 1] }
            i += 2
        }
        return nil
    }
}

extension RedisBroker {
    /// An entry whose data the memory budget dropped before this hub read it (stored once, in
    /// its channel's stream): the streams of its channel get the `evicted` gap signal where the
    /// event would have been (log readers through their logs, a stream whose replay is being read
    /// drops its held live events and starts after its replay with the gap, a stream just resumed
    /// gets the gap event queued). Counted in ``readerGaps``.
    func lostEntry(
        _ d: Delivered, after before: RedisStreamID, _ s: inout LocalState, batch: inout LogBatch,
        wakes: inout [Subscriber]
    ) {
        readerGaps.add(1, ordering: .relaxed)
        log("Redis reader: the event at \(d.id) in \(d.channel) was dropped (history memory) before this hub read it")
        let gap = ResumeStatus.gapFrame(lastEventID: Self.hubID(before, epoch: s.lastEpoch), reason: .evicted)
        s.add(gap, gap, of: d.channel, to: &batch)
        for sub in (s.channels[d.channel] ?? [:]).values {
            if s.pending[sub.id] != nil {
                s.pending[sub.id]!.lose()
                continue
            }
            if let skip = s.skipUpTo[sub.id], d.id <= skip { continue }
            switch sub.enqueue(gap, deferWake: true) {
            case .wake, .overflow(wake: true): wakes.append(sub)
            default: break
            }
        }
    }
}
