"""The Redis backend's server-side scripts (Lua, run atomically by the server).

Each touches only the keys of one session (one hash slot), and does every check before
its first write: Redis does not roll a script back, so a script that fails part-way
must have failed before writing anything. Key and field names are described in
``_redis``.
"""

from __future__ import annotations

EXPIRE = """
local ttl = tonumber(ARGV[{ttl}])
if ttl > 0 then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
"""

# KEYS head, log, snap, arch, tok, tok0; ARGV token, line, digest, ttl ms. Returns 1 created,
# 0 exists.
CREATE = """
local g = redis.call('HGET', KEYS[1], 'g')
if g then
  if g == ARGV[1] then  -- our own create, sent again
    redis.call('HINCRBY', KEYS[1], 'b', 0)  -- a no-op write, for the WAIT after it (_cluster)
    return 1
  end
  return 0
end
redis.call('DEL', unpack(KEYS))  -- leftovers of an expiring life
redis.call('XADD', KEYS[2], '0-1', 'r', ARGV[2], 't', ARGV[1])
redis.call('HSET', KEYS[1], 'seq', 1, 'h', ARGV[3], 'g', ARGV[1], 'b', #ARGV[2] + 1, 'sb', 0)
""" + EXPIRE.format(ttl=4) + """
return 1
"""

# KEYS a new session's log copy; ARGV the seq before the lines, how long the copy is kept
# (ms), lines... A fork's copy, a page per call (see _bulk). Returns 1 added (or added
# already: this very call, sent again), 0 the copy does not end at that seq.
FILL = """
local base = tonumber(ARGV[1])
local n = #ARGV - 2
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local at = last and tonumber(string.match(last[1], '%-(%d+)$')) or 0
if at >= base + n and at > 0 then return 1 end
if at ~= base then return 0 end
for i = 1, n do
  redis.call('XADD', KEYS[1], string.format('0-%d', base + i), 'r', ARGV[2 + i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS head, log, snap, arch, tok, tok0, log:redacting, arch:redacting, the log's copy FILL
# built; ARGV token, last seq, its digest, bytes of the lines, ttl ms. Makes the session of
# the copy at once: 1 created, 0 the id exists, 2 the copy is not whole (it expired).
CREATE_LOG = """
local g = redis.call('HGET', KEYS[1], 'g')
if g then
  if g == ARGV[1] then  -- our own create, sent again
    redis.call('HINCRBY', KEYS[1], 'b', 0)
    return 1
  end
  redis.call('DEL', KEYS[9])
  return 0
end
local last = redis.call('XREVRANGE', KEYS[9], '+', '-', 'COUNT', 1)[1]
if not last or last[1] ~= '0-' .. ARGV[2] or redis.call('XLEN', KEYS[9]) ~= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[9])
  return 2
end
redis.call('DEL', unpack(KEYS, 1, 8))  -- leftovers of an expiring life
redis.call('RENAME', KEYS[9], KEYS[2])
redis.call('PERSIST', KEYS[2])
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'h', ARGV[3], 'g', ARGV[1], 'b', ARGV[4], 'sb', 0)
""" + EXPIRE.format(ttl=5) + """
return 1
"""

# KEYS head, log, snap, arch, tok, tok0; ARGV base seq, base digest, token, ttl ms, new
# digest, the writer's retry window in ms, lines... Returns {0, mark} appended (mark 1: the
# first append since the session's catalog entry was saved, field cd: the writer adds the
# session to the catalog's ``dirty`` set, see ``_catalog``), {3} appended
# earlier (this very write, sent again), {1, seq, h, lines...} the head moved, {2} no such
# session, {4, last id} head and log disagree.
#
# A moved head comes with the lines after the writer's base up to it, when they are few
# (CAUGHT_UP) and still in the log and the base is the log's: the writer's check for an id
# already stored reads on from them, with no round trip of its own before it sends again
# (under contention that read cost more than the retry itself: issue 16).
#
# The own-token check: a write sent again finds its token on the log entry at the seq its
# last record got, or, once compaction moved that entry to the archive, in ``tok``/``tok0``,
# where the archive script keeps the tokens of the entries it trims for as long as any
# writer's retries may still come (``rw``, the longest retry window a writer declared).
CAUGHT_UP = 64
"""The most lines a moved head's answer carries (see APPEND)."""

