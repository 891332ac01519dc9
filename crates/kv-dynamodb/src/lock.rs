//! The publisher lock: one lease-style item (`pk = "lock"`), taken with a conditional PutItem
//! when it is missing or expired, renewed by a live writer and deleted on release, so a dead
//! publisher blocks the store for at most [`LOCK_LEASE`].

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::{error::DisplayErrorContext, types::AttributeValue};

use newsrec_kv::KvError;

use crate::{
    item::{PK, key_item, number},
    keys::LOCK_KEY,
    retry::random_unit,
    table::Table,
    uri::URI_SCHEME,
};

/// How long a publisher's lock lasts without renewal; a dead publisher blocks at most this long.
const LOCK_LEASE: Duration = Duration::from_secs(10 * 60);
/// A writer renews its lock when the last renewal is older than this.
pub(crate) const LOCK_RENEW_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Lease {
    owner: String,
    pub(crate) renewed_at: Instant,
}

impl Table {
    /// Takes the publisher lock: a conditional PutItem that succeeds when the lock item is
    /// missing or its lease has expired.
    pub(crate) async fn acquire_lock(&self) -> Result<Lease, KvError> {
        let owner = lock_owner();
        let now = newsrec_kv::now_ms();
        let mut item = key_item(LOCK_KEY.into());
        item.insert("owner".into(), AttributeValue::S(owner.clone()));
        item.insert(
            "expires_at_ms".into(),
            number(now.saturating_add(lease_ms())),
        );
        let result = self
            .client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires", "expires_at_ms")
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease {
                owner,
                renewed_at: Instant::now(),
            }),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Err(self.locked_error())
            }
            Err(error) => Err(self.sdk_error("taking the publish lock", error)),
        }
    }

    /// Extends the lease; fails with `Locked` when the lock now belongs to someone else.
    pub(crate) async fn renew_lock(&self, lease: &mut Lease) -> Result<(), KvError> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(LOCK_KEY.into())))
            .update_expression("SET #expires = :expires")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#expires", "expires_at_ms")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(
                ":expires",
                number(newsrec_kv::now_ms().saturating_add(lease_ms())),
            )
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        match result {
            Ok(_) => {
                lease.renewed_at = Instant::now();
                Ok(())
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Err(self.locked_error())
            }
            Err(error) => Err(self.sdk_error("renewing the publish lock", error)),
        }
    }

    /// Deletes the lock item if it is still ours; failures only delay the next publish until the
    /// lease expires, so they are logged rather than returned.
    pub(crate) async fn release_lock(&self, lease: &Lease) {
        let result = self
            .client
            .delete_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(LOCK_KEY.into())))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        if let Err(error) = result {
            let lost = error
                .as_service_error()
                .is_some_and(|service| service.is_conditional_check_failed_exception());
            tracing::warn!(
                table = %self.name,
                lost,
                error = %DisplayErrorContext(&error),
                "could not release the publish lock; it expires by itself"
            );
        }
    }

    pub(crate) fn locked_error(&self) -> KvError {
        KvError::Locked {
            path: format!("{URI_SCHEME}{} (item pk={LOCK_KEY:?})", self.name),
        }
    }
}

/// A lock owner token unique to this acquisition (process, time, per-process counter).
fn lock_owner() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static ACQUISITIONS: AtomicU64 = AtomicU64::new(0);
    let sequence = ACQUISITIONS.fetch_add(1, Ordering::Relaxed);
    let nonce = (random_unit() * 1e12) as u64;
    format!(
        "{}-{}-{sequence}-{nonce}",
        std::process::id(),
        newsrec_kv::now_ms()
    )
}

fn lease_ms() -> i64 {
    i64::try_from(LOCK_LEASE.as_millis()).unwrap_or(i64::MAX)
}
