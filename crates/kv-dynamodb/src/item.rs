//! Item attributes: building items and reading them back, with an error naming the item and
//! attribute for anything this store did not write. A list's value is the shared codec's bytes
//! in the Binary attribute `v`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use newsrec_kv::{Generation, GenerationInfo, KvError, RecItem, decode_items};

use crate::{error::corrupt_item, keys::info_key};

/// The only key attribute: a string partition key (no sort key).
pub(crate) const PK: &str = "pk";
/// Binary attribute holding an encoded list (user, similar-article and fallback items).
pub(crate) const VALUE: &str = "v";

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn key_item(pk: String) -> Item {
    HashMap::from([(PK.to_owned(), AttributeValue::S(pk))])
}

pub(crate) fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn info_item(info: &GenerationInfo, sealed: bool) -> Item {
    let mut item = key_item(info_key(info.generation));
    item.insert("generation".into(), number(info.generation));
    item.insert("run_id".into(), AttributeValue::S(info.run_id.clone()));
    item.insert("users".into(), number(info.users));
    item.insert("sealed_at_ms".into(), number(info.sealed_at_ms));
    item.insert("sealed".into(), AttributeValue::Bool(sealed));
    item
}

pub(crate) fn parse_info(item: &Item) -> Result<(GenerationInfo, bool), KvError> {
    let pk = match item.get(PK) {
        Some(AttributeValue::S(pk)) => pk.as_str(),
        _ => "generation info",
    };
    let info = GenerationInfo {
        generation: number_attribute(item, "generation")?,
        run_id: match item.get("run_id") {
            Some(AttributeValue::S(run_id)) => run_id.clone(),
            _ => return Err(corrupt_item(pk, "run_id", "a string")),
        },
        users: number_attribute(item, "users")?,
        sealed_at_ms: number_attribute(item, "sealed_at_ms")?,
    };
    let sealed = match item.get("sealed") {
        Some(AttributeValue::Bool(sealed)) => *sealed,
        _ => return Err(corrupt_item(pk, "sealed", "a boolean")),
    };
    Ok((info, sealed))
}

pub(crate) fn number_attribute<T: std::str::FromStr>(
    item: &Item,
    name: &str,
) -> Result<T, KvError> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        let pk = match item.get(PK) {
            Some(AttributeValue::S(pk)) => pk.as_str(),
            _ => "an item",
        };
        corrupt_item(pk, name, "a number")
    })
}

pub(crate) fn decode_value(
    item: &Item,
    generation: Generation,
    key: &str,
) -> Result<Vec<RecItem>, KvError> {
    let Some(AttributeValue::B(bytes)) = item.get(VALUE) else {
        return Err(corrupt_item(key, VALUE, "a binary list value"));
    };
    decode_items(bytes.as_ref()).map_err(|source| KvError::Corrupt {
        generation,
        key: key.to_owned(),
        source,
    })
}
