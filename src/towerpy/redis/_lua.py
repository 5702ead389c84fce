"""The Lua scripts: every operation on a shared limit is one of these, run atomically by Redis.

Conventions, shared by every script:

- Time is the server's (``TIME``, in microseconds) unless ``ARGV[1]`` gives one; only tests
  pass it, to drive a script along a timeline of their choosing.
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

_COMMON = """
if redis.replicate_commands then redis.replicate_commands() end
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function f(x) return string.format('%.17g', x) end
local function ms(us) return math.ceil(us / 1000) + 1000 end
local function publish(prefix, ticket, wait)
  redis.call('PUBLISH', prefix .. string.match(ticket, '^[^|]*'), f(wait) .. ' ' .. ticket)
end
local function purge_tickets(queue, leases, now)
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
_BUCKET = (
    _COMMON
    + """
local state, queue, leases = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local tat = tonumber(redis.call('HGET', state, 'tat') or '0')
local function cost_of(ticket) return tonumber(string.match(ticket, '[^|]*$')) end
local function need(c, T, B)
  local n = tat + (c - B) * T - now
  if n > 0 then return n end
  return 0
end
local function level(T, B)
  local behind = tat - now
  if behind < 0 then behind = 0 end
  return B - behind / T
end
local function take(c, T)
  if tat < now then tat = now end
  tat = tat + c * T
  redis.call('HSET', state, 'tat', f(tat))
end
local function expire(tl)
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
local function wake_new_head(before, except, prefix, T, B, force)
  local head = first(queue)
  if head and head ~= except and (force or head ~= before) then
    publish(prefix, head, need(cost_of(head), T, B))
  end
end
"""
)

BUCKET_ACQUIRE = (
    _BUCKET
    + """
-- KEYS: state, queue, leases, recent (admitted tickets, so a late cancel can refund them)
-- ARGV: now, ticket, cost, T, B, mode ('n' new, 'p' poll, 't' try), ticket lease, recent
--       window, channel prefix
-- Reply: {status, seq, now, wait, level, queued}: status 'A' admitted, 'Q' queued, 'R' refused
--        (a try that would wait); wait: µs until its tokens are there, for the head of the
--        queue only ('' otherwise); seq: its place in the order of arrival.
local recent = KEYS[4]
local ticket, cost, mode = ARGV[2], tonumber(ARGV[3]), ARGV[6]
local T, B = tonumber(ARGV[4]), tonumber(ARGV[5])
local tl, window, prefix = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local before = first(queue)
purge_tickets(queue, leases, now)
local reply
local function admit(seq)
  take(cost, T)
  redis.call('ZADD', recent, f(now), ticket)
  redis.call('ZREMRANGEBYSCORE', recent, '-inf', f(now - window))
  redis.call('PEXPIRE', recent, ms(window))
  reply = {'A', seq, f(now), '', f(level(T, B)), redis.call('ZCARD', queue)}
end
local seq = redis.call('ZSCORE', queue, ticket)
if mode == 'p' and not seq and redis.call('ZSCORE', recent, ticket) then
  -- admitted by an earlier call whose reply was lost: say so again
  return {'A', '', f(now), '', f(level(T, B)), redis.call('ZCARD', queue)}
end
if seq then
  if first(queue) == ticket and need(cost, T, B) <= 0 then
    redis.call('ZREM', queue, ticket)
    redis.call('ZREM', leases, ticket)
    admit(seq)
  else
    redis.call('ZADD', leases, 'XX', f(now + tl), ticket)
  end
else
  -- a new arrival (or a ticket that lapsed while its process was paused: it queues anew)
  seq = tostring(redis.call('HINCRBY', state, 'seq', 1))
  if redis.call('ZCARD', queue) == 0 and need(cost, T, B) <= 0 then
    admit(seq)
  elseif mode == 't' then
    reply = {'R', seq, f(now), '', f(level(T, B)), redis.call('ZCARD', queue)}
  else
    redis.call('ZADD', queue, seq, ticket)
    redis.call('ZADD', leases, f(now + tl), ticket)
  end
end
if not reply then
  local wait = ''
  if first(queue) == ticket then wait = f(need(cost, T, B)) end
  reply = {'Q', seq, f(now), wait, f(level(T, B)), redis.call('ZCARD', queue)}
end
wake_new_head(before, ticket, prefix, T, B, false)
expire(tl)
return reply
"""
)

