//! `redisquota`: rate limits shared by every Mixer replica, counted in Redis by a Lua script so
//! each allocation is one atomic step. `FIXED_WINDOW` counts per window of `validDuration` (so up
//! to twice the limit can pass across a window's edge, as documented); `ROLLING_WINDOW` counts
//! in buckets of `bucketDuration` and reclaims the buckets that leave the window. A repeated
//! deduplication id gets the answer it got before.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use istio_api::pb::adapter::redisquota::config::params::QuotaAlgorithm;
use istio_api::pb::adapter::redisquota::config::Params;
use redis::aio::ConnectionManager;

use super::api::{decode_params, duration, AdapterError, BuildContext, BuildError, Handler, QuotaArgs, QuotaResult};
use super::memquota::{counter_key, dimension_matches};

/// The proto the handler\'s params decode into.
const PARAMS: &str = "adapter.redisquota.config.Params";
use crate::status::{Status, INTERNAL, RESOURCE_EXHAUSTED, UNAVAILABLE};
use crate::template::Instance;

/// Fixed window. KEYS: meta. ARGV: limit, window ns, bucket ns, best effort, amount, now ns, dedup id.
/// Returns {granted, ns left in the window}.
const FIXED_WINDOW: &str = r#"
local meta = KEYS[1]
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local best_effort, amount, now, dedup = ARGV[4] == "1", tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
if dedup ~= "" then
  local seen = redis.call("HMGET", dedup .. "-" .. meta, "token", "expire")
  if seen[1] and seen[2] and now < tonumber(seen[2]) then
    return {tonumber(seen[1]), tonumber(seen[2]) - now}
  end
end
local state = redis.call("HMGET", meta, "token", "expire")
local used, ends = tonumber(state[1]), tonumber(state[2])
if not used or not ends or now >= ends then
  used, ends = 0, now + window
  redis.call("HMSET", meta, "token", 0, "expire", ends)
  redis.call("PEXPIRE", meta, math.ceil(window / 1000000))
end
local granted = amount
if used + amount > limit then
  if best_effort and limit - used > 0 then
    granted = limit - used
  else
    return {0, 0}
  end
end
redis.call("HSET", meta, "token", used + granted)
if dedup ~= "" then
  redis.call("HMSET", dedup .. "-" .. meta, "token", granted, "expire", ends)
  redis.call("PEXPIRE", dedup .. "-" .. meta, math.max(1, math.ceil((ends - now) / 1000000)))
end
return {granted, ends - now}
"#;

/// Rolling window. KEYS: meta, data (a sorted set of closed buckets scored by their start).
/// ARGV as the fixed window's. Returns {granted, window ns}.
const ROLLING_WINDOW: &str = r#"
local meta, data = KEYS[1], KEYS[2]
local limit, window, bucket = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local best_effort, amount, now, dedup = ARGV[4] == "1", tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
if dedup ~= "" then
  local seen = redis.call("HMGET", dedup .. "-" .. meta, "token", "expire")
  if seen[1] and seen[2] and now < tonumber(seen[2]) then
    return {tonumber(seen[1]), tonumber(seen[2]) - now}
  end
end
local state = redis.call("HMGET", meta, "token", "bucket.token", "bucket.timestamp")
local used, open_tokens, open_since = tonumber(state[1]), tonumber(state[2]), tonumber(state[3])
if not used then
  used, open_tokens, open_since = 0, 0, now
end
if now - open_since + 1 > bucket then
  if open_tokens > 0 then
    local sequence = redis.call("HINCRBY", meta, "key", 1)
    redis.call("ZADD", data, open_since, sequence .. "." .. open_tokens)
  end
  open_tokens, open_since = 0, now
end
local expired = redis.call("ZRANGEBYSCORE", data, 0, now - window)
for _, member in ipairs(expired) do
  local tokens = tonumber(string.match(member, "%.(%d+)$"))
  used = used - tokens
end
if #expired > 0 then
  redis.call("ZREMRANGEBYSCORE", data, 0, now - window)
end
if used < 0 then used = 0 end
local granted = amount
local available = limit - used
if available <= 0 then
  granted = 0
elseif amount > available then
  if best_effort then granted = available else granted = 0 end
end
used, open_tokens = used + granted, open_tokens + granted
redis.call("HMSET", meta, "token", used, "bucket.token", open_tokens, "bucket.timestamp", open_since)
local ttl = math.ceil(window / 1000000)
redis.call("PEXPIRE", meta, ttl)
redis.call("PEXPIRE", data, ttl)
if granted == 0 then
  return {0, 0}
end
if dedup ~= "" then
  redis.call("HMSET", dedup .. "-" .. meta, "token", granted, "expire", now + window)
  redis.call("PEXPIRE", dedup .. "-" .. meta, ttl)
