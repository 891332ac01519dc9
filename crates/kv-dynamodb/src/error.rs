//! Failures as [`KvError`]s that name the operation, the table and what to do.

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};

use newsrec_kv::KvError;

use crate::{retry::Unprocessed, table::Table};

const BACKEND: &str = "dynamodb";

impl Table {
    pub(crate) fn sdk_error<E>(&self, operation: &str, error: SdkError<E>) -> KvError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let hint = match error.code() {
            Some("ResourceNotFoundException") => {
                "create the table (see docs/kv-layout.md) or add ?create=true to the store uri"
            }
            Some(
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded",
            ) => "the table is throttled: raise its capacity or retry later",
            Some(
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "AccessDeniedException"
                | "ExpiredTokenException",
            ) => "check the aws credentials and their dynamodb permissions on this table",
            Some("ValidationException") => {
                "check that the table's only key is pk (string) and that no list exceeds 400 KB"
            }
            _ => match &error {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                    "check that the endpoint is reachable (endpoint= in the uri or \
                     AWS_ENDPOINT_URL), the region and the credentials"
                }
                _ => "check the table and the aws configuration, then retry",
            },
        };
        backend_error(format!(
            "{operation} on table {:?} failed: {}; {hint}",
            self.name,
            DisplayErrorContext(&error)
        ))
    }
}

pub(crate) fn corrupt_item(pk: &str, attribute: &str, expected: &str) -> KvError {
    KvError::BadRecord {
        backend: BACKEND,
        reason: format!(
            "item {pk:?} has no valid attribute {attribute:?} ({expected} expected); the table \
             holds items this store did not write: use a table of its own"
        ),
    }
}

pub(crate) fn unprocessed_error(
    table: &str,
    operation: &str,
    what: &str,
    left: Unprocessed,
) -> KvError {
    backend_error(format!(
        "{operation} on table {table:?} left {} {what} unprocessed after {} attempts; the table is \
         throttled: raise its capacity (or use on-demand billing) and retry",
        left.remaining, left.attempts
    ))
}

pub(crate) fn build_error(error: BuildError) -> KvError {
    backend_error(format!(
        "building a request failed: {error}; this is a bug, please report it"
    ))
}

pub(crate) fn backend_error(reason: String) -> KvError {
    KvError::Backend {
        backend: BACKEND,
        reason,
    }
}
