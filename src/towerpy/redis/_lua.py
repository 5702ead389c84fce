"""The Lua scripts: every operation on a shared limit is one of these, run atomically by Redis.

Conventions, shared by every script:

- ``ARGV[1]`` is the time in µs, or ``''`` for the server's (``TIME``). Only tests pass one, to
  drive a script along a timeline of their choosing.
- The limit's constants travel as one space-separated string (a bucket: ``"T B tl recent done
  prefix"``; a count: ``"limit lease tl prefix"``), made once per limiter: every argument
  costs the client an encoding and the server a parse.
- Numbers that must survive exactly (times, token levels) are written and returned as
  ``%.17g`` strings: Lua's ``tostring`` keeps 14 digits, and a number in a reply is truncated
  to an integer.
- A waiting request is a *ticket*: a member ``owner|n`` (``owner|n|cost`` for a bucket) of a
  queue ZSET scored by arrival order, with a lease in a second ZSET. ``owner`` names the
  limiter object that waits on it; the scripts publish ``"<µs to wait> <ticket>"`` on
  ``<prefix><owner>`` when a ticket may go ahead, so only that process is woken.
- Lapsed tickets (their process stopped renewing them) are purged, a bounded number per call.
- Every key gets a TTL on every write, long enough for what it holds: an idle limit leaves
  nothing behind, and a missing key reads as "full".
- The common case (nobody waits, capacity is there) is straight-line code at the top of an
  acquire script, before any function is defined: it is what every request pays.
"""

from __future__ import annotations

__all__ = [
    "BUCKET_ACQUIRE",
    "BUCKET_CANCEL",
    "BUCKET_RENEW",
    "BUCKET_SETTLE",
    "PERMIT_ACQUIRE",
    "PERMIT_CANCEL",
    "PERMIT_RELEASE",
    "PERMIT_RENEW",
]

_CLOCK = """
if redis.replicate_commands then redis.replicate_commands() end
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

_COMMON = """
local function f(x) return string.format('%.17g', x) end
local function ms(us) return math.ceil(us / 1000) + 1000 end
local function publish(prefix, ticket, wait)
  redis.call('PUBLISH', prefix .. string.match(ticket, '^[^|]*'), f(wait) .. ' ' .. ticket)
end
local function purge_tickets(queue, leases)
  local lapsed = redis.call('ZRANGEBYSCORE', leases, '-inf', f(now), 'LIMIT', 0, 64)
  if #lapsed > 0 then
    redis.call('ZREM', queue, unpack(lapsed))
    redis.call('ZREM', leases, unpack(lapsed))
  end
  return #lapsed