BUCKET_SETTLE = (
    _BUCKET
    + """
-- KEYS: state, queue, leases, done (batch ids already applied)
-- ARGV: now, batch id, T, B, ticket lease, done window, channel prefix, delta...
-- Applies each delta in order (> 0 a charge, which may put the bucket in debt; < 0 a refund,
-- never above burst), once per batch id. Reply: {'S' or 'D' (already applied), level, queued}.
local done = KEYS[4]
local id, T, B = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local tl, window, prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
if redis.call('ZSCORE', done, id) then
  return {'D', f(level(T, B)), redis.call('ZCARD', queue)}
end
local before = first(queue)
purge_tickets(queue, leases, now)
local refunded = false
for i = 8, #ARGV do
  local delta = tonumber(ARGV[i])
  if tat < now then tat = now end
  tat = tat + delta * T
  if tat < now then tat = now end
  if delta < 0 then refunded = true end
end
redis.call('HSET', state, 'tat', f(tat))
redis.call('ZADD', done, f(now), id)
redis.call('ZREMRANGEBYSCORE', done, '-inf', f(now - window))
redis.call('PEXPIRE', done, ms(window))
wake_new_head(before, nil, prefix, T, B, refunded)
expire(tl)
return {'S', f(level(T, B)), redis.call('ZCARD', queue)}
"""
)

BUCKET_CANCEL = (
    _BUCKET
    + """
-- KEYS: state, queue, leases, recent
-- ARGV: now, T, B, ticket lease, channel prefix, ticket...
-- Callers that left: each ticket leaves the queue ('C'); if it had been admitted by a call
-- whose reply its caller never read, its tokens come back ('F'); else nothing was held ('N').
-- Reply: {level, queued, status...}
local recent = KEYS[4]
local T, B, tl, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local before = first(queue)
purge_tickets(queue, leases, now)
local statuses, refunded = {}, false
for i = 6, #ARGV do
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
wake_new_head(before, nil, prefix, T, B, refunded)
expire(tl)
local reply = {f(level(T, B)), redis.call('ZCARD', queue)}
for _, s in ipairs(statuses) do reply[#reply + 1] = s end
return reply
"""
)

BUCKET_RENEW = (
    _BUCKET
    + """
-- KEYS: state, queue, leases
-- ARGV: now, T, B, ticket lease, channel prefix, ticket...
-- Renews the leases of one process's waiting tickets. Reply: {level, queued, status...}, one
-- status per ticket: 'L' lapsed (its caller must queue anew), 'W' waiting behind others, or
-- the head's wait in µs.
local T, B, tl, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local before = first(queue)
purge_tickets(queue, leases, now)
local head = first(queue)
local reply = {f(level(T, B)), redis.call('ZCARD', queue)}
for i = 6, #ARGV do
  local ticket = ARGV[i]
  if not redis.call('ZSCORE', leases, ticket) then
    reply[#reply + 1] = 'L'
  else
    redis.call('ZADD', leases, 'XX', f(now + tl), ticket)
    if ticket == head then
      reply[#reply + 1] = f(need(cost_of(ticket), T, B))
    else
      reply[#reply + 1] = 'W'
    end
  end
end
wake_new_head(before, nil, prefix, T, B, false)
expire(tl)
return reply
"""
)

