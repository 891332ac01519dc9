//! The Lua scripts, and [`script`] to send one.
//!
//! Sealing (`HLEN` check, `info`, `ZADD generations`), activation (`ZSCORE` check, `SET
//! current`) and prune's unregistering (`ZREM` unless current) are small Lua scripts, so each is
//! atomic: a reader sees the old generation or the new one, never an unsealed one, and a
//! generation being pruned cannot become current. The lock's extend and release are scripts for
//! the same reason: check the token and act in one step.

// Scripts are sent with EVAL (a few hundred bytes each): no SCRIPT LOAD state to lose when the
// connection manager reconnects or a replica is promoted.

/// KEYS: next, generations. Returns a number above every sealed generation, even if `next` was
/// lost or restored from an older backup.
pub(crate) const NEXT_GENERATION: &str = r"
local n = redis.call('INCR', KEYS[1])
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0)
if newest[1] and n <= tonumber(newest[1]) then
  n = tonumber(newest[1]) + 1
  redis.call('SET', KEYS[1], n)
end
return n
";

/// KEYS: lock. ARGV: token, ttl ms. 1 when extended, 0 when the lock is no longer ours.
pub(crate) const EXTEND_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// KEYS: lock. ARGV: token. Deletes the lock only if it is still ours.
pub(crate) const RELEASE_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// KEYS: lock, lists, info, generations. ARGV: token, expected users, info JSON, generation.
/// Returns {1, stored} when sealed, {0, stored} on a count mismatch, {0, -1} when the lock is
/// lost (then a prune may have deleted part of this generation, so it must not be sealed).
pub(crate) const SEAL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, -1}
end
local stored = redis.call('HLEN', KEYS[2])
if stored ~= tonumber(ARGV[2]) then
  return {0, stored}
end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[4])
return {1, stored}
";

/// KEYS: generations, current. ARGV: generation. 1 when switched, 0 when not sealed.
pub(crate) const ACTIVATE: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
";

/// KEYS: generations, current. ARGV: generations to drop. Unseals each one that is not current
/// (so it can no longer be activated) and returns those.
pub(crate) const UNREGISTER: &str = r"
local current = redis.call('GET', KEYS[2])
local removed = {}
for _, generation in ipairs(ARGV) do
  if generation ~= current and redis.call('ZREM', KEYS[1], generation) == 1 then
    table.insert(removed, tonumber(generation))
  end
end
return removed
";

pub(crate) fn script(source: &str, keys: &[String]) -> redis::Cmd {
    let mut command = redis::cmd("EVAL");
    command.arg(source).arg(keys.len()).arg(keys);
    command
}