end
return {granted, window}
"#;

#[derive(Debug, Clone)]
struct Override {
    dimensions: BTreeMap<String, String>,
    max_amount: i64,
    /// FNV-1a-32 of the dimensions (`key\tvalue\n`, sorted), told apart in key names.
    hash: u32,
}

#[derive(Debug, Clone)]
struct Quota {
    max_amount: i64,
    window: Duration,
    bucket: Duration,
    rolling: bool,
    overrides: Vec<Override>,
}

pub struct RedisQuota {
    quotas: HashMap<String, Quota>,
    connection: ConnectionManager,
    fixed: redis::Script,
    rolling: redis::Script,
}

impl std::fmt::Debug for RedisQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuota").field("quotas", &self.quotas.keys()).finish()
    }
}

fn fnv1a32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

fn validate(params: &Params, context: &BuildContext<'_>) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if params.quotas.is_empty() {
        errors.push(("quotas".to_string(), "quota should not be empty".to_string()));
    }
    for quota in &params.quotas {
        let window = duration(quota.valid_duration.as_ref());
        let bucket = duration(quota.bucket_duration.as_ref());
        let rolling = quota.rate_limit_algorithm == QuotaAlgorithm::RollingWindow as i32;
        let problem = if quota.name.is_empty() {
            Some(("name", "quotas.name should not be empty".to_string()))
        } else if window.is_zero() {
            Some(("valid_duration", "quotas.valid_duration should be bigger must be > 0".to_string()))
        } else if rolling && bucket.is_zero() {
            Some(("bucket_duration", "quotas.bucket_duration should be > 0 for ROLLING_WINDOW algorithm".to_string()))
        } else if rolling && window <= bucket {
            Some((
                "valid_duration",
                format!(
                    "quotas.valid_duration: {} should be longer than quotas.bucket_duration: {} for ROLLING_WINDOW algorithm",
                    istio_duration::format(window),
                    istio_duration::format(bucket)
                ),
            ))
        } else {
            quota.overrides.iter().find_map(|o| {
                if o.max_amount <= 0 {
                    Some(("max_amount", "quotas.overrides.max_amount must be > 0".to_string()))
                } else if o.dimensions.is_empty() {
                    Some(("dimensions", "quotas.overrides.dimensions is empty".to_string()))
                } else {
                    None
                }
            })
        };
        if let Some((field, message)) = problem {
            errors.push((field.to_string(), message));
        }
    }
    for instance in context.instances {
        if !params.quotas.iter().any(|quota| *quota.name == *instance.name) {
            errors.push(("quotas".to_string(), format!("did not find limit defined for quota {}", instance.name)));
        }
    }
    if params.connection_pool_size < 0 {
        errors.push((
            "connection_pool_size".to_string(),
            format!("connection_pool_size of {} is invalid, must be > 0", params.connection_pool_size),
        ));
    }
    errors
}

pub(super) async fn build(context: &BuildContext<'_>) -> Result<RedisQuota, BuildError> {
    let mut params: Params = decode_params(PARAMS, context.params)?;
    if context.params.get("redisServerUrl").is_none() && context.params.get("redis_server_url").is_none() {
        params.redis_server_url = "localhost:6379".to_string();
    }
    let mut errors = validate(&params, context);
    if params.redis_server_url.is_empty() {
        errors.push(("redis_server_url".to_string(), "redis_server_url should not be empty".to_string()));
    }
    if !errors.is_empty() {
        return Err(BuildError::Invalid(errors));
    }
    let url = if params.redis_server_url.contains("://") {
        params.redis_server_url.clone()
    } else {
        format!("redis://{}/", params.redis_server_url)
    };
    let unreachable = |error: redis::RedisError| {
        BuildError::Instantiation(format!("could not create a connection to redis server: {error}"))
    };
    let client = redis::Client::open(url.as_str()).map_err(unreachable)?;
    let mut connection = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
        .await
        .map_err(|_| {
            BuildError::Instantiation(format!("could not create a connection to redis server: {url}: timed out"))
        })?
        .map_err(unreachable)?;
    let _: String = redis::cmd("PING").query_async(&mut connection).await.map_err(unreachable)?;
    let quotas = params
        .quotas
        .iter()
        .map(|quota| {
            let overrides = quota
                .overrides
                .iter()
                .map(|o| {
                    let dimensions: BTreeMap<String, String> =
                        o.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let rendered: String = dimensions.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
                    Override { dimensions, max_amount: o.max_amount, hash: fnv1a32(&rendered) }
                })
                .collect();
            let quota_entry = Quota {
                max_amount: quota.max_amount,
                window: duration(quota.valid_duration.as_ref()),
                bucket: duration(quota.bucket_duration.as_ref()),
                rolling: quota.rate_limit_algorithm == QuotaAlgorithm::RollingWindow as i32,
                overrides,
            };
            (quota.name.clone(), quota_entry)
        })
        .collect();
    Ok(RedisQuota {
        quotas,
        connection,
        fixed: redis::Script::new(FIXED_WINDOW),
        rolling: redis::Script::new(ROLLING_WINDOW),
    })
}

