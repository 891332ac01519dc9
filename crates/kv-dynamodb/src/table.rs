//! [`Table`]: a client bound to one table, with the operations the store and the writer need
//! (single items, batches with retries, the pointer and the generation index, prune's scan) and
//! creating the table.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_sdk_dynamodb::{
    Client,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
        KeysAndAttributes, PutRequest, ReturnValue, ScalarAttributeType, TableStatus, WriteRequest,
    },
};

use newsrec_kv::{Generation, GenerationInfo, KvError};

use crate::{
    error::{backend_error, build_error, corrupt_item, unprocessed_error},
    item::{Item, PK, decode_value, info_item, key_item, number, number_attribute, parse_info},
    keys::{COUNTER_KEY, INDEX_KEY, POINTER_KEY, fallback_key, info_key},
    retry::{BATCH_RETRY, drain_unprocessed, random_unit},
    store::Serving,
};

/// BatchWriteItem accepts at most 25 requests.
const BATCH_WRITE_LIMIT: usize = 25;
/// BatchGetItem accepts at most 100 keys.
const BATCH_GET_LIMIT: usize = 100;

/// Waiting for a created table to become ACTIVE (AWS takes seconds; local servers none).
const TABLE_POLL_INTERVAL: Duration = Duration::from_millis(500);
const TABLE_POLL_ATTEMPTS: u32 = 240;

/// A client bound to one table; cheap to clone (the SDK client is reference counted).
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) client: Client,
    pub(crate) name: Arc<str>,
}