end
local function first(queue) return redis.call('ZRANGE', queue, 0, 0)[1] end
"""

# Token bucket state: the GCRA "theoretical arrival time" `tat` (µs), the instant the bucket is
# full again; absent means long ago (full). With T µs per token and burst B, the level is
# B - max(0, tat - now) / T (negative while in debt), and c tokens are there after
# max(0, tat + (c - B) * T - now) µs. Taking c tokens sets tat = max(tat, now) + c * T.
_BUCKET_STATE = """
local state, queue, leases = KEYS[1], KEYS[2], KEYS[3]
local tat = tonumber(redis.call('HGET', state, 'tat') or '0')
"""

_BUCKET_CONFIG = """
local T, B, tl, recent_window, done_window, prefix =
  string.match(ARGV[CONFIG], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
T, B, tl = tonumber(T), tonumber(B), tonumber(tl)
recent_window, done_window = tonumber(recent_window), tonumber(done_window)
"""

_BUCKET = (
    _COMMON
    + """
local function cost_of(ticket) return tonumber(string.match(ticket, '[^|]*$')) end
local function need(c)
  local n = tat + (c - B) * T - now
  if n > 0 then return n end
  return 0
end
local function level()
  local behind = tat - now
  if behind < 0 then behind = 0 end
  return B - behind / T
end
local function take(c)
  if tat < now then tat = now end
  tat = tat + c * T
  redis.call('HSET', state, 'tat', f(tat))
end
local function expire()
  local keep = 0
  if redis.call('ZCARD', queue) > 0 then
    keep = tl
    redis.call('PEXPIRE', queue, ms(tl))
    redis.call('PEXPIRE', leases, ms(tl))
  end
  local full = tat - now
  if full < keep then full = keep end
  redis.call('PEXPIRE', state, ms(full))
end
local function serve_heads(before, except, force)
  -- Admits, in order and on their processes' behalf, the first waiters whose tokens are there
  -- (a queue would otherwise move one admission per message and round trip), telling each
  -- "A <seq> <time> <level> <ticket>"; then tells the next head, if it changed, how long it
  -- waits. A waiter that left meanwhile gets its tokens back through its cancel.
  local served = false
  for _ = 1, 32 do
    local head = first(queue)
    if not head then break end
    local c = cost_of(head)
    if head == except or need(c) > 0 then
      if head ~= except and (force or served or head ~= before) then
        publish(prefix, head, need(c))
      end
      break
    end
    local seq = redis.call('ZSCORE', queue, head)
    redis.call('ZREM', queue, head)
    redis.call('ZREM', leases, head)
    take(c)
    redis.call('ZADD', KEYS[4], f(now), head)
    redis.call('PEXPIRE', KEYS[4], ms(recent_window))
    redis.call('PUBLISH', prefix .. string.match(head, '^[^|]*'),
      'A ' .. seq .. ' ' .. f(now) .. ' ' .. f(level()) .. ' ' .. head)
    served = true
  end
end
"""
)

BUCKET_ACQUIRE = (
    _CLOCK
    + _BUCKET_STATE
    + _BUCKET_CONFIG.replace("CONFIG", "4")
    + """
-- KEYS: state, queue, leases, recent (admitted tickets, so that a late cancel can refund them)
-- ARGV: now, ticket, mode ('n' new, 'p' poll, 't' try), config
-- Reply: {status, seq, now, wait, level, queued}: status 'A' admitted, 'Q' queued, 'R' refused
--        (a try that would wait); wait: µs until its tokens are there, for the head of the
--        queue only ('' otherwise); seq: its place in the order of arrival.
local recent = KEYS[4]
local ticket, mode = ARGV[2], ARGV[3]
local cost = tonumber(string.match(ticket, '[^|]*$'))
local seq
if mode ~= 'p' and redis.call('ZCARD', queue) == 0 then
  -- nobody waits: admitted if the tokens are there (the path of every request in a healthy
  -- system, so it defines nothing and calls Redis as little as it can)
  seq = redis.call('HINCRBY', state, 'seq', 1)
  if tat + (cost - B) * T <= now then
    if tat < now then tat = now end
    tat = tat + cost * T
    local stamp = string.format('%.17g', now)
    redis.call('HSET', state, 'tat', string.format('%.17g', tat))
    redis.call('ZADD', recent, stamp, ticket)
    if seq % 64 == 0 then  -- forgetting admissions past the window (or too many), now and then
      redis.call('ZREMRANGEBYSCORE', recent, '-inf', string.format('%.17g', now - recent_window))
      redis.call('ZREMRANGEBYRANK', recent, 0, -16385)
    end
    redis.call('PEXPIRE', recent, math.ceil(recent_window / 1000) + 1000)
    redis.call('PEXPIRE', state, math.ceil((tat - now) / 1000) + 1000)
    return {'A', seq, stamp, '', string.format('%.17g', B - (tat - now) / T), 0}
  end
end
"""
    + _BUCKET
    + """
local before = first(queue)
purge_tickets(queue, leases)
local reply
local function admit()
  take(cost)
  redis.call('ZADD', recent, f(now), ticket)
  redis.call('ZREMRANGEBYSCORE', recent, '-inf', f(now - recent_window))
  redis.call('PEXPIRE', recent, ms(recent_window))
  reply = {'A', seq, f(now), '', f(level()), redis.call('ZCARD', queue)}
end
if not seq then
  seq = redis.call('ZSCORE', queue, ticket)
  local admitted = mode == 'p' and not seq and redis.call('ZSCORE', recent, ticket)
  if admitted then
    -- admitted already (on its behalf, or by a call whose reply was lost): say so again, with
    -- the time it was (its place in the order of arrival is no longer known)
    return {'A', '', admitted, '', f(level()), redis.call('ZCARD', queue)}
  end
  if seq then
    if first(queue) == ticket and need(cost) <= 0 then
      redis.call('ZREM', queue, ticket)
      redis.call('ZREM', leases, ticket)
      admit()
    else
      redis.call('ZADD', leases, 'XX', f(now + tl), ticket)
    end
  else
    -- a new arrival (or a ticket that lapsed while its process was paused: it queues anew)
    seq = redis.call('HINCRBY', state, 'seq', 1)
  end
end
if not reply and not redis.call('ZSCORE', queue, ticket) then
  if redis.call('ZCARD', queue) == 0 and need(cost) <= 0 then
    admit()
  elseif mode == 't' then
    reply = {'R', seq, f(now), '', f(level()), redis.call('ZCARD', queue)}
  else
    redis.call('ZADD', queue, seq, ticket)
    redis.call('ZADD', leases, f(now + tl), ticket)
  end
end
serve_heads(before, ticket, false)
if not reply and first(queue) == ticket and need(cost) <= 0 then
  -- the heads before it were served: its own tokens are there too
  redis.call('ZREM', queue, ticket)
  redis.call('ZREM', leases, ticket)
  admit()
  serve_heads(ticket, ticket, false)
end
if not reply then
  local wait = ''
  if first(queue) == ticket then wait = f(need(cost)) end
  reply = {'Q', seq, f(now), wait, f(level()), redis.call('ZCARD', queue)}
end
expire()
return reply
"""
)

BUCKET_SETTLE = (
    _CLOCK
    + _BUCKET_STATE
    + _BUCKET_CONFIG.replace("CONFIG", "3")
    + _BUCKET
    + """
-- KEYS: state, queue, leases, recent, done (batch ids already applied)
-- ARGV: now, batch id, config, delta...
-- Applies each delta in order (> 0 a charge, which may put the bucket in debt; < 0 a refund,
-- never above burst), once per batch id. Reply: {'S' or 'D' (already applied), level, queued}.
local done, id = KEYS[5], ARGV[2]
if redis.call('ZSCORE', done, id) then
  return {'D', f(level()), redis.call('ZCARD', queue)}
end
local before = first(queue)
purge_tickets(queue, leases)
local refunded = false
for i = 4, #ARGV do
  local delta = tonumber(ARGV[i])
  if tat < now then tat = now end
  tat = tat + delta * T
  if tat < now then tat = now end
  if delta < 0 then refunded = true end
end
redis.call('HSET', state, 'tat', f(tat))
redis.call('ZADD', done, f(now), id)
redis.call('ZREMRANGEBYSCORE', done, '-inf', f(now - done_window))
redis.call('ZREMRANGEBYRANK', done, 0, -4097)  -- bounded, whatever the rate of settlements
redis.call('PEXPIRE', done, ms(done_window))
serve_heads(before, nil, refunded)
expire()
return {'S', f(level()), redis.call('ZCARD', queue)}
"""
)

BUCKET_CANCEL = (
    _CLOCK
    + _BUCKET_STATE
    + _BUCKET_CONFIG.replace("CONFIG", "2")
    + _BUCKET
    + """
-- KEYS: state, queue, leases, recent
-- ARGV: now, config, ticket...
-- Callers that left: each ticket leaves the queue ('C'); if it had been admitted by a call
-- whose reply its caller never read, its tokens come back ('F'); else nothing was held ('N').
-- Reply: {level, queued, status...}
local recent = KEYS[4]
local before = first(queue)
purge_tickets(queue, leases)
local statuses, refunded = {}, false
for i = 3, #ARGV do
  local ticket = ARGV[i]
  if redis.call('ZREM', queue, ticket) == 1 then
    redis.call('ZREM', leases, ticket)
    statuses[#statuses + 1] = 'C'
  elseif redis.call('ZREM', recent, ticket) == 1 then
    if tat < now then tat = now end
    tat = tat - cost_of(ticket) * T
    if tat < now then tat = now end
    redis.call('HSET', state, 'tat', f(tat))
    statuses[#statuses + 1] = 'F'
    refunded = true
  else
    statuses[#statuses + 1] = 'N'
  end
end
serve_heads(before, nil, refunded)
expire()
local reply = {f(level()), redis.call('ZCARD', queue)}
for _, s in ipairs(statuses) do reply[#reply + 1] = s end
return reply
"""
)

BUCKET_RENEW = (
    _CLOCK
    + _BUCKET_STATE
    + _BUCKET_CONFIG.replace("CONFIG", "2")
    + _BUCKET
    + """
-- KEYS: state, queue, leases, recent
-- ARGV: now, config, ticket...
-- Renews the leases of one process's waiting tickets, and serves the heads that may go.
-- Reply: {level, queued, status...}, one status per ticket: 'L' not queued any more (lapsed:
-- its caller must queue anew; or admitted: its caller learns so when it asks), 'W' waiting
-- behind others, or the head's wait in µs.
local before = first(queue)
purge_tickets(queue, leases)
serve_heads(before, nil, false)
local head = first(queue)
local reply = {f(level()), redis.call('ZCARD', queue)}
for i = 3, #ARGV do
  local ticket = ARGV[i]
  if not redis.call('ZSCORE', leases, ticket) then
    reply[#reply + 1] = 'L'
  else
    redis.call('ZADD', leases, 'XX', f(now + tl), ticket)
    if ticket == head then
      reply[#reply + 1] = f(need(cost_of(ticket)))
    else
      reply[#reply + 1] = 'W'
    end
  end
end
expire()
return reply
"""
)

# Concurrency state: a holders ZSET (permit -> lease deadline, µs), the ticket queue, and a
# hash with the arrival counter. Permits whose lease passed are purged on every call.
_PERMIT_CONFIG = """
local holders, queue, leases, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limit, lease, tl, prefix = string.match(ARGV[CONFIG], '^(%S+) (%S+) (%S+) (%S+)$')
limit, lease, tl = tonumber(limit), tonumber(lease), tonumber(tl)
"""

_PERMITS = (
    _COMMON
    + """
local function purge()
  return redis.call('ZREMRANGEBYSCORE', holders, '-inf', f(now)) + purge_tickets(queue, leases)
end
local function wake(except)
  -- every ticket within the free permits may go ahead: tell their processes
  local free = limit - redis.call('ZCARD', holders)
  if free > 0 then
    for _, ticket in ipairs(redis.call('ZRANGE', queue, 0, free - 1)) do
      if ticket ~= except then publish(prefix, ticket, 0) end
    end
  end
end
local function expire()
  redis.call('PEXPIRE', holders, ms(lease))
  redis.call('PEXPIRE', queue, ms(tl))
  redis.call('PEXPIRE', leases, ms(tl))
  local longest = lease
  if tl > longest then longest = tl end
  redis.call('PEXPIRE', state, ms(longest))
end
local function counts() return {redis.call('ZCARD', holders), redis.call('ZCARD', queue)} end
"""
)

PERMIT_ACQUIRE = (
    _CLOCK
    + _PERMIT_CONFIG.replace("CONFIG", "4")
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, permit (its ticket while it waits), mode ('n' new, 'p' poll, 't' try), config
-- Reply: {'A' granted | 'Q' queued | 'R' refused, held, queued}
local permit, mode = ARGV[2], ARGV[3]
local lapsed = redis.call('ZREMRANGEBYSCORE', holders, '-inf', string.format('%.17g', now))
if mode ~= 'p' and lapsed == 0 and redis.call('ZCARD', queue) == 0 then
  -- nobody waits: granted if a permit is free (every request's path in a healthy system)
  local held = redis.call('ZCARD', holders)
  if held < limit then
    redis.call('ZADD', holders, string.format('%.17g', now + lease), permit)
    redis.call('PEXPIRE', holders, math.ceil(lease / 1000) + 1000)
    return {'A', held + 1, 0}
  end
end
"""
    + _PERMITS
    + """
local purged = lapsed + purge_tickets(queue, leases)
local status
if redis.call('ZSCORE', holders, permit) then
  status = 'A'  -- granted by an earlier call whose reply was lost
else
  local free = limit - redis.call('ZCARD', holders)
  local rank = redis.call('ZRANK', queue, permit)
  if rank then
    if rank < free then
      redis.call('ZREM', queue, permit)
      redis.call('ZREM', leases, permit)
      redis.call('ZADD', holders, f(now + lease), permit)
      status = 'A'
    else
      redis.call('ZADD', leases, 'XX', f(now + tl), permit)
      status = 'Q'
    end
  elseif redis.call('ZCARD', queue) < free then
    -- a permit for everyone queued and one more: FIFO holds if this one goes ahead now
    redis.call('ZADD', holders, f(now + lease), permit)
    status = 'A'
  elseif mode == 't' then
    status = 'R'
  else
    redis.call('ZADD', queue, redis.call('HINCRBY', state, 'seq', 1), permit)
    redis.call('ZADD', leases, f(now + tl), permit)
    status = 'Q'
  end
end
if purged > 0 then wake(permit) end
expire()
local c = counts()
return {status, c[1], c[2]}
"""
)

PERMIT_RELEASE = (
    _CLOCK
    + _PERMIT_CONFIG.replace("CONFIG", "2")
    + _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, config, permit...
-- Reply: {held, queued}
purge()
for i = 3, #ARGV do redis.call('ZREM', holders, ARGV[i]) end
wake(nil)
expire()
return counts()
"""
)

PERMIT_CANCEL = (
    _CLOCK
    + _PERMIT_CONFIG.replace("CONFIG", "2")
    + _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, config, permit...
-- Callers that left: each ticket leaves the queue ('C'), or the permit that a call whose reply
-- its caller never read had granted is released ('F'); else nothing was held ('N').
-- Reply: {held, queued, status...}
purge()
local statuses = {}
for i = 3, #ARGV do
  local permit = ARGV[i]
  if redis.call('ZREM', queue, permit) == 1 then
    redis.call('ZREM', leases, permit)
    statuses[#statuses + 1] = 'C'
  elseif redis.call('ZREM', holders, permit) == 1 then
    statuses[#statuses + 1] = 'F'
  else
    statuses[#statuses + 1] = 'N'
  end
end
wake(nil)
expire()
local reply = counts()
for _, s in ipairs(statuses) do reply[#reply + 1] = s end
return reply
"""
)

PERMIT_RENEW = (
    _CLOCK
    + _PERMIT_CONFIG.replace("CONFIG", "2")
    + _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, config, number of permits, permit..., ticket...
-- Renews one process's permits and tickets. A permit whose lease had lapsed (a long pause, a
-- server restart) is asserted again: it is still in use, so the count must show it.
-- Reply: {reasserted, held, queued, status...}, one status per ticket: 'L' lapsed, 'W'
-- waiting, 'G' may go ahead now.
local n = tonumber(ARGV[3])
local purged = purge()
local reasserted = 0
for i = 4, 3 + n do
  reasserted = reasserted + redis.call('ZADD', holders, f(now + lease), ARGV[i])
end
local free = limit - redis.call('ZCARD', holders)
local statuses = {}
for i = 4 + n, #ARGV do
  local ticket = ARGV[i]
  local rank = redis.call('ZRANK', queue, ticket)
  if not rank then
    statuses[#statuses + 1] = 'L'
  else
    redis.call('ZADD', leases, 'XX', f(now + tl), ticket)
    if rank < free then statuses[#statuses + 1] = 'G' else statuses[#statuses + 1] = 'W' end
  end
end
if purged > 0 then wake(nil) end
expire()
local c = counts()
local reply = {reasserted, c[1], c[2]}
for _, s in ipairs(statuses) do reply[#reply + 1] = s end
return reply
"""
)
