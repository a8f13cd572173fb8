extension RedisBroker {
    /// KEYS: global stream, channel stream, channel byte counter, epoch, entry counter, the
    /// channel's label table and its order. ARGV: global MAXLEN, history count, channel, data,
    /// event name, caller id (`=LABEL`, or empty), TTL seconds, history bytes, history cutoff
    /// (milliseconds; entries older are past the history TTL; 0 = no TTL), the epoch to create
    /// when the data set has none, the labels a channel's table keeps. Returns the entry id and
    /// the epoch it was stored under.
    ///
    /// Each global entry carries its epoch (`p`) and the count of entries the global stream was
    /// given (`n`), so a reader that finds `n` jump knows entries were trimmed before it read
    /// them. A label is recorded in the channel's table (label → entry id), which keeps the
    /// newest labels only and expires with the channel.
    ///
    /// The channel stream is trimmed from its oldest end while it holds more than the history
    /// count, or more than the history bytes, or an entry past the history TTL, besides its oldest
    /// entry (the boundary that places a client resuming from exactly there; when entries expire,
    /// the newest expired one). An entry's size is its data, event name and id plus 32 bytes,
    /// close to its encoded size on the wire; the counter key holds the sum.
    static let publishScriptBytes = Array(publishScript.utf8)
    static let publishScript = """
        if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('DEL', KEYS[3]) end
        redis.call('SET', KEYS[4], ARGV[10], 'NX')
        local epoch = redis.call('GET', KEYS[4])
        local count = redis.call('INCR', KEYS[5])
        local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'c', ARGV[3], 'd', ARGV[4], 'e', ARGV[5], 'i', ARGV[6], 'p', epoch, 'n', count)
        redis.call('XADD', KEYS[2], id, 'd', ARGV[4], 'e', ARGV[5], 'i', ARGV[6])
        if ARGV[6] ~= '' then
          local label = string.sub(ARGV[6], 2)
          redis.call('HSET', KEYS[6], label, id)
          redis.call('ZADD', KEYS[7], tonumber(string.match(id, '^%d+')), label)
          local over = redis.call('ZCARD', KEYS[7]) - tonumber(ARGV[11])
          if over > 0 then
            local gone = redis.call('ZPOPMIN', KEYS[7], over)
            for j = 1, #gone, 2 do redis.call('HDEL', KEYS[6], gone[j]) end
          end
          redis.call('EXPIRE', KEYS[6], ARGV[7])
          redis.call('EXPIRE', KEYS[7], ARGV[7])
        end
        local bytes = redis.call('INCRBY', KEYS[3], #ARGV[4] + #ARGV[5] + #ARGV[6] + 32)
        if ARGV[9] ~= '0' then
          local old = redis.call('XRANGE', KEYS[2], '-', '(' .. ARGV[9] .. '-0')
          if #old > 1 then
            local gone = 0
            for j = 1, #old - 1 do
              gone = gone + 32
              for k = 2, #old[j][2], 2 do gone = gone + #old[j][2][k] end
            end
            redis.call('XTRIM', KEYS[2], 'MINID', old[#old][1])
            bytes = redis.call('DECRBY', KEYS[3], gone)
          end
        end
        local n = redis.call('XLEN', KEYS[2])
        local count = tonumber(ARGV[2])
        local budget = tonumber(ARGV[8])
        -- Within both bounds nothing goes, and the oldest entry is not even read (most publishes).
        if n - 1 > count or bytes > budget then
          while n > 1 do
            local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
            local size = 32
            for k = 2, #oldest[2], 2 do size = size + #oldest[2][k] end
            if n - 1 <= count and bytes - size <= budget then break end
            redis.call('XDEL', KEYS[2], oldest[1])
            bytes = redis.call('DECRBY', KEYS[3], size)
            n = n - 1
          end
        end
        redis.call('EXPIRE', KEYS[2], ARGV[7])
        redis.call('EXPIRE', KEYS[3], ARGV[7])
        return {id, epoch}
        """
}