APPEND = ("""
local head = redis.call('HMGET', KEYS[1], 'seq', 'h', 'rw', 'archived', 'cd')
if not head[1] then return {2} end
local base = tonumber(ARGV[1])
local n = #ARGV - 6
if tonumber(head[1]) ~= base or head[2] ~= ARGV[2] then
  local mine = string.format('0-%d', base + n)
  local entry = redis.call('XRANGE', KEYS[2], mine, mine)[1]
  if entry then
    local f = entry[2]
    for i = 1, #f - 1, 2 do
      if f[i] == 't' and f[i + 1] == ARGV[3] then
        redis.call('HINCRBY', KEYS[1], 'b', 0)  -- a no-op write, for the WAIT after it (_cluster)
        return {3}
      end
    end
  elseif base + n <= (tonumber(head[4]) or 0) then
    local seq = string.format('%d', base + n)
    if redis.call('HGET', KEYS[5], seq) == ARGV[3] or redis.call('HGET', KEYS[6], seq) == ARGV[3] then
      redis.call('HINCRBY', KEYS[1], 'b', 0)
      return {3}
    end
  end
  local moved = {1, head[1], head[2]}
  local top = tonumber(head[1])
  if top > base and top - base <= {caught} and base > (tonumber(head[4]) or 0) then
    local found = redis.call('XRANGE', KEYS[2], string.format('0-%d', base), string.format('0-%d', top))
    if #found == top - base + 1 and found[1][1] == string.format('0-%d', base) then
      local lines = {}
      for i = 1, #found do
        local f = found[i][2]
        for j = 1, #f - 1, 2 do
          if f[j] == 'r' then lines[i] = f[j + 1] end
        end
      end
      -- The base is the writer's only if its entry's line ends in the writer's base digest.
      if lines[1] and string.sub(lines[1], -34, -3) == ARGV[2] then
        for i = 2, #found do moved[#moved + 1] = lines[i] end
      end
    end
  end
  return moved
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if not last or last[1] ~= string.format('0-%d', base) then
  return {4, last and last[1] or 'nothing'}
end
local bytes = n
for i = 1, n - 1 do
  redis.call('XADD', KEYS[2], string.format('0-%d', base + i), 'r', ARGV[6 + i])
  bytes = bytes + #ARGV[6 + i]
end
redis.call('XADD', KEYS[2], string.format('0-%d', base + n), 'r', ARGV[6 + n], 't', ARGV[3])
redis.call('HSET', KEYS[1], 'seq', string.format('%d', base + n), 'h', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'b', string.format('%d', bytes + #ARGV[6 + n]))
if tonumber(ARGV[6]) > (tonumber(head[3]) or 0) then
  redis.call('HSET', KEYS[1], 'rw', ARGV[6])
end
local mark = 0
if not head[5] then  -- the first append since the catalog's entry was saved
  redis.call('HSET', KEYS[1], 'cd', 1)
  mark = 1
end
""" + EXPIRE.format(ttl=4) + """
return {0, mark}
""").replace("{caught}", str(CAUGHT_UP))

# KEYS head, log, snap, arch, tok, tok0; ARGV if seq, if digest ('' for none). 1 deleted,
# 0 none, 2 moved.
DELETE = """
local head = redis.call('HMGET', KEYS[1], 'seq', 'h')
if not head[1] then return 0 end
if ARGV[1] ~= '' and (head[1] ~= ARGV[1] or head[2] ~= ARGV[2]) then return 2 end
redis.call('DEL', unpack(KEYS))
return 1
"""

# KEYS head. Marks the head as sealed; returns {seq, h}, or {} for no such session.
SEAL = """
local head = redis.call('HMGET', KEYS[1], 'seq', 'h')
if not head[1] then return {} end
redis.call('HSET', KEYS[1], 'sealed', head[1])
return head
"""