fn nanos(value: Duration) -> i64 {
    i64::try_from(value.as_nanos()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Handler for RedisQuota {
    async fn quota(&self, instance: &Instance, args: &QuotaArgs) -> Result<QuotaResult, AdapterError> {
        let Some(quota) = self.quotas.get(&*instance.name) else { return Ok(QuotaResult::granted(0, Duration::ZERO)) };
        let dimensions = instance.map_field("dimensions");
        let mut key = counter_key(&instance.name, &dimensions);
        let mut limit = quota.max_amount;
        // An override applies only when the instance has every one of its dimensions.
        if let Some(matched) = quota.overrides.iter().find(|o| {
            o.dimensions
                .iter()
                .all(|(k, v)| dimensions.get(k.as_str()).is_some_and(|value| dimension_matches(Some(value), v)))
        }) {
            key = format!("{key}-{}", matched.hash);
            limit = matched.max_amount;
        }
        let now = i64::try_from(istio_attribute::Timestamp::now().0).unwrap_or(i64::MAX);
        let script = if quota.rolling { &self.rolling } else { &self.fixed };
        let mut invocation = script.prepare_invoke();
        invocation
            .key(format!("{key}.meta"))
            .key(format!("{key}.data"))
            .arg(limit)
            .arg(nanos(quota.window))
            .arg(nanos(quota.bucket))
            .arg(if args.best_effort { "1" } else { "0" })
            .arg(args.amount)
            .arg(now)
            .arg(&args.deduplication_id);
        let mut connection = self.connection.clone();
        let reply: Result<Vec<i64>, redis::RedisError> = invocation.invoke_async(&mut connection).await;
        let (granted, expiry) = match reply.as_deref() {
            Ok([granted, expiry]) => (*granted, *expiry),
            Ok(_) => {
                return Ok(QuotaResult {
                    status: Status::new(INTERNAL, "redisquota: Internal Error"),
                    amount: 0,
                    valid_duration: Duration::ZERO,
                })
            }
            Err(error) => {
                tracing::warn!(%error, "redisquota script failed");
                return Ok(QuotaResult {
                    status: Status::new(UNAVAILABLE, "redisquota: Service Unavailable"),
                    amount: 0,
                    valid_duration: Duration::ZERO,
                });
            }
        };
        let valid_duration = Duration::from_nanos(u64::try_from(expiry).unwrap_or(0));
        if granted <= 0 {
            return Ok(QuotaResult {
                status: Status::new(RESOURCE_EXHAUSTED, "redisquota: Resource exhausted"),
                amount: granted.max(0),
                valid_duration,
            });
        }
        Ok(QuotaResult { status: Status::ok(), amount: granted, valid_duration })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn bad_params_are_refused_with_the_field() {
        let environment = crate::env::Environment::default();
        for (params, expected) in [
            (json!({}), "quotas: quota should not be empty"),
            (json!({"quotas": [{"name": "", "maxAmount": 1, "validDuration": "1s"}]}), "name: quotas.name should not be empty"),
            (json!({"quotas": [{"name": "q", "maxAmount": 1}]}), "valid_duration: quotas.valid_duration should be bigger must be > 0"),
            (
                json!({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s", "rateLimitAlgorithm": "ROLLING_WINDOW"}]}),
                "bucket_duration: quotas.bucket_duration should be > 0 for ROLLING_WINDOW algorithm",
            ),
            (
                json!({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s", "bucketDuration": "1s", "rateLimitAlgorithm": "ROLLING_WINDOW"}]}),
                "valid_duration: quotas.valid_duration: 1s should be longer than quotas.bucket_duration: 1s for ROLLING_WINDOW algorithm",
            ),
            (
                json!({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s", "overrides": [{"maxAmount": 0, "dimensions": {"a": "b"}}]}]}),
                "max_amount: quotas.overrides.max_amount must be > 0",
            ),
            (
                json!({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s", "overrides": [{"maxAmount": 1}]}]}),
                "dimensions: quotas.overrides.dimensions is empty",
            ),
            (json!({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s"}], "redisServerUrl": ""}), "redis_server_url: redis_server_url should not be empty"),
        ] {
            let context = BuildContext { handler: "redishandler.istio-system", params: &params, instances: &[], environment: &environment };
            let error = build(&context).await.expect_err("invalid").to_string();
            assert!(error.contains(expected), "{params}: {error}");
        }
    }

    #[test]
    fn override_hashes_are_fnv_1a_32() {
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
    }
}