impl Table {
    pub(crate) async fn get_item(
        &self,
        operation: &str,
        pk: String,
    ) -> Result<Option<Item>, KvError> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        Ok(output.item)
    }

    pub(crate) async fn put_item(&self, operation: &str, item: Item) -> Result<(), KvError> {
        self.client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        Ok(())
    }

    pub(crate) async fn read_pointer(&self) -> Result<Option<Generation>, KvError> {
        match self
            .get_item("reading the current pointer", POINTER_KEY.into())
            .await?
        {
            Some(item) => Ok(Some(number_attribute(&item, "generation")?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn write_pointer(&self, generation: Generation) -> Result<(), KvError> {
        let mut item = key_item(POINTER_KEY.into());
        item.insert("generation".into(), number(generation));
        self.put_item("writing the current pointer", item).await
    }

    /// Reads a sealed generation's info and fallback list.
    pub(crate) async fn load_serving(&self, generation: Generation) -> Result<Serving, KvError> {
        let info = self
            .get_item("reading generation info", info_key(generation))
            .await?
            .map(|item| parse_info(&item))
            .transpose()?;
        let Some((info, true)) = info else {
            return Err(KvError::NoSuchGeneration(generation));
        };
        let fallback = match self
            .get_item("reading the fallback list", fallback_key(generation))
            .await?
        {
            Some(item) => decode_value(&item, generation, "fallback")?,
            None => Vec::new(),
        };
        Ok(Serving { info, fallback })
    }

    pub(crate) async fn generation_is_sealed(
        &self,
        generation: Generation,
    ) -> Result<bool, KvError> {
        match self
            .get_item("reading generation info", info_key(generation))
            .await?
        {
            Some(item) => Ok(parse_info(&item)?.1),
            None => Ok(false),
        }
    }

    /// Numbers a new generation, lists it and writes its unsealed info item.
    pub(crate) async fn start_generation(&self, run_id: &str) -> Result<Generation, KvError> {
        let operation = "numbering a new generation";
        let output = self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(COUNTER_KEY.into())))
            .update_expression("ADD #last :one")
            .expression_attribute_names("#last", "last_generation")
            .expression_attribute_values(":one", number(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        let generation: Generation =
            number_attribute(&output.attributes.unwrap_or_default(), "last_generation")?;
        // Listed before any of its items exist, so a publish that dies is always found by prune.
        let operation = "listing a new generation";
        self.client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(INDEX_KEY.into())))
            .update_expression("ADD #live :generation")
            .expression_attribute_names("#live", "live")
            .expression_attribute_values(
                ":generation",
                AttributeValue::Ns(vec![generation.to_string()]),
            )
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        let info = GenerationInfo {
            generation,
            run_id: run_id.to_owned(),
            users: 0,
            sealed_at_ms: 0,
        };
        self.put_item("writing generation info", info_item(&info, false))
            .await?;
        Ok(generation)
    }

    /// Every generation not yet pruned, sealed or not, from the `generations` index item.
    pub(crate) async fn live_generations(&self) -> Result<Vec<Generation>, KvError> {
        let Some(item) = self
            .get_item("reading the generation index", INDEX_KEY.into())
            .await?
        else {
            return Ok(Vec::new());
        };
        match item.get("live") {
            // DynamoDB drops a set attribute when its last member is deleted.
            None => Ok(Vec::new()),
            Some(AttributeValue::Ns(numbers)) => numbers
                .iter()
                .map(|text| {
                    text.parse::<Generation>()
                        .map_err(|_| corrupt_item(INDEX_KEY, "live", "a set of generation numbers"))
                })
                .collect(),
            Some(_) => Err(corrupt_item(
                INDEX_KEY,
                "live",
                "a set of generation numbers",
            )),
        }
    }

    pub(crate) async fn forget_generations(
        &self,
        generations: &[Generation],
    ) -> Result<(), KvError> {
        let operation = "removing generations from the index";
        self.client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(INDEX_KEY.into())))
            .update_expression("DELETE #live :gone")
            .expression_attribute_names("#live", "live")
            .expression_attribute_values(
                ":gone",
                AttributeValue::Ns(generations.iter().map(ToString::to_string).collect()),
            )
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        Ok(())
    }

    /// Info items of `generations` (missing ones are left out): generation → (info, sealed).
    pub(crate) async fn read_infos(
        &self,
        generations: &[Generation],
    ) -> Result<HashMap<Generation, (GenerationInfo, bool)>, KvError> {
        let operation = "reading generation info";
        let responses = std::sync::Mutex::new(Vec::new());
        for chunk in generations.chunks(BATCH_GET_LIMIT) {
            let keys: Vec<Item> = chunk.iter().map(|g| key_item(info_key(*g))).collect();
            let responses = &responses;
            drain_unprocessed(
                keys,
                BATCH_RETRY,
                |keys| async move {
                    let request = KeysAndAttributes::builder()
                        .set_keys(Some(keys))
                        .consistent_read(true)
                        .build()
                        .map_err(build_error)?;
                    let output = self
                        .client
                        .batch_get_item()
                        .request_items(&*self.name, request)
                        .send()
                        .await
                        .map_err(|error| self.sdk_error(operation, error))?;
                    let found = output
                        .responses
                        .and_then(|mut tables| tables.remove(&*self.name))
                        .unwrap_or_default();
                    responses
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .extend(found);
                    Ok(output
                        .unprocessed_keys
                        .and_then(|mut tables| tables.remove(&*self.name))
                        .map(|unprocessed| unprocessed.keys)
                        .unwrap_or_default())
                },
                tokio::time::sleep,
                random_unit,
                |left| unprocessed_error(&self.name, operation, "keys", left),
            )
            .await?;
        }
        let items = responses
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut infos = HashMap::with_capacity(items.len());
        for item in items {
            let (info, sealed) = parse_info(&item)?;
            infos.insert(info.generation, (info, sealed));
        }
        Ok(infos)
    }

    /// Sends `requests` with BatchWriteItem, 25 at a time, retrying `UnprocessedItems`.
    pub(crate) async fn batch_write(
        &self,
        operation: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), KvError> {
        let mut requests = requests.into_iter();
        loop {
            let batch: Vec<WriteRequest> = requests.by_ref().take(BATCH_WRITE_LIMIT).collect();
            if batch.is_empty() {
                return Ok(());
            }
            drain_unprocessed(
                batch,
                BATCH_RETRY,
                |batch| async move {
                    let output = self
                        .client
                        .batch_write_item()
                        .request_items(&*self.name, batch)
                        .send()
                        .await
                        .map_err(|error| self.sdk_error(operation, error))?;
                    Ok(output
                        .unprocessed_items
                        .and_then(|mut tables| tables.remove(&*self.name))
                        .unwrap_or_default())
                },
                tokio::time::sleep,
                random_unit,
                |left| unprocessed_error(&self.name, operation, "items", left),
            )
            .await?;
        }
    }

    /// Deletes every item whose key starts with one of `prefixes`.
    ///
    /// A Scan reads (and is billed for) the whole table, whatever the filter; prune is rare and
    /// one pass covers up to PRUNE_PREFIXES_PER_SCAN generations. Strongly consistent, so items
    /// written just before a publish died are not missed.
    pub(crate) async fn delete_with_prefixes(&self, prefixes: &[String]) -> Result<(), KvError> {
        let operation = "scanning for items to prune";
        let filter = (0..prefixes.len())
            .map(|at| format!("begins_with(#pk, :p{at})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut start: Option<Item> = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&*self.name)
                .filter_expression(&filter)
                .projection_expression("#pk")
                .expression_attribute_names("#pk", PK)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (at, prefix) in prefixes.iter().enumerate() {
                scan = scan.expression_attribute_values(
                    format!(":p{at}"),
                    AttributeValue::S(prefix.clone()),
                );
            }
            let page = scan
                .send()
                .await
                .map_err(|error| self.sdk_error(operation, error))?;
            let deletes = page
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut item| match item.remove(PK) {
                    Some(AttributeValue::S(pk)) => Some(delete_request(pk)),
                    _ => None,
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.batch_write("deleting pruned items", deletes).await?;
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }

    /// Creates the table when missing and waits until it is ACTIVE.
    pub(crate) async fn ensure_exists(&self) -> Result<(), KvError> {
        let described = self
            .client
            .describe_table()
            .table_name(&*self.name)
            .send()
            .await;
        match described {
            Ok(output) => {
                let schema = output.table.as_ref().map(|table| table.key_schema());
                let expected = schema.is_some_and(|schema| {
                    schema.len() == 1
                        && schema[0].attribute_name() == PK
                        && schema[0].key_type() == &KeyType::Hash
                });
                if !expected {
                    return Err(backend_error(format!(
                        "table {:?} exists with key schema {schema:?}; the store needs {PK:?} \
                         (string) as its only key: use another table name",
                        self.name
                    )));
                }
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_not_found_exception()) =>
            {
                self.create().await?;
            }
            Err(error) => return Err(self.sdk_error("describing the table", error)),
        }
        self.wait_until_active().await
    }

    async fn create(&self) -> Result<(), KvError> {
        let attribute = AttributeDefinition::builder()
            .attribute_name(PK)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_error)?;
        let key = KeySchemaElement::builder()
            .attribute_name(PK)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .create_table()
            .table_name(&*self.name)
            .attribute_definitions(attribute)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match result {
            Ok(_) => {
                tracing::info!(table = %self.name, "created dynamodb table");
                Ok(())
            }
            // Another process created it at the same moment: fine.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(self.sdk_error("creating the table", error)),
        }
    }

    async fn wait_until_active(&self) -> Result<(), KvError> {
        for _ in 0..TABLE_POLL_ATTEMPTS {
            let output = self
                .client
                .describe_table()
                .table_name(&*self.name)
                .send()
                .await
                .map_err(|error| self.sdk_error("waiting for the table", error))?;
            let status = output.table.as_ref().and_then(|table| table.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(TABLE_POLL_INTERVAL).await;
        }
        let waited = TABLE_POLL_INTERVAL * TABLE_POLL_ATTEMPTS;
        Err(backend_error(format!(
            "table {:?} is not active after {}s; check its status in the aws console and retry",
            self.name,
            waited.as_secs()
        )))
    }
}

pub(crate) fn put_request(item: Item) -> Result<WriteRequest, KvError> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(build_error)?;
    Ok(WriteRequest::builder().put_request(put).build())
}

pub(crate) fn delete_request(pk: String) -> Result<WriteRequest, KvError> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key_item(pk)))
        .build()
        .map_err(build_error)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}