# KEYS head, log, arch, tok, tok0; ARGV generation, archived mark before, mark after, bytes
# of the records moved, then per chunk kept in Redis: first, last, blob (none when the
# archive is a file store, already written). 1 archived, 0 no such session (this life), 2
# someone archived first. The head's entry stays in the log: the append script checks that
# the log ends at the head.
#
# Before trimming, the tokens on the entries it trims go to ``tok`` (seq -> token), so that
# a write whose reply was lost, retried after this, still finds its own token (issue 13: it
# appended again). ``tok`` is renamed to ``tok0`` (dropping the one before) once it is older
# than the keep time, twice the longest retry window a writer declared plus a second, so a
# token stays for at least that long and memory holds about two keep times' worth.
ARCHIVE = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME then writes (Redis < 7)
local head = redis.call('HMGET', KEYS[1], 'g', 'archived', 'seq', 'rw')
if head[1] ~= ARGV[1] then return 0 end
if (tonumber(head[2]) or 0) ~= tonumber(ARGV[2]) then return 2 end
local bytes = 0
for i = 5, #ARGV - 2, 3 do
  redis.call('XADD', KEYS[3], '0-' .. ARGV[i], 'last', ARGV[i + 1], 'z', ARGV[i + 2])
  bytes = bytes + #ARGV[i + 2]