# Concurrency state: a holders ZSET (permit -> lease deadline, µs), the ticket queue, and a
# hash with the arrival counter. Permits whose lease passed are purged on every call.
_PERMITS = (
    _COMMON
    + """
local holders, queue, leases, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = clock(ARGV[1])
local function purge()
  return redis.call('ZREMRANGEBYSCORE', holders, '-inf', f(now)) + purge_tickets(queue, leases, now)
end
local function wake(limit, except, prefix)
  -- every ticket within the free permits may go ahead: tell their processes
  local free = limit - redis.call('ZCARD', holders)
  if free > 0 then
    for _, ticket in ipairs(redis.call('ZRANGE', queue, 0, free - 1)) do
      if ticket ~= except then publish(prefix, ticket, 0) end
    end
  end
end
local function expire(lease, tl)
  redis.call('PEXPIRE', holders, ms(lease))
  redis.call('PEXPIRE', queue, ms(tl))
  redis.call('PEXPIRE', leases, ms(tl))
  if tl > lease then lease = tl end
  redis.call('PEXPIRE', state, ms(lease))
end
local function counts() return {redis.call('ZCARD', holders), redis.call('ZCARD', queue)} end
"""
)

PERMIT_ACQUIRE = (
    _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, permit (its ticket while it waits), limit, lease, ticket lease, mode ('n' new,
--       'p' poll, 't' try), channel prefix
-- Reply: {'A' granted | 'Q' queued | 'R' refused, held, queued}
local permit, limit, mode, prefix = ARGV[2], tonumber(ARGV[3]), ARGV[6], ARGV[7]
local lease, tl = tonumber(ARGV[4]), tonumber(ARGV[5])
local purged = purge()
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
if purged > 0 then wake(limit, permit, prefix) end
expire(lease, tl)
local c = counts()
return {status, c[1], c[2]}
"""
)

PERMIT_RELEASE = (
    _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, limit, lease, ticket lease, channel prefix, permit...
-- Reply: {held, queued}
local limit, lease, tl, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
purge()
for i = 6, #ARGV do redis.call('ZREM', holders, ARGV[i]) end
wake(limit, nil, prefix)
expire(lease, tl)
return counts()
"""
)

PERMIT_CANCEL = (
    _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, limit, lease, ticket lease, channel prefix, permit...
-- Callers that left: each ticket leaves the queue ('C'), or the permit that a call whose reply
-- its caller never read had granted is released ('F'); else nothing was held ('N').
-- Reply: {held, queued, status...}
local limit, lease, tl, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
purge()
local statuses = {}
for i = 6, #ARGV do
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
wake(limit, nil, prefix)
expire(lease, tl)
local reply = counts()
for _, s in ipairs(statuses) do reply[#reply + 1] = s end
return reply
"""
)

PERMIT_RENEW = (
    _PERMITS
    + """
-- KEYS: holders, queue, leases, state
-- ARGV: now, limit, lease, ticket lease, channel prefix, number of permits, permit...,
--       ticket...
-- Renews one process's permits and tickets. A permit whose lease had lapsed (a long pause, a
-- server restart) is asserted again: it is still in use, so the count must show it.
-- Reply: {reasserted, held, queued, status...}, one status per ticket: 'L' lapsed, 'W'
-- waiting, 'G' may go ahead now.
local limit, lease, tl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix, n = ARGV[5], tonumber(ARGV[6])
local purged = purge()
local reasserted = 0
for i = 7, 6 + n do
  reasserted = reasserted + redis.call('ZADD', holders, f(now + lease), ARGV[i])
end
local free = limit - redis.call('ZCARD', holders)
local statuses = {}
for i = 7 + n, #ARGV do
  local ticket = ARGV[i]
  local rank = redis.call('ZRANK', queue, ticket)
  if not rank then
    statuses[#statuses + 1] = 'L'
  else
    redis.call('ZADD', leases, 'XX', f(now + tl), ticket)
    if rank < free then statuses[#statuses + 1] = 'G' else statuses[#statuses + 1] = 'W' end
  end
end
if purged > 0 then wake(limit, nil, prefix) end
expire(lease, tl)
local c = counts()
local reply = {reasserted, c[1], c[2]}
for _, s in ipairs(statuses) do reply[#reply + 1] = s end
return reply
"""
)
