//! The recommendation tables a training run writes and `publish` reads (schema v1).
//!
//! `runs/<run_id>/recs-NNNNN.parquet`: one row per (user, rank): `user_id` utf8, `rank` int32
//! (1 = best), `article_id` utf8, `score` float32; rows grouped by user, ranks ascending, users
//! never split across parts. `runs/<run_id>/fallback.parquet`: the same without `user_id`, the
//! list served to users without one. `runs/<run_id>/similar.parquet`: `article_id`, `rank`,
//! `similar_article_id`, `score`, each article's most similar articles. Long format so
//! Spark/DuckDB/Athena can query it as is.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, Int32Array, RecordBatch, StringArray,
    builder::{Float32Builder, Int32Builder, StringBuilder},
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

/// One ranked article.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedArticle {
    pub article_id: String,
    pub score: f32,
}

/// One user's ranked list.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecs {
    pub user_id: String,
    pub items: Vec<RankedArticle>,
}

/// One article's most similar articles, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarArticles {
    pub article_id: String,
    pub items: Vec<RankedArticle>,
}

/// A ranked list under a key (a user, an article): the one shape both long-format tables
/// encode, so their writer and reader are one piece of code.
trait KeyedList {
    fn new(key: String, items: Vec<RankedArticle>) -> Self;
    fn key(&self) -> &str;
    fn items(&self) -> &[RankedArticle];
    fn push(&mut self, item: RankedArticle);
}

impl KeyedList for UserRecs {
    fn new(user_id: String, items: Vec<RankedArticle>) -> Self {
        UserRecs { user_id, items }
    }
    fn key(&self) -> &str {
        &self.user_id
    }
    fn items(&self) -> &[RankedArticle] {
        &self.items
    }
    fn push(&mut self, item: RankedArticle) {
        self.items.push(item);
    }
}

impl KeyedList for SimilarArticles {
    fn new(article_id: String, items: Vec<RankedArticle>) -> Self {
        SimilarArticles { article_id, items }
    }
    fn key(&self) -> &str {
        &self.article_id
    }
    fn items(&self) -> &[RankedArticle] {
        &self.items
    }
    fn push(&mut self, item: RankedArticle) {
        self.items.push(item);
    }
}

/// Schema of `recs-*.parquet`.
pub fn recs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("article_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// Schema of `fallback.parquet`.
pub fn fallback_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rank", DataType::Int32, false),
        Field::new("article_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// Schema of `similar.parquet`: each article's most similar articles (co-occurrence model).
pub fn similar_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("article_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("similar_article_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// Encodes user lists as one batch of `recs_schema`.
pub fn recs_to_batch(users: &[UserRecs]) -> Result<RecordBatch, ArrowError> {
    keyed_lists_to_batch(recs_schema(), users)
}

/// Encodes similar-article lists as one batch of `similar_schema`.
pub fn similar_to_batch(lists: &[SimilarArticles]) -> Result<RecordBatch, ArrowError> {
    keyed_lists_to_batch(similar_schema(), lists)
}

/// Decodes batches of `similar_schema` (consecutive rows of an article merge).
pub fn similar_from_batches(batches: &[RecordBatch]) -> Result<Vec<SimilarArticles>, ArrowError> {
    keyed_lists_from_batches(batches, "article_id", "similar_article_id")
}

fn keyed_lists_to_batch<L: KeyedList>(
    schema: SchemaRef,
    lists: &[L],
) -> Result<RecordBatch, ArrowError> {
    let rows: usize = lists.iter().map(|list| list.items().len()).sum();
    let mut key = StringBuilder::with_capacity(rows, rows * 8);
    let mut rank = Int32Builder::with_capacity(rows);
    let mut article_id = StringBuilder::with_capacity(rows, rows * 8);
    let mut score = Float32Builder::with_capacity(rows);
    for list in lists {
        for (position, item) in list.items().iter().enumerate() {
            key.append_value(list.key());
            rank.append_value(position as i32 + 1);
            article_id.append_value(&item.article_id);
            score.append_value(item.score);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(rank.finish()),
        Arc::new(article_id.finish()),
        Arc::new(score.finish()),
    ];
    RecordBatch::try_new(schema, columns)
}

/// Encodes the fallback list as one batch of `fallback_schema`.
pub fn fallback_to_batch(items: &[RankedArticle]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            (1..=items.len()).map(|r| r as i32),
        )),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|i| i.article_id.as_str()),
        )),
        Arc::new(Float32Array::from_iter_values(
            items.iter().map(|i| i.score),
        )),
    ];
    RecordBatch::try_new(fallback_schema(), columns)
}

/// Decodes batches of `recs_schema` back into user lists (consecutive rows of a user merge).
pub fn recs_from_batches(batches: &[RecordBatch]) -> Result<Vec<UserRecs>, ArrowError> {
    keyed_lists_from_batches(batches, "user_id", "article_id")
}

fn keyed_lists_from_batches<L: KeyedList>(
    batches: &[RecordBatch],
    key: &str,
    item: &str,
) -> Result<Vec<L>, ArrowError> {
    let mut lists: Vec<L> = Vec::new();
    for batch in batches {
        let keys = column::<StringArray>(batch, key)?;
        let article_id = column::<StringArray>(batch, item)?;
        let score = column::<Float32Array>(batch, "score")?;
        for row in 0..batch.num_rows() {
            let item = RankedArticle {
                article_id: article_id.value(row).to_owned(),
                score: score.value(row),
            };
            match lists.last_mut() {
                Some(last) if last.key() == keys.value(row) => last.push(item),
                _ => lists.push(L::new(keys.value(row).to_owned(), vec![item])),
            }
        }
    }
    Ok(lists)
}

/// Decodes batches of `fallback_schema`.
pub fn fallback_from_batches(batches: &[RecordBatch]) -> Result<Vec<RankedArticle>, ArrowError> {
    let mut items = Vec::new();
    for batch in batches {
        let article_id = column::<StringArray>(batch, "article_id")?;
        let score = column::<Float32Array>(batch, "score")?;
        for row in 0..batch.num_rows() {
            items.push(RankedArticle {
                article_id: article_id.value(row).to_owned(),
                score: score.value(row),
            });
        }
    }
    Ok(items)
}

fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|array| array.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            ArrowError::SchemaError(format!(
                "column \"{name}\" is missing or has the wrong type"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let item = |id: &str, score| RankedArticle {
            article_id: id.into(),
            score,
        };
        let users = vec![
            UserRecs {
                user_id: "u1".into(),
                items: vec![item("a", 2.0), item("b", 1.0)],
            },
            UserRecs {
                user_id: "u2".into(),
                items: vec![item("c", 0.5)],
            },
        ];
        let batch = recs_to_batch(&users).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(recs_from_batches(&[batch]).unwrap(), users);
        let similar_lists: Vec<SimilarArticles> = users
            .iter()
            .map(|user| SimilarArticles {
                article_id: user.user_id.clone(),
                items: user.items.clone(),
            })
            .collect();
        let similar = similar_to_batch(&similar_lists).unwrap();
        assert_eq!(similar.schema().field(0).name(), "article_id");
        assert_eq!(similar.schema().field(2).name(), "similar_article_id");
        assert_eq!(similar_from_batches(&[similar]).unwrap(), similar_lists);
        let fallback = vec![item("x", 3.0)];
        assert_eq!(
            fallback_from_batches(&[fallback_to_batch(&fallback).unwrap()]).unwrap(),
            fallback
        );
    }
}