end
local mark = tonumber(ARGV[3])
local trim = string.format('0-%d', math.min(mark + 1, tonumber(head[3])))
local tokens = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '(' .. trim)) do
  local f = entry[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 't' then
      tokens[#tokens + 1] = string.sub(entry[1], 3)
      tokens[#tokens + 1] = f[i + 1]
    end
  end
end
if #tokens > 0 then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local keep = 2 * (tonumber(head[4]) or 0) + 1000
  local since = tonumber(redis.call('HGET', KEYS[4], '~since'))
  if since and since < ms - keep then
    redis.call('RENAME', KEYS[4], KEYS[5])
    since = nil
  end
  if not since then redis.call('HSET', KEYS[4], '~since', ms) end
  for i = 1, #tokens, 1000 do  -- unpack() has a limit on how many values it takes
    redis.call('HSET', KEYS[4], unpack(tokens, i, math.min(i + 999, #tokens)))
  end
  redis.call('PEXPIRE', KEYS[4], 2 * keep)
end
redis.call('HSET', KEYS[1], 'archived', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'ab', string.format('%d', bytes))
redis.call('HINCRBY', KEYS[1], 'b', '-' .. ARGV[4])
redis.call('XTRIM', KEYS[2], 'MINID', trim)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
return 1
"""

# KEYS head, snap; ARGV seq, blob, kept, spacing. 1 saved, 0 no such session. Keeps the
# newest ``kept`` and the oldest of each ``spacing`` seqs (``_base.snapshot_seqs_dropped``).
SNAPSHOT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local seqs = redis.call('HKEYS', KEYS[2])
local kept = tonumber(ARGV[3])
local spacing = tonumber(ARGV[4])
if #seqs > kept then
  table.sort(seqs, function(a, b) return tonumber(a) > tonumber(b) end)
  local oldest = {}
  for i = 1, #seqs do oldest[math.floor(tonumber(seqs[i]) / spacing)] = seqs[i] end
  for i = kept + 1, #seqs do
    if oldest[math.floor(tonumber(seqs[i]) / spacing)] ~= seqs[i] then
      redis.call('HDEL', KEYS[2], seqs[i])
    end
  end
end
local bytes = 0
for _, seq in ipairs(redis.call('HKEYS', KEYS[2])) do
  bytes = bytes + redis.call('HSTRLEN', KEYS[2], seq)
end
redis.call('HSET', KEYS[1], 'sb', bytes)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

# KEYS head; ARGV seq, digest, entry. The session catalog's entry (field c of the head hash,
# so it goes with the session), saved only while the head is still the one it was made for.
CATALOG = """
local found = redis.call('HMGET', KEYS[1], 'seq', 'h')
if found[1] ~= ARGV[1] or found[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[1] .. ':' .. ARGV[3])
redis.call('HDEL', KEYS[1], 'cd')  -- the next append marks the session again
return 1
"""

# KEYS log, its copy; ARGV the last entry id copied ("" for none), how many to copy now, then
# pairs (entry id, new line). Copies the next entries of the log into the copy, the lines of
# the given entries swapped; returns the last id copied ("" if none was left). A redaction
# copies a long log this way, a page per call, so the server is never blocked for long; the
# REDACT script copies what is left and swaps the copy in, atomically.
REDACT_COPY = """
local swap = {}
for i = 3, #ARGV, 2 do swap[ARGV[i]] = ARGV[i + 1] end
local start = ARGV[1] == '' and '-' or '(' .. ARGV[1]
local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))
for _, e in ipairs(page) do
  local f = e[2]
  if swap[e[1]] then
    for j = 1, #f, 2 do if f[j] == 'r' then f[j + 1] = swap[e[1]] end end
  end
  redis.call('XADD', KEYS[2], e[1], unpack(f))
end
if #page == 0 then return '' end
return page[#page][1]
"""

# KEYS head, log, snap, arch, the log's copy, the archive's copy; ARGV the archive mark the
# client read, the last log entry id REDACT_COPY copied ("" for none), n, then n triples
# (seq, old line, new line), m, then m triples (chunk's first seq, old z, new z). Returns {0}
# done, {1} the mark moved (start again), {2} no such session, {3, seq} a line or chunk changed.
#
# A stream entry can't be rewritten, and XDEL only marks it deleted (its bytes stay in the
# node), so each stream that holds a replaced line is copied, replaced lines swapped, and
# renamed over the old one, which frees the old entries. Checks before the first write.
REDACT = """
local function field(entry, name)
  local f = entry[2]
  for j = 1, #f, 2 do if f[j] == name then return f[j + 1] end end
  return nil
end
local function stop(answer)
  redis.call('DEL', KEYS[5])
  return answer
end
if redis.call('EXISTS', KEYS[1]) == 0 then return stop({2}) end
local archived = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'archived') or '0') ~= archived then return stop({1}) end
local copied = ARGV[2]
local i = 4
local lines, delta = {}, 0
for _ = 1, tonumber(ARGV[3]) do
  local seq, old, new = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local e = redis.call('XRANGE', KEYS[2], '0-' .. seq, '0-' .. seq)
  if #e == 1 then
    if field(e[1], 'r') ~= old then return stop({3, seq}) end
    lines['0-' .. seq] = new
    delta = delta + #new - #old
  elseif tonumber(seq) > archived then
    return stop({3, seq})
  end
end
local chunks, adelta = {}, 0
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  local first, oldz, newz = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local e = redis.call('XRANGE', KEYS[4], '0-' .. first, '0-' .. first)
  if #e ~= 1 or field(e[1], 'z') ~= oldz then return stop({3, first}) end
  chunks['0-' .. first] = newz
  adelta = adelta + #newz - #oldz
end
-- Copy ``key`` (from after ``after``, into ``copy``, which holds what came before), the
-- field ``name`` of the entries in ``swap`` replaced, and rename the copy over it.
local function rebuild(key, copy, after, name, swap)
  if after == '' then redis.call('DEL', copy) end
  local ttl = redis.call('PTTL', key)
  local info = redis.call('XINFO', 'STREAM', key)
  local last
  for j = 1, #info, 2 do if info[j] == 'last-generated-id' then last = info[j + 1] end end
  local start = after == '' and '-' or '(' .. after
  while true do
    local page = redis.call('XRANGE', key, start, '+', 'COUNT', 10000)
    for _, e in ipairs(page) do
      local f = e[2]
      if swap[e[1]] then
        for j = 1, #f, 2 do if f[j] == name then f[j + 1] = swap[e[1]] end end
      end
      redis.call('XADD', copy, e[1], unpack(f))
    end
    if #page < 10000 then break end
    start = '(' .. page[#page][1]
  end
  redis.call('RENAME', copy, key)
  redis.call('XSETID', key, last)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
if next(lines) then rebuild(KEYS[2], KEYS[5], copied, 'r', lines) else redis.call('DEL', KEYS[5]) end
if next(chunks) then rebuild(KEYS[4], KEYS[6], '', 'z', chunks) end
redis.call('DEL', KEYS[3])
redis.call('HDEL', KEYS[1], 'c')  -- the catalog's entry named the erased senders
redis.call('HSET', KEYS[1], 'sb', 0)
redis.call('HINCRBY', KEYS[1], 'b', delta)
redis.call('HINCRBY', KEYS[1], 'ab', adelta)
return {0}
"""
